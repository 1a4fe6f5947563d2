"""A real private dockerd (started by the tests themselves: CI runs as root with no services) on a
busybox image: containers with the spec's limits, exec, stats against the stats API, and after
close, gc (also of a runner killed outright) or a daemon's death: no daemon, no containerd, no
containers, no mounts, no bridge, no cgroups left. Startup, cpu and overlay on the suite image are
in tests/workloads/test_drivers.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.docker.driver import DockerDriver
from isobench.drivers.docker.names import DEFAULT_RUNTIME_DIR, Slot
from isobench.errors import SandboxError

pytestmark = pytest.mark.integration


def leftovers(slot: Slot, run_id: str) -> list[str]:
    """Every trace a run's private daemon could leave on the host (empty = clean)."""
    roots = (str(slot.exec_root), str(slot.data_root))
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if any(r in a for a in argv for r in roots) or f"unix://{slot.socket}" in argv:
            found.append(f"process {proc.info['pid']}: {' '.join(argv)[:120]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if any(r in line for r in roots):
            found.append(f"mount {line.split()[4]}")
    if Path("/sys/class/net", slot.bridge).exists():
        found.append(f"bridge {slot.bridge}")
    # anywhere in a hierarchy: Docker puts a relative parent under the daemon's own cgroup
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/**/isobench-docker-{run_id}")]
    if slot.exec_root.exists():
        found.append(f"exec root {slot.exec_root}")
    return found


@pytest.fixture
def run_id() -> str:
    return f"d{uuid.uuid4().hex[:8]}"


@pytest.fixture
def driver(tmp_path: Path, run_id: str) -> Iterator[DockerDriver]:
    ctx = DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    drv = DockerDriver(ctx)
    avail = drv.availability()
    assert avail.ok, avail.reason
    yield drv
    drv.close()
    drv.gc(run_id)


def _spec(run_id: str, image: Path, **kw: object) -> SandboxSpec:
    return SandboxSpec(name="sb", run_id=run_id, image=image, **kw)  # type: ignore[arg-type]


def _connect_when_listening(address: str, port: int, within_s: float = 10) -> socket.socket:
    """The exec that backgrounds ``nc -l`` returns before nc listens: refused means not yet."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return socket.create_connection((address, port), timeout=within_s)
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def test_a_container_with_limits_exec_stats_and_a_clean_close(
    driver: DockerDriver, busybox_rootfs: Path, run_id: str, tmp_path: Path
) -> None:
    meta = driver.metadata()
    assert (meta["storage_driver"], meta["runtime"], meta["seccomp"]) == ("overlay2", "runc", "default")
    slot = driver.slot
    assert slot is not None
    volume = tmp_path / "vol"
    volume.mkdir()
    cpu = sorted(os.sched_getaffinity(0))[-1]
    sb = driver.create(
        _spec(run_id, busybox_rootfs, memory_mib=64, cpuset=(cpu,), network=True, volume=volume)
    )
    try:
        assert [p.name for p in sb.phases] == ["create", "start", "ready", "exec"]
        res = sb.exec(
            ["sh", "-c", 'echo $$; pwd; grep Seccomp: /proc/self/status; cat; echo "$X" > /data/f'],
            timeout=30,
            env={"X": "hi"},
            stdin=b"in\n",
        )
        pid, cwd, _, seccomp, stdin = res.stdout.split()
        assert (cwd, seccomp, stdin) == ("/work", "2", "in")  # 2: a seccomp filter (Docker's default)
        assert int(pid) < 100  # its own pid namespace
        assert (volume / "f").read_text() == "hi\n"
        # The busybox image's writes land in the container layer, never in the image tree.
        assert sb.exec(["sh", "-c", "echo x > /etc/new"], timeout=30).ok
        assert not (busybox_rootfs / "etc" / "new").exists()
        # Reachable from the host over the run's bridge.
        assert sb.address is not None and sb.address.startswith("10.216.")
        assert sb.exec(["sh", "-c", "echo hello | nc -l -p 5000 >/dev/null 2>&1 &"], timeout=30).ok
        with _connect_when_listening(sb.address, 5000) as conn:
            assert conn.makefile().readline() == "hello\n"
        stats = sb.stats()
        assert stats.memory_limit_bytes == 64 * 1024 * 1024
        api = sb.api_stats()
        # The cgroup and the stats API read the same counters: equal within what ran in between.
        assert stats.memory_bytes is not None and api.memory_bytes is not None
        assert abs(api.memory_bytes - stats.memory_bytes) < 4 * 1024 * 1024
        assert stats.cpu_seconds is not None and api.cpu_seconds is not None
        assert api.cpu_seconds >= stats.cpu_seconds * 0.99
    finally:
        sb.destroy()
    # Docker's own view next to the client's: the daemon's create and start events fall inside their
    # calls, in order, before ready, the network set up before the runtime starts the init; its die
    # and destroy inside the remove.
    by = {p.name: p for p in sb.phases}
    d_create, d_start, d_net, d_runtime, d_die, d_destroy = (
        by[f"daemon_{n}"] for n in ("create", "start", "network", "runtime", "die", "destroy")
    )
    assert by["create"].start_ns == d_create.start_ns <= d_create.end_ns <= by["create"].end_ns
    assert (
        by["create"].end_ns <= d_start.start_ns < d_start.end_ns <= by["start"].end_ns <= by["ready"].end_ns
    )
    assert (
        d_start.start_ns
        == d_net.start_ns
        <= d_net.end_ns
        == d_runtime.start_ns
        < d_runtime.end_ns
        == d_start.end_ns
    )
    assert by["remove"].start_ns <= d_die.end_ns <= d_destroy.end_ns <= by["remove"].end_ns
    # Memory limit enforced: the kernel kills what grows past 64 MiB. In a container of its own: an
    # OOM loop makes the daemon log hundreds of oom events, and it keeps only its last 256, so the
    # first container's create and start events would be gone before its phases were read.
    oom = driver.create(_spec(run_id, busybox_rootfs, memory_mib=64))
    try:
        big = oom.exec(["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"], timeout=60)
        assert big.exit_code != 0
    finally:
        oom.destroy()
    driver.close()
    assert leftovers(slot, run_id) == []


def test_gc_stops_the_daemon_of_a_dead_run(tmp_path: Path, busybox_rootfs: Path, run_id: str) -> None:
    ctx = DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    dead = DockerDriver(ctx)
    dead.metadata()  # starts the daemon
    dead.create(_spec(run_id, busybox_rootfs, network=True))
    slot = dead.slot
    assert slot is not None
    # The runner dies: its slot lock goes with it, the daemon (holding its own) and container live on.
    assert dead._lock is not None
    dead._lock.release()
    removed = DockerDriver(ctx).gc(run_id)
    assert any(r.startswith("dockerd ") for r in removed), removed
    assert leftovers(slot, run_id) == []
    # The dead run's container and network stayed in the slot's data root: the next run's daemon
    # there removes them and makes its own network on the same bridge and subnet.
    again = DockerDriver(
        DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work2", run_id=run_id + "b")
    )
    try:
        again.metadata()
        assert again.slot is not None and again.slot.index == slot.index
        sb = again.create(_spec(run_id + "b", busybox_rootfs, network=True))
        assert sb.address is not None
        sb.destroy()
    finally:
        again.close()
    assert leftovers(slot, run_id + "b") == []


def test_a_daemon_killed_mid_run_fails_the_next_cell_and_close_clears_all(
    driver: DockerDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = driver.create(_spec(run_id, busybox_rootfs))
    slot = driver.slot
    assert slot is not None and driver._daemon is not None and driver._daemon.pid is not None
    # at once, not after a pause: the client's "connection refused" comes before the daemon's
    # process is reaped, and the driver must still name the death
    os.kill(driver._daemon.pid, signal.SIGKILL)
    with pytest.raises(SandboxError, match=r"private dockerd .* exited with code -9"):
        sb.exec(["true"], timeout=10)
    with pytest.raises(SandboxError, match="exited with code -9"):
        driver.create(_spec(run_id, busybox_rootfs))
    with pytest.raises(SandboxError):
        sb.destroy()  # the daemon that could remove it is gone; close() clears it instead
    with pytest.raises(SandboxError):
        driver.close()  # says what it could not do through the dead daemon
    assert leftovers(slot, run_id) == []


_RUNNER = """
import sys, time
from pathlib import Path
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.docker.driver import DockerDriver
state, work, run_id, image = sys.argv[1:5]
driver = DockerDriver(DriverContext(Path(state), Path(work), run_id))
driver.metadata()
driver.create(SandboxSpec(name="sb", run_id=run_id, image=Path(image), network=True))
print(driver.slot.index, flush=True)
time.sleep(120)
"""


def test_a_runner_killed_outright_takes_its_daemon_down_and_gc_clears_the_rest(
    tmp_path: Path, busybox_rootfs: Path, run_id: str
) -> None:
    state, work = tmp_path / "state", tmp_path / "work"
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(state), str(work), run_id, str(busybox_rootfs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    index = int(runner.stdout.readline())
    runner.kill()
    runner.wait()
    slot = Slot(index, DEFAULT_RUNTIME_DIR, state)
    # The parent-death signal stops the daemon, which stops its container and containerd.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(p.startswith("process ") for p in leftovers(slot, run_id)):
        time.sleep(0.2)
    assert not any(p.startswith("process ") for p in leftovers(slot, run_id)), leftovers(slot, run_id)
    # What a graceful shutdown keeps (the bridge of the run's network, the exec root, the cgroup
    # parent) is gc's, found through the run's daemon.json.
    removed = DockerDriver(DriverContext(state, work, run_id)).gc(run_id)
    assert removed, "gc found nothing of the killed run"
    assert leftovers(slot, run_id) == []
