#!/usr/bin/env bash
# The steps of isobench-gate.yml on this machine, timed: set up and run a baseline checkout, set up
# and run a candidate checkout, compare them with the workflow's rules. Use it to learn how long the
# gate takes on a runner before trusting its timeout, or to gate by hand.
#
#   examples/ci/gate-locally.sh BASE_REF CAND_REF [WORKDIR]
#
# Both refs are checked out from this repository into WORKDIR (default: a new temporary directory),
# exactly as the workflow's checkout steps do. As root, like the workflow's sudo steps. Prints each
# step's wall time and the total; exits with the compare's code (0 pass, 1 regression, 3 cannot judge).
# HISTORY=DIR (a folder of earlier baseline runs, like the workflow's kept ones) adds --history DIR.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 BASE_REF CAND_REF [WORKDIR]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (the workflow's steps use sudo)" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
base_ref=$1
cand_ref=$2
work=${3:-$(mktemp -d /tmp/isobench-gate.XXXXXX)}
mkdir -p "$work"

# The workflow's env block, read from the workflow itself so the two cannot drift apart.
wf="$repo/examples/ci/isobench-gate.yml"
env_of() { sed -n "s/^  $1: \"\(.*\)\"\$/\1/p" "$wf"; }
FAIL_ON=$(env_of FAIL_ON)
WORKLOADS=$(env_of WORKLOADS)
BUDGET=$(env_of BUDGET)
PRECISION=$(env_of PRECISION)
for v in FAIL_ON WORKLOADS BUDGET PRECISION; do
  [ -n "${!v}" ] || { echo "$0: cannot read $v from $wf" >&2; exit 2; }
done

t0=$(date +%s)
step() {
  local name=$1
  shift
  local s rc=0
  s=$(date +%s)
  echo "== $name" >&2
  "$@" || rc=$?
  printf '== %s: %d s (exit %d)\n' "$name" "$(($(date +%s) - s))" "$rc" >&2
  return "$rc"
}
run_role() {  # the workflow's "Run the ..." step: exit 1 (some failed cells) still gates
  local rc=0
  (cd "$work/$1" && .venv/bin/isobench run --workloads "$WORKLOADS" --budget "$BUDGET" \
    --precision "$PRECISION" --output "$work/isobench-$1") || rc=$?
  [ "$rc" -le 1 ]
}

for role in baseline candidate; do
  ref=$base_ref
  [ "$role" = candidate ] && ref=$cand_ref
  [ -d "$work/$role" ] || step "check out $role ($ref)" git clone -q "$repo" "$work/$role"
  git -C "$work/$role" checkout -q "$ref"
  step "set up the $role" bash -c "cd '$work/$role' && ./scripts/setup.sh deps"
  step "run the $role" run_role "$role"
done

rc=0
base=$(ls -d "$work"/isobench-baseline/*/ | head -n 1)
cand=$(ls -d "$work"/isobench-candidate/*/ | head -n 1)
hist=()
[ -n "${HISTORY:-}" ] && hist=(--history "$HISTORY")
step "compare" "$work/candidate/.venv/bin/isobench" compare "$base" "$cand" --fail-on "$FAIL_ON" "${hist[@]}" || rc=$?
(cd "$work/candidate" && .venv/bin/isobench gc >/dev/null) || true
printf '== whole gate: %d s; results in %s\n' "$(($(date +%s) - t0))" "$work" >&2
exit "$rc"
