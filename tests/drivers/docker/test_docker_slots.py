"""Who holds a private dockerd's slot, and gc of slots: the daemon holds it by a record lock that
its containerd and shims do not inherit; shims that hold it by an inherited flock (daemons started
before) are recognised as orphans and reclaimed; a sweep spares slots of live runs and keeps the
ones it cannot attribute. Real locks and processes on slots of the host's runtime dir (a slot names
a host-wide bridge, so a test holds a real one) or on unused high slots of a private one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.docker.daemon import PrivateDaemon, orphan_holders, reclaim_slot
from isobench.drivers.docker.driver import DockerDriver, DockerProbe
from isobench.drivers.docker.names import DEFAULT_RUNTIME_DIR, Slot, SlotLock, slot_is_free
from isobench.errors import GcIncomplete
from isobench.liveruns import LiveRun, Sparing, start_time

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="slots live under /run (root)")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)


def test_a_daemons_children_do_not_hold_its_slot(tmp_path: Path) -> None:
    # Like dockerd's containerd and shims: a child in a session of its own, which outlives it.
    orphan_pid = tmp_path / "orphan.pid"
    script = tmp_path / "fake-dockerd"
    script.write_text(
        f"#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! > {orphan_pid}\nexec sleep 300\n"
    )
    script.chmod(0o755)
    lock = SlotLock.take(DEFAULT_RUNTIME_DIR, tmp_path / "state")
    daemon = PrivateDaemon(str(script), lock.slot, start_timeout=5)
    daemon.start(lambda: orphan_pid.exists() and bool(orphan_pid.read_text().strip()))
    orphan = int(orphan_pid.read_text())
    try:
        lock.release()
        assert not slot_is_free(lock.slot)  # the daemon holds it while it lives
        assert daemon.pid is not None
        os.kill(daemon.pid, signal.SIGKILL)  # a daemon that dies without stopping its children
        _wait(lambda: not daemon.alive())
        assert _pid_alive(orphan)
        assert slot_is_free(lock.slot), "the daemon's orphaned child still holds its slot"
    finally:
        os.kill(orphan, signal.SIGKILL)
        daemon.stop()


#: A process named like a containerd shim of ``slot`` (its ``-address`` in the exec root) holding
#: the slot's flock through a descriptor it inherited, as shims did from the dockerds before.
_SHIM = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.set_inheritable(fd, True)
os.execv(sys.executable, [sys.argv[2], "-c", "import time; time.sleep(300)", "-address", sys.argv[3]])
"""


def _fake_shim(
    slot: Slot, procs: list[subprocess.Popen[bytes]], name: str = "containerd-shim-runc-v2"
) -> int:
    address = str(slot.exec_root / "containerd" / "containerd.sock")
    proc = subprocess.Popen([sys.executable, "-c", _SHIM, str(slot.lock_path), name, address])
    procs.append(proc)
    _wait(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(name.encode()))
    return proc.pid


def test_gc_reclaims_a_slot_held_only_by_orphaned_shims(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    lock = SlotLock.take(DEFAULT_RUNTIME_DIR, tmp_path / "state")
    slot = lock.slot
    slot.exec_root.mkdir(parents=True, exist_ok=True)
    lock.release()
    shim = _fake_shim(slot, procs)
    assert not slot_is_free(slot) and orphan_holders(slot) == [shim]
    outcome = reclaim_slot(slot)
    assert outcome is not None
    removed, left = outcome
    assert f"containerd shim {shim}" in removed and f"exec root {slot.exec_root}" in removed
    assert left == [] and slot_is_free(slot)
    _wait(lambda: procs[0].poll() is not None)
    assert procs[0].returncode == -signal.SIGKILL


def test_a_slot_held_by_anything_but_its_shims_is_not_reclaimed(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    lock = SlotLock.take(DEFAULT_RUNTIME_DIR, tmp_path / "state")
    slot = lock.slot
    lock.release()
    holder = _fake_shim(slot, procs, name="python3-runner")  # a runner, say: not the slot's own
    assert orphan_holders(slot) is None
    assert reclaim_slot(slot) is None
    assert _pid_alive(holder) and not slot_is_free(slot)


def _holder(path: Path, procs: list[subprocess.Popen[bytes]]) -> int:
    code = "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\nprint(flush=True)\ntime.sleep(300)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"\n"
    return proc.pid


def test_a_sweep_spares_live_runs_slots_and_keeps_what_it_cannot_attribute(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    # Slots 61-63 of a private runtime dir: no daemon of this host is that high (their bridges
    # isobd61-63 do not exist), so clearing them touches nothing real.
    runtime = tmp_path / "runtime"
    live_slot, unknown_slot, dead_slot = (Slot(i, runtime, tmp_path / "state") for i in (61, 62, 63))
    for slot in (live_slot, unknown_slot, dead_slot):
        slot.exec_root.mkdir(parents=True)
        slot.lock_path.touch()
    live_pid = _holder(live_slot.lock_path, procs)
    unknown_pid = _holder(unknown_slot.lock_path, procs)
    run = LiveRun("live1", live_pid, start_time(live_pid) or "", str(tmp_path / "elsewhere"))
    sparing = Sparing((run,))
    ctx = DriverContext(tmp_path / "state", tmp_path / "work", "gc", sparing=sparing)
    driver = DockerDriver(ctx, probe=DockerProbe(runtime_dir=runtime))
    removed, left = driver._gc_slots()
    assert removed == [f"exec root {dead_slot.exec_root}"] and left == []
    assert live_slot.exec_root.is_dir() and unknown_slot.exec_root.is_dir()
    assert sparing.spared_lines() == [f"spared 1 resource of live run live1 (pid {live_pid}): docker slot 61"]
    [kept] = sparing.kept_lines()
    assert kept.startswith(f"docker slot 62 (kept: held by pid {unknown_pid}, no live isobench run")


def test_an_unparsable_daemon_record_is_kept_and_named(tmp_path: Path) -> None:
    ctx = DriverContext(tmp_path / "state", tmp_path / "work", "dead1")
    driver = DockerDriver(ctx, probe=DockerProbe(runtime_dir=tmp_path / "runtime"))
    driver.record_path.parent.mkdir(parents=True)
    driver.record_path.write_text('{"slot": 3, "runtime_')  # torn
    with pytest.raises(GcIncomplete) as err:
        driver.gc("dead1")
    [line] = err.value.leftovers
    assert line.startswith(f"unparsable daemon record {driver.record_path} (kept") and "gc --all" in line
    assert driver.record_path.exists()


def test_a_killed_writers_temp_file_next_to_the_record_goes(tmp_path: Path) -> None:
    ctx = DriverContext(tmp_path / "state", tmp_path / "work", "dead2")
    driver = DockerDriver(ctx, probe=DockerProbe(runtime_dir=tmp_path / "runtime"))
    driver.record_path.parent.mkdir(parents=True)
    tmp = driver.record_path.parent / ".daemon.json.k3j4"
    tmp.write_text('{"slot"')
    os.utime(tmp, (time.time() - 90, time.time() - 90))
    assert driver.gc("dead2") == [f"stale temp file {tmp}"] and not tmp.exists()


def test_reclaiming_waits_until_killed_processes_have_exited_not_until_their_cmdline_is_empty() -> None:
    # An exiting process loses its command line before its files and namespaces; the wait after the
    # SIGKILLs must last until it is a zombie or gone. A real child: killed, not yet reaped (a zombie).
    from isobench.drivers.docker import daemon

    child = subprocess.Popen(["sleep", "30"])
    try:
        start = time.monotonic()
        daemon._wait_gone([child.pid], 0.3)  # alive: the whole grace is waited
        assert time.monotonic() - start >= 0.3
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while daemon.running(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        daemon._wait_gone([child.pid], 5.0)  # a zombie holds nothing: no wait
        assert time.monotonic() - start < 1.0
    finally:
        child.kill()
        child.wait()


def test_the_wait_asks_whether_processes_run_not_whether_they_have_a_cmdline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from isobench.drivers.docker import daemon

    states = {11: [True, True, False], 12: [True, False]}  # pid: running() answers in turn
    asked: list[int] = []

    def running(pid: int) -> bool:
        asked.append(pid)
        seq = states[pid]
        return seq.pop(0) if len(seq) > 1 else seq[0]

    monkeypatch.setattr(daemon, "running", running)
    monkeypatch.setattr(daemon, "_cmdline", lambda *a: [])  # an exiting process: no cmdline yet
    monkeypatch.setattr(daemon.time, "sleep", lambda s: None)
    daemon._wait_gone([11, 12], 60.0)
    assert states == {11: [False], 12: [False]} and 12 in asked
