#!/usr/bin/env bash
# A configuration gate in ONE run: is configuration B worse than A on this host?
#
#   examples/ci/ab-gate.sh A.toml B.toml [OUTPUT_DIR]
#
# A and B are isobench config files (any of [sandbox], [drivers.X], [workloads.X]: a runtime
# binary, a guest kernel or image, a sandbox option ...); their stems are the labels. Both are
# measured interleaved round by round in one budgeted run (`isobench run --ab`), so a machine that
# drifts or a neighbour that comes and goes hits both alike, and the run is then judged paired by
# round (`isobench compare RUN --ab A,B --fail-on RULES`: exact signed-rank test, Holm over the
# gated figures). Measured on a shared 2-core host (README "The gate on real runs"): no false alarm
# in any A/A run, ~10% start-up regressions caught. For two *commits* of isobench itself, which
# cannot share a run, see isobench-gate.yml.
#
# Environment (defaults in brackets): FAIL_ON [the workflow's rules], WORKLOADS [startup,cpu],
# DRIVERS [every driver available here], BUDGET [15m, the whole run: both configurations].
# As root. Prints the run's report path and the compare; exits with the compare's code (0 pass,
# 1 regression, 3 cannot judge), or 2 when the run itself could not be made.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 A.toml B.toml [OUTPUT_DIR]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (namespaces, cgroups, libvirt)" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
isobench=${ISOBENCH:-$repo/.venv/bin/isobench}
[ -x "$isobench" ] || { echo "$0: $isobench not found; run ./scripts/setup.sh deps first" >&2; exit 2; }
a=$1
b=$2
la=$(basename "$a" .toml)
lb=$(basename "$b" .toml)
[ "$la" != "$lb" ] || { echo "$0: $a and $b have the same stem; it is the label" >&2; exit 2; }
out=${3:-$(mktemp -d /tmp/isobench-ab.XXXXXX)}
mkdir -p "$out"

wf="$repo/examples/ci/isobench-gate.yml"
FAIL_ON=${FAIL_ON:-$(sed -n 's/^  FAIL_ON: "\(.*\)"$/\1/p' "$wf")}
WORKLOADS=${WORKLOADS:-startup,cpu}
BUDGET=${BUDGET:-15m}
drivers=()
[ -n "${DRIVERS:-}" ] && drivers=(--drivers "$DRIVERS")

rc=0
"$isobench" run --ab "$la=$a" --ab "$lb=$b" "${drivers[@]}" --workloads "$WORKLOADS" \
  --budget "$BUDGET" --output "$out" || rc=$?
# Exit 1: the run completed with failed cells, which the compare judges (a gated figure missing
# from B fails it); anything else means there is no run to judge.
[ "$rc" -le 1 ] || { echo "$0: isobench run exited $rc" >&2; exit 2; }
run=$(ls -dt "$out"/*/ | head -n 1)
rc=0
"$isobench" compare "$run" --ab "$la,$lb" --fail-on "$FAIL_ON" || rc=$?
echo "report: ${run}report.html" >&2
exit "$rc"
