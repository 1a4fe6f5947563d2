"""Real guests under qemu-system-x86_64 (TCG here). Needs root and the built image; not libvirtd
(the accel probe both guest drivers share boots qemu directly)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import DriverContext, Sandbox, SandboxSpec
from isobench.drivers.qemu import QemuDriver
from isobench.drivers.qemu.network import run_prefix
from isobench.drivers.qemu.procscan import find_guests
from isobench.errors import CellTimeout
from isobench.hostsys.links import Links
from isobench.images import find_image
from isobench.workloads.base import WorkloadContext, get_workload

STATE = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))
pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuDriver]:
    find_image(STATE)  # fails with "run `isobench image build`" if setup did not build it
    run_id = f"tq{os.getpid()}"
    drv = QemuDriver(DriverContext(STATE, tmp_path_factory.mktemp("w") / "qemu", run_id, {}))
    avail = drv.availability()  # first time on a host: the (cached) microvm probe boots
    assert avail.ok, avail.reason
    yield drv
    drv.close()
    assert _leftovers(drv) == []


def _leftovers(drv: QemuDriver) -> list[str]:
    found = [name for _, name in find_guests(drv.host.proc, f"isobench-qemu-{drv.run_id}-")]
    found += [lk.name for lk in Links().find(run_prefix(drv.run_id))]
    work = drv._ctx.work_dir
    if work.exists():
        found += [p.name for p in work.iterdir()]
    return found


def _context(drv: QemuDriver, **kw: Any) -> WorkloadContext:
    spec = SandboxSpec(name="wl", run_id=drv.run_id, vcpus=1, memory_mib=256)

    @contextmanager
    def factory(**overrides: Any) -> Iterator[Sandbox]:
        sandbox = drv.create(replace(spec, **overrides))
        try:
            yield sandbox
        finally:
            sandbox.destroy()

    return WorkloadContext(driver=drv, spec=spec, sandbox=factory, quick=True, timeout=300.0, **kw)


def test_startup_workload(driver: QemuDriver) -> None:
    ms = {m.metric: m for m in get_workload("startup").run(_context(driver))}
    for phase in (
        "overlay",
        "spawn",
        "create",
        "firmware",
        "kernel",
        "initramfs",
        "agent",
        "ready",
        "destroy",
    ):
        assert f"startup.phase.{phase}" in ms, phase
    assert "startup.phase.shutdown" in ms  # the guest powered off; no QMP quit or SIGKILL needed
    assert 0 < ms["startup.to_ready"].value < 120
    assert ms["startup.to_exit"].value >= ms["startup.to_ready"].value
    assert _leftovers(driver) == []


def test_cpu_workload(driver: QemuDriver) -> None:
    ms = list(get_workload("cpu").run(_context(driver)))
    eps = {m.params["variant"]: m for m in ms if m.metric == "cpu.events_per_second"}
    # one vCPU in the spec: the all-vCPU variant boots a second guest with every usable CPU
    assert set(eps) == ({"single", "all"} if len(os.sched_getaffinity(0)) > 1 else {"single"})
    assert all(m.value > 0 and m.params["events"] == 500 for m in eps.values())
    assert _leftovers(driver) == []


def test_exec_network_pinning_stats_destroy(driver: QemuDriver) -> None:
    sb = driver.create(SandboxSpec("g0", driver.run_id, cpuset=(0,), memory_mib=256, network=True))
    try:
        res = sb.exec(["sh", "-c", "pwd; echo err >&2; exit 4"], timeout=30)
        assert (res.exit_code, res.stdout.strip(), res.stderr) == (4, sb.workdir, "err\n")
        assert sb.exec(["cat"], timeout=30, stdin=b"z" * 300_000).stdout == "z" * 300_000
        assert sb.address is not None and sb.address.startswith("10.215.")
        gateway = sb.address.rsplit(".", 1)[0] + ".1"  # the run's bridge on the host
        ping = sb.exec(["busybox", "ping", "-c", "1", "-W", "5", gateway], timeout=30)
        assert ping.exit_code == 0, ping.stdout + ping.stderr
        pid = sb.qemu_pid()
        assert pid is not None
        # taskset exec'd qemu: every thread, vCPUs included, runs on CPU 0 only.
        for task in Path(f"/proc/{pid}/task").iterdir():
            assert os.sched_getaffinity(int(task.name)) == {0}
        st = sb.stats()
        assert 0 < (st.qemu_pss_bytes or 0) < 1 << 30
        assert 0 < (st.guest_used_bytes or 0) < 256 << 20
        assert (st.guest_ram_rss_bytes or 0) > 0 and (st.cpu_seconds or 0) > 0
    finally:
        sb.destroy()
    sb.destroy()  # idempotent
    assert [p.name for p in sb.phases][-1] == "destroy"
    assert not Path(f"/proc/{pid}").exists()
    driver.close()  # removes the bridge; a later test would make a new one
    assert _leftovers(driver) == []


def test_a_timed_out_command_is_killed_with_what_it_moved_to_a_session_of_its_own(
    driver: QemuDriver,
) -> None:
    """fio's job processes call setsid: the agent's kill at the host's deadline must reach them,
    not only the command's process group, or they go on under the next command in the guest."""
    sb = driver.create(SandboxSpec("k0", driver.run_id, memory_mib=256))
    try:
        stray = "setsid sh -c 'echo $$ > /tmp/stray; exec sleep 1000' &"
        with pytest.raises(CellTimeout, match="did not finish within 5s"):
            sb.exec(["sh", "-c", f"{stray} sleep 1000"], timeout=5)
        pid = sb.exec(["cat", "/tmp/stray"], timeout=30).stdout.strip()
        assert pid.isdigit()
        # Gone, or killed and not yet reaped by the agent (PID 1 reaps between commands).
        stat = sb.exec(["sh", "-c", f"cat /proc/{pid}/stat || echo gone"], timeout=30).stdout
        assert stat.strip() == "gone" or stat.split(")")[-1].split()[0] == "Z", stat
    finally:
        sb.destroy()
    assert _leftovers(driver) == []


def test_guest_that_never_becomes_ready_is_cleaned(driver: QemuDriver, tmp_path: Path) -> None:
    drv = QemuDriver(
        DriverContext(
            STATE,
            tmp_path / "qemu",
            driver.run_id,
            {"machine": "q35", "boot_timeout": 2, "cmdline": "console=ttyS0 quiet rdinit=/nosuch"},
        )
    )
    with pytest.raises(Exception, match=r"not ready within 2s|died before ready"):
        drv.create(SandboxSpec("never", driver.run_id, memory_mib=128))
    assert _leftovers(drv) == []
    drv.close()


def test_runner_killed_mid_boot_is_collected_by_gc(driver: QemuDriver, tmp_path: Path) -> None:
    run_id = f"killedq{os.getpid()}"
    work = tmp_path / "qemu"
    code = (
        "from pathlib import Path\n"
        "from isobench.drivers.base import DriverContext, SandboxSpec\n"
        "from isobench.drivers.qemu import QemuDriver\n"
        f"d = QemuDriver(DriverContext(Path({str(STATE)!r}), Path({str(work)!r}), {run_id!r}, {{}}))\n"
        f"d.create(SandboxSpec('k0', {run_id!r}, memory_mib=128, network=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(600):
        if find_guests(Path("/proc"), f"isobench-qemu-{run_id}-"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gc_driver = QemuDriver(DriverContext(STATE, work, run_id, {}))
    gone = gc_driver.gc(run_id)
    assert any(g.startswith("process ") for g in gone), gone
    assert any(g.startswith(f"link {run_prefix(run_id)}") for g in gone), gone
    assert _leftovers(gc_driver) == []
