"""Runtime hardening (issue 18) checked from inside real containers: what a tenant sees of its pid 1,
whether it can kill it, capabilities, mount targets, rlimits, directories, subordinate ids, and
that containers die with a SIGKILLed runner.

Root only; about 5 s in all (one runner subprocess).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver, ContainerSandbox

pytestmark = pytest.mark.integration

SpecFactory = Callable[..., SandboxSpec]
Leftovers = Callable[[], list[str]]
CANARY = "ISOBENCH_RUNNER_CANARY"


@pytest.fixture
def box(  # type: ignore[no-untyped-def]
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(CANARY, "runner-secret-42")
    sb = driver.create(make_spec("hard", memory_mib=64, pids_limit=64))
    yield sb
    sb.destroy()
    assert leftovers() == []


def run(sb: ContainerSandbox, script: str) -> subprocess.CompletedProcess[str]:
    r = sb.exec(["sh", "-c", script], timeout=10)
    return subprocess.CompletedProcess(script, r.exit_code, r.stdout, r.stderr)


def test_pid1_shows_nothing_of_the_host(box: ContainerSandbox, driver: ContainerDriver) -> None:
    # Inside: pid 1 is undumpable, so its environment and executable are closed to the tenant.
    inside = run(box, "cat /proc/1/environ; readlink /proc/1/exe; tr '\\0' ' ' < /proc/1/cmdline")
    assert "runner-secret" not in inside.stdout
    assert "Permission denied" in inside.stderr
    assert inside.stdout.split() == ["isobench-init"]
    # From the host (root may look): no runner environment, no host paths, not the host binary.
    pid = box.init_pid
    assert b"runner-secret" not in Path(f"/proc/{pid}/environ").read_bytes()
    assert Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0") == b"isobench-init"
    exe = os.readlink(f"/proc/{pid}/exe")
    assert exe.startswith("/memfd:isobench-ctr") and str(driver.helper()) not in exe
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    # The sealed image cannot be written, even by host root (CVE-2019-5736).
    with (
        pytest.raises(OSError, match=r"Text file busy|not permitted"),
        open(f"/proc/{pid}/exe", "r+b") as exe_file,
    ):
        exe_file.write(b"\0")
    # An exec'd command gets only the container's environment.
    env = run(box, "env").stdout
    assert "runner-secret" not in env and "PATH=" in env


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_tenant_cannot_kill_its_init(box: ContainerSandbox) -> None:
    r = run(box, "for s in KILL TERM INT HUP QUIT USR1 STOP; do kill -$s 1; done; echo sent")
    assert r.stdout == "sent\n"
    # alive and not stopped: asleep again once it has handled the signals (it may still be
    # running them on a loaded host, so wait for that rather than read it once)
    deadline = time.monotonic() + 5
    while _state(box.init_pid) != "S" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(box.init_pid) == "S"
    assert run(box, "echo alive").stdout == "alive\n"


def test_capabilities_inheritable_empty(box: ContainerSandbox) -> None:
    fields = dict(line.split(":\t") for line in run(box, "grep ^Cap /proc/self/status").stdout.splitlines())
    assert int(fields["CapInh"], 16) == 0
    assert int(fields["CapAmb"], 16) == 0
    assert int(fields["CapEff"], 16) == (1 << 5) | (1 << 10) | (1 << 29)


def test_dirs_closed_to_other_users_and_mounts_nosuid_nodev(
    driver: ContainerDriver, make_spec: SpecFactory, tmp_path: Path, leftovers: Leftovers
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir(mode=0o777)
    os.chmod(vol, 0o777)
    sb = driver.create(make_spec("dirs", volume=vol))
    try:
        base = sb.upper_dir.parent
        assert stat.S_IMODE(base.stat().st_mode) == 0o700
        assert stat.S_IMODE((base / "work").stat().st_mode) == 0o700
        assert stat.S_IMODE(vol.stat().st_mode) == 0o700
        mounts = {
            m.split()[1]: m.split()[3].split(",") for m in run(sb, "cat /proc/mounts").stdout.splitlines()
        }
        for point in ("/", "/data"):
            assert {"nosuid", "nodev"} <= set(mounts[point]), (point, mounts[point])
    finally:
        sb.destroy()
    assert leftovers() == []


def test_symlinked_mount_target_stays_inside_the_root(
    driver: ContainerDriver, make_spec: SpecFactory, tmp_path: Path, leftovers: Leftovers
) -> None:
    # An image whose /data points at /etc: the volume must land on the *image's* /etc, never on a
    # host path found by following the link outside the container's root.
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "data").symlink_to("/etc")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "marker").write_text("from the volume\n")
    sb = driver.create(make_spec("link", volume=vol, options={"layers": [str(layer)]}))
    try:
        assert run(sb, "cat /etc/marker /data/marker").stdout == "from the volume\n" * 2
        assert not Path("/etc/marker").exists()
    finally:
        sb.destroy()
    assert leftovers() == []


def test_rlimits_are_the_specs(driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers) -> None:
    sb = driver.create(make_spec("rl", options={"rlimits": ["nofile=512:1024", "nproc=300"]}))
    try:
        for limits in (
            run(sb, "cat /proc/self/limits").stdout,
            Path(f"/proc/{sb.init_pid}/limits").read_text(),
        ):
            rows = {line[:26].strip(): line[26:].split()[:2] for line in limits.splitlines()[1:]}
            assert rows["Max open files"] == ["512", "1024"]
            assert rows["Max processes"] == ["300", "300"]
            assert rows["Max core file size"] == ["0", "0"]
    finally:
        sb.destroy()
    assert leftovers() == []


def test_subordinate_ids_root_is_not_host_root(
    driver: ContainerDriver, make_spec: SpecFactory, tmp_path: Path, leftovers: Leftovers
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    sb = driver.create(make_spec("subid", volume=vol, options={"rootless": True, "subids": "200000:65536"}))
    try:
        out = run(sb, "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u:%g /etc/passwd /bin/sh")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["0", "200000", "65536"] * 2 + ["0", "0:0", "0:0"]
        status = Path(f"/proc/{sb.init_pid}/status").read_text()
        assert next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1] == "200000"
        # The upper layer holds files of the unprivileged range; the idmapped volume, the host's root.
        assert run(sb, "echo u > /isobench-work/f && echo v > /data/f").returncode == 0
        assert (sb.upper_dir / "isobench-work" / "f").stat().st_uid == 200000
        assert (vol / "f").stat().st_uid == 0
    finally:
        sb.destroy()
    assert leftovers() == []


RUNNER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from isobench.drivers.base import DriverContext, SandboxSpec
    from isobench.drivers.container import ContainerDriver
    state, work, run_id, image = sys.argv[1:5]
    drv = ContainerDriver(DriverContext(state_dir=Path(state), work_dir=Path(work), run_id=run_id))
    spec = SandboxSpec(name="orphan", run_id=run_id, image=Path(image))
    sb = drv.create(spec)
    threading.Thread(target=lambda: sb.exec(["sleep", "600"], timeout=900), daemon=True).start()
    cold = lambda: drv.run_cold(SandboxSpec(name="cold", run_id=run_id, image=Path(image)), ["sleep", "600"])
    threading.Thread(target=cold, daemon=True).start()
    print(sb.init_pid, flush=True)
    threading.Event().wait()
    """
)


def _pid_namespaces_of(ident: str) -> set[int]:
    """The pid namespaces of the processes in a run's cgroups (not the host's: a helper that joins
    a container enters its cgroup from outside the pid namespace)."""
    host = Path("/proc/self/ns/pid").stat().st_ino
    found = set()
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and ident in (d / "cgroup").read_text():
                found.add((d / "ns" / "pid").stat().st_ino)
        except OSError:
            continue
    return found - {host}


def test_sigkilled_runner_takes_its_containers_along(
    ctx: DriverContext, driver: ContainerDriver, rootfs: Path, leftovers: Leftovers
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(ctx.state_dir), str(ctx.work_dir), ctx.run_id, str(rootfs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        init_pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 10
        while len(_pid_namespaces_of(f"-{ctx.run_id}-")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the cold run's container is up, the exec'd sleep too
        assert len(_pid_namespaces_of(f"-{ctx.run_id}-")) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def running() -> bool:
        # Gone, or a zombie waiting for the host's init (its helper parent died with the runner).
        init_alive = _state(init_pid) not in {"Z", "gone"}
        return init_alive or bool(_pid_namespaces_of(f"-{ctx.run_id}-"))

    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running()
    driver.gc(ctx.run_id)
    assert leftovers() == []


def test_sandbox_made_by_a_thread_outlives_the_thread(
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers
) -> None:
    # The density workload creates sandboxes from a thread pool that is shut down afterwards: a
    # parent-death signal must follow the runner process, not the thread that spawned the helper.
    made: list[ContainerSandbox] = []
    worker = threading.Thread(target=lambda: made.append(driver.create(make_spec("threaded"))))
    worker.start()
    worker.join()
    time.sleep(0.2)
    try:
        assert run(made[0], "echo alive").stdout == "alive\n"
    finally:
        made[0].destroy()
    assert leftovers() == []


def test_overlay_options_over_a_page_are_refused_by_the_helper(
    driver: ContainerDriver, tmp_path: Path
) -> None:
    lower = tmp_path / ("l" * 200)
    lower.mkdir()
    args = ["isobench-ctr", "run", "--ns", "mount"]
    for _ in range(30):  # 30 x ~250 bytes: over the kernel's one page of options
        args += ["--lower", str(lower)]
    args += ["--upper", str(tmp_path), "--work", str(tmp_path), "--merged", str(tmp_path), "--", "true"]
    r = subprocess.run(
        args, executable=driver.helper(), capture_output=True, text=True, timeout=10, check=False
    )
    assert r.returncode == 125 and "overlay options longer than 4095 bytes" in r.stderr, r.stderr
