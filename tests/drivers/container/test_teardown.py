"""Nothing is left behind: 200 containers in a row, and a runner SIGKILLed mid-container + gc()."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver

pytestmark = pytest.mark.integration


def test_200_containers_leave_nothing(
    driver: ContainerDriver,
    make_spec: Callable[..., SandboxSpec],
    leftovers: Callable[[], list[str]],
) -> None:
    t0 = time.monotonic()
    for i in range(190):
        run = driver.run_cold(make_spec(f"c{i}"), ["true"])
        assert run.result.exit_code == 0
    # Long-lived sandboxes with every resource kind: cgroup, overlay, veth, exec'd processes.
    for i in range(10):
        sb = driver.create(make_spec(f"n{i}", network=True))
        assert sb.exec(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo ok"], timeout=5).stdout == "ok\n"
        sb.destroy()
    elapsed = time.monotonic() - t0
    assert leftovers() == []
    print(f"200 containers created and removed in {elapsed:.2f}s")


RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from isobench.drivers.base import DriverContext, SandboxSpec
    from isobench.drivers.container import ContainerDriver
    state, work, run_id, image, with_cgroup = sys.argv[1:6]
    drv = ContainerDriver(DriverContext(state_dir=Path(state), work_dir=Path(work), run_id=run_id))
    spec = SandboxSpec(name="victim", run_id=run_id, image=Path(image), network=True,
                       options={"cgroup": with_cgroup == "1"})
    sb = drv.create(spec)
    print(sb.init_pid, sb.ident, flush=True)
    sb.exec(["sleep", "600"], timeout=900)  # the runner is killed while this runs
    """
)


@pytest.mark.parametrize("with_cgroup", ["1", "0"])
def test_sigkilled_runner_leftovers_are_collected_by_gc(
    ctx: DriverContext, rootfs: Path, leftovers: Callable[[], list[str]], with_cgroup: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(ctx.state_dir),
            str(ctx.work_dir),
            ctx.run_id,
            str(rootfs),
            with_cgroup,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert len(line) == 2, line
    init_pid, ident = int(line[0]), line[1]
    time.sleep(0.2)  # let the exec'd sleep start
    pid_ns = Path(f"/proc/{init_pid}/ns/pid").stat().st_ino
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # The container's processes die with the runner (parent-death signals on every helper and on
    # pid 1): nothing of it keeps running, not even the exec'd sleep.
    deadline = time.monotonic() + 5
    while Path(f"/proc/{init_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{init_pid}").exists()
    assert _pids_in_pid_ns(pid_ns) == []
    # What is not a process stays for gc: cgroup, directories, record.
    left = leftovers()
    assert any(ident in item for item in left), left

    removed = ContainerDriver(ctx).gc(ctx.run_id)
    assert ident in removed
    assert leftovers() == []
    # A second gc finds nothing more.
    assert ContainerDriver(ctx).gc(ctx.run_id) == []


def _pids_in_pid_ns(inode: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "ns" / "pid").stat().st_ino == inode:
                    found.append(int(d.name))
            except OSError:
                continue
    return found


def test_gc_spares_live_runners(ctx: DriverContext, rootfs: Path, leftovers: Callable[[], list[str]]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(ctx.state_dir), str(ctx.work_dir), ctx.run_id, str(rootfs), "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ident = proc.stdout.readline().split()[1]
        removed = ContainerDriver(ctx).gc(ctx.run_id)
        assert not any(ident in r for r in removed), removed
        assert any(ident in item for item in leftovers())
        rec = json.loads((ctx.state_dir / "container" / "live" / f"{ident}.json").read_text())
        assert rec["owner_pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert ident in ContainerDriver(ctx).gc(ctx.run_id)
    assert leftovers() == []


def test_interrupt_during_create_leaves_nothing(
    driver: ContainerDriver,
    make_spec: Callable[..., SandboxSpec],
    leftovers: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C arriving after the container runs but before create() returns (during veth setup).
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("isobench.drivers.container.driver.setup_veth", interrupted)
    with pytest.raises(KeyboardInterrupt):
        driver.create(make_spec("ctrlc", network=True))
    assert leftovers() == []


CTRL_C_RUNNER = textwrap.dedent(
    """
    import signal, sys
    # As at a terminal: a test run started in the background of a script inherits SIGINT ignored,
    # and a runner that ignores Ctrl-C is not what this test is about.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pathlib import Path
    from isobench.drivers.base import DriverContext, SandboxSpec
    from isobench.drivers.container import ContainerDriver
    state, work, run_id, image = sys.argv[1:5]
    drv = ContainerDriver(DriverContext(state_dir=Path(state), work_dir=Path(work), run_id=run_id))
    sb = drv.create(SandboxSpec(name="ctrlc", run_id=run_id, image=Path(image), network=True))
    try:
        print(sb.init_pid, flush=True)
        # A workload that ignores SIGTERM, interrupted by Ctrl-C in the runner.
        sb.exec(["sh", "-c", "trap '' TERM INT; sleep 600"], timeout=900)
    finally:
        sb.destroy()
    """
)


def test_ctrl_c_in_runner_tears_down(
    ctx: DriverContext, rootfs: Path, leftovers: Callable[[], list[str]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_RUNNER, str(ctx.state_dir), str(ctx.work_dir), ctx.run_id, str(rootfs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        init_pid = int(proc.stdout.readline())
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # it did not stop: what it made is gc's (the runner's own path)
            proc.kill()
            proc.communicate()
            ContainerDriver(ctx).gc(ctx.run_id)
    assert "KeyboardInterrupt" in err
    assert not Path(f"/proc/{init_pid}").exists()
    assert leftovers() == []


COLD_RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from isobench.drivers.base import DriverContext, SandboxSpec
    from isobench.drivers.container import ContainerDriver
    state, work, run_id, image = sys.argv[1:5]
    drv = ContainerDriver(DriverContext(state_dir=Path(state), work_dir=Path(work), run_id=run_id))
    drv.run_cold(SandboxSpec(name="coldvictim", run_id=run_id, image=Path(image)), ["sleep", "600"])
    """
)


def test_a_sigkilled_cold_run_with_its_upper_in_memory_is_collected_by_gc(
    ctx: DriverContext, rootfs: Path, leftovers: Callable[[], list[str]]
) -> None:
    # No directory on the host: gc finds its helper by the path the helper names (--name), its
    # cgroup by the record, and nothing else exists (the tmpfs went with the mount namespace).
    from isobench.drivers.container.state import load_records, record_processes

    proc = subprocess.Popen(
        [sys.executable, "-c", COLD_RUNNER, str(ctx.state_dir), str(ctx.work_dir), ctx.run_id, str(rootfs)]
    )
    deadline = time.monotonic() + 20
    found: list[int] = []
    while not found and time.monotonic() < deadline:
        records = [rec for _, rec in load_records(ctx.state_dir) if rec.run_id == ctx.run_id]
        found = record_processes(records[0]) if records else []
        time.sleep(0.02)
    assert found, "the cold run's helper never showed up"
    time.sleep(0.2)  # let the container's sleep start
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in found) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(Path(f"/proc/{pid}").exists() for pid in found)
    left = leftovers()
    assert left and not ctx.work_dir.exists(), left  # a record and a cgroup; no directory
    removed = ContainerDriver(ctx).gc(ctx.run_id)
    assert any("coldvictim" in item for item in removed), removed
    assert leftovers() == []
