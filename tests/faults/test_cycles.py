"""Create/destroy churn through the Driver protocol: nothing is left on the host, and the process
doing it (the runner's role) keeps a flat RSS and fd count."""

from __future__ import annotations

import gc as pygc
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from faultrun import FULL
from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver

CONTAINER_CYCLES = 1000 if FULL else 100
#: Alternating between the two guest drivers (qemu, then vm): TCG boots take 3-7 s each here.
GUEST_CYCLES = int(os.environ.get("ISOBENCH_FAULTS_GUEST_CYCLES") or (100 if FULL else 4))
#: Where the baseline is taken: after the first cycles have loaded every module, compiled the
#: helper, opened the libvirt connection and filled the caches that are meant to stay.
BASELINE_AT = 10

#: Bounds on growth from the baseline to the end. fds: a leak is one fd per cycle (a pidfd, a
#: pipe, a socket), so with 90+ cycles after the baseline even a leak on every tenth cycle exceeds
#: 8; a few may legitimately come and go (a libvirt event socket, a logging handler). RSS: a
#: per-cycle leak of a sandbox object with its phase clock and buffers is >= 10 KiB, i.e. >= 0.9
#: MiB over 90 cycles and 9 MiB over 990; CPython's allocator keeps freed arenas and the heap
#: fragments, which moved RSS by under 2 MiB in runs without a leak here, so 4 MiB + 4 KiB per
#: cycle after the baseline separates the two.
FD_GROWTH_MAX = 8


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_max(cycles_after_baseline: int) -> int:
    return 4096 + 4 * cycles_after_baseline


def _churn(
    drivers: list[Driver], spec: Callable[[int], SandboxSpec], cycles: int, baseline_at: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    base = (0, 0)
    for i in range(cycles):
        drv = drivers[i % len(drivers)]
        sb = drv.create(spec(i))
        try:
            assert sb.exec(["true"], timeout=120).exit_code == 0
        finally:
            sb.destroy()
        if i + 1 == baseline_at:
            pygc.collect()
            base = (_rss_kib(), _fds())
    pygc.collect()
    return base, (_rss_kib(), _fds())


def _assert_flat(base: tuple[int, int], end: tuple[int, int], after: int) -> None:
    rss_growth, fd_growth = end[0] - base[0], end[1] - base[1]
    print(f"RSS {base[0]} -> {end[0]} KiB (+{rss_growth}), fds {base[1]} -> {end[1]} over {after} cycles")
    assert fd_growth <= FD_GROWTH_MAX, f"fds grew by {fd_growth} over {after} cycles"
    assert rss_growth <= _rss_max(after), f"RSS grew by {rss_growth} KiB over {after} cycles"


def test_container_cycles_leave_nothing(
    faults_state: Path,
    tmp_path: Path,
    busybox_rootfs: Path,
    check_clean: Callable[[set[str]], list[str]],
) -> None:
    run_id = f"faults{uuid.uuid4().hex[:8]}"
    ctx = DriverContext(state_dir=faults_state, work_dir=tmp_path / "work" / "container", run_id=run_id)
    drv = ContainerDriver(ctx)

    def spec(i: int) -> SandboxSpec:
        # every second one with a cgroup, so both kinds of record are churned
        return SandboxSpec(
            name=f"c{i}", run_id=run_id, image=busybox_rootfs, pids_limit=64 if i % 2 else None
        )

    try:
        base, end = _churn([drv], spec, CONTAINER_CYCLES, BASELINE_AT)
    finally:
        drv.close()
    assert check_clean({run_id}) == []
    _assert_flat(base, end, CONTAINER_CYCLES - BASELINE_AT)


def test_guest_cycles_leave_nothing(
    faults_state: Path, tmp_path: Path, check_clean: Callable[[set[str]], list[str]]
) -> None:
    pytest.importorskip("libvirt", reason="the vm driver needs libvirt-python (set-up installs it)")
    from isobench.drivers.qemu import QemuDriver
    from isobench.drivers.vm import VmDriver

    run_id = f"faults{uuid.uuid4().hex[:8]}"
    drivers: list[Driver] = [
        QemuDriver(DriverContext(faults_state, tmp_path / "work" / "qemu", run_id, {})),
        VmDriver(DriverContext(faults_state, tmp_path / "work" / "vm", run_id, {})),
    ]
    baseline_at = min(BASELINE_AT, GUEST_CYCLES // 2)
    try:
        base, end = _churn(
            drivers, lambda i: SandboxSpec(name=f"g{i}", run_id=run_id), GUEST_CYCLES, baseline_at
        )
    finally:
        for drv in drivers:
            drv.close()
    assert check_clean({run_id}) == []
    _assert_flat(base, end, GUEST_CYCLES - baseline_at)
