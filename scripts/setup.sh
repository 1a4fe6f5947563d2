#!/usr/bin/env bash
# isobench set-up: everything this project needs on a fresh Debian 12 machine, idempotent and quick
# when already done. Then one of:
#   scripts/setup.sh run  [isobench run args]   set up, then `isobench run` (defaults: every driver
#                                               available here x the default workloads)
#   scripts/setup.sh test [pytest args]         set up, then the whole test suite (what CI runs)
#   scripts/setup.sh deps                       set up only
# Needs root (apt, cgroups, libvirtd). Set ISOBENCH_SKIP_IMAGE=1 to skip building the guest image.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mode=${1:-deps}
[ $# -gt 0 ] && shift

# Bold and red only on a terminal: a CI log or `2> file` gets plain text, as isobench's own output does.
if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' red=$'\033[1;31m' off=$'\033[0m'; else bold='' red='' off=''; fi
say() { printf '%s[setup]%s %s\n' "$bold" "$off" "$*" >&2; }
die() { printf '%s[setup] error:%s %s\n' "$red" "$off" "$*" >&2; exit 2; }

case "$mode" in run|test|deps) ;; *) die "unknown mode '$mode'; use: run | test | deps" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root: isobench needs cgroups, mounts, namespaces and libvirtd"

# --- system packages -------------------------------------------------------------------------
APT_PACKAGES=(
  python3 python3-venv python3-dev gcc libc6-dev musl-tools make pkg-config libvirt-dev procps
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libxml2-utils
  linux-image-cloud-amd64 busybox-static mmdebstrap e2fsprogs cpio kmod
  fio stress-ng iperf3 sysbench sockperf perl
  linux-source-6.1 bison flex bc libelf-dev xz-utils patch musl-tools  # the micro guest kernel and its /init (vm-images/kernel.py)
  runc bubblewrap docker.io iproute2 util-linux
  chromium
  git
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start its service while installing (Debian's policy-rc.d convention): a system
  # dockerd would add docker0 and iptables rules that the docker driver's private daemon avoids.
  policy=/usr/sbin/policy-rc.d
  ours=
  if [ ! -e "$policy" ]; then  # a policy the machine already has is kept and obeyed
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$ours" ]; then rm -f "$policy"; trap - EXIT; fi
else
  say "system packages: all present"
fi

# --- Python environment ----------------------------------------------------------------------
PY=${ISOBENCH_PYTHON:-python3}
stamp=.venv/.isobench-deps
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the venv and installing isobench with its dev extras"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  # A machine's pip configuration may name local index directories that do not exist there; pip
  # then warns once per package and location (67 lines on the reference host) and goes on. Those
  # notices are about the machine, not the install: they are dropped, every other line is kept.
  missing_index="^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.\$"
  .venv/bin/python -m pip install -q --upgrade pip 2> >(grep -v -E "$missing_index" >&2)
  # setuptools warns on every editable install of a package-dir layout that a folder named like the
  # package could shadow it; ours cannot (the namespace is isobench, the folders are not).
  PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[dev]' \
    2> >(grep -v -E "$missing_index" >&2)
  echo "$want" > "$stamp"
else
  say "venv: up to date"
fi

# --- KVM access and libvirt ------------------------------------------------------------------
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  chgrp kvm /dev/kvm && chmod 660 /dev/kvm
  id -nG libvirt-qemu 2>/dev/null | grep -qw kvm || usermod -aG kvm libvirt-qemu 2>/dev/null || true
fi
. "$top/scripts/libvirt-setup.sh"

# --- the guest / container image ---------------------------------------------------------------
if [ "${ISOBENCH_SKIP_IMAGE:-0}" != 1 ]; then
  say "building the default image (a no-op when it is already built)"
  .venv/bin/isobench image build
fi

case "$mode" in
  run)
    say "isobench run $*"
    exec .venv/bin/isobench run "$@"
    ;;
  test)
    say "pytest $*"
    exec .venv/bin/pytest "$@"
    ;;
  deps) say "set-up done" ;;
esac
