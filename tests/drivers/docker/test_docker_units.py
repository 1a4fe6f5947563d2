"""The docker driver without a daemon: limits mapping, labels, exec results, failure cleanup,
the image tag and import, the daemon's command line and death (wire and readers: test_docker_wire)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.docker.daemon import (
    DaemonRecord,
    PrivateDaemon,
    dockerd_args,
    last_error,
    read_record,
    write_record,
)
from isobench.drivers.docker.driver import DockerDriver, DockerProbe
from isobench.drivers.docker.engine import DockerEngine
from isobench.drivers.docker.image import REPOSITORY, ensure_image, image_tag
from isobench.drivers.docker.names import (
    DEFAULT_RUNTIME_DIR,
    LABEL_RUN,
    LABEL_SANDBOX,
    Slot,
    SlotLock,
    slot_is_free,
)
from isobench.drivers.docker.sandbox import INIT_ARGS, WORKDIR, container_config
from isobench.errors import CellTimeout, DriverUnavailable, SandboxError

from .conftest import FakeEngine  # type: ignore[import-not-found]

RUN = "r1"


def _spec(**kw: Any) -> SandboxSpec:
    return SandboxSpec(name="isobench-r1-docker-1", run_id=RUN, **kw)


# -- the container asked for -----------------------------------------------------------------------


def test_spec_limits_map_to_the_container(tmp_path: Path) -> None:
    spec = _spec(vcpus=2, cpuset=(3, 1), memory_mib=256, pids_limit=64, network=True, volume=tmp_path)
    c = container_config(
        spec, image="isobench/rootfs:x", network="isobench-r1", cgroup_parent="isobench-docker-r1"
    )
    assert (c.cpuset_cpus, c.nano_cpus) == ("1,3", 2_000_000_000)
    # No swap beyond the memory limit, as the other container drivers.
    assert c.mem_limit == c.memswap_limit == 256 * 1024 * 1024
    assert c.pids_limit == 64
    assert c.binds == {str(tmp_path): "/data"}
    assert c.network == "isobench-r1"
    assert c.labels == {LABEL_RUN: RUN, LABEL_SANDBOX: spec.name}
    assert (c.command, c.working_dir, c.cgroup_parent) == (INIT_ARGS, WORKDIR, "isobench-docker-r1")
    assert c.name == "isobench-docker-r1-isobench-r1-docker-1"


def test_a_spec_cpu_quota_is_nano_cpus() -> None:
    c = container_config(_spec(vcpus=1, cpu_quota=0.5), image="i", network="n", cgroup_parent="p")
    assert c.nano_cpus == 500_000_000


def test_disk_bandwidth_is_docker_py_device_bps(tmp_path: Path) -> None:
    spec = _spec(io_bps=20 << 20, volume=tmp_path)
    c = container_config(spec, image="i", network=None, cgroup_parent="p", io_disks=["/dev/vda"])
    assert c.device_bps == (("/dev/vda", 20 << 20),)
    hc = DockerEngine("unix:///nonexistent.sock", timeout=5, version="1.41").host_config(c)
    rates = [{"Path": "/dev/vda", "Rate": 20 << 20}]
    assert hc["BlkioDeviceReadBps"] == rates and hc["BlkioDeviceWriteBps"] == rates
    plain = container_config(_spec(), image="i", network=None, cgroup_parent="p")
    assert "BlkioDeviceReadBps" not in DockerEngine("unix:///x.sock", timeout=5, version="1.41").host_config(
        plain
    )
    with pytest.raises(SandboxError, match="disks to throttle"):
        container_config(spec, image="i", network=None, cgroup_parent="p")


def test_no_network_no_cpuset_no_volume() -> None:
    c = container_config(_spec(pids_limit=None), image="i", network="isobench-r1", cgroup_parent="p")
    assert (c.network, c.cpuset_cpus, c.binds, c.pids_limit) == ("none", None, {}, None)


def test_docker_py_builds_the_host_config_offline(tmp_path: Path) -> None:
    """The mapping as docker-py sends it (no daemon needed: create_host_config makes no request)."""
    spec = _spec(vcpus=1, cpuset=(1,), memory_mib=512, pids_limit=1024, volume=tmp_path, network=True)
    c = container_config(spec, image="i", network="isobench-r1", cgroup_parent="isobench-docker-r1")
    hc = DockerEngine("unix:///nonexistent.sock", timeout=5, version="1.41").host_config(c)
    assert hc["CpusetCpus"] == "1"
    assert hc["NanoCpus"] == 1_000_000_000
    assert hc["Memory"] == hc["MemorySwap"] == 512 * 1024 * 1024
    assert hc["PidsLimit"] == 1024
    assert hc["CgroupParent"] == "isobench-docker-r1"
    assert hc["Binds"] == [f"{tmp_path}:/data:rw"]
    assert hc["NetworkMode"] == "isobench-r1"


# -- a sandbox over the fake engine ------------------------------------------------------------------


def _driver(tmp_path: Path, engine: FakeEngine, **options: Any) -> DockerDriver:
    sock = tmp_path / "docker.sock"
    sock.touch()
    ctx = DriverContext(
        state_dir=tmp_path / "state",
        work_dir=tmp_path / "work",
        run_id=RUN,
        options={"socket": str(sock), **options},
    )
    probe = DockerProbe(runtime_dir=tmp_path / "runtime")
    return DockerDriver(ctx, probe=probe, engine_factory=lambda url, timeout, version: engine)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "image" / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "true").write_bytes(b"x" * 3000)
    (root.parent / "image.json").write_text(json.dumps({"name": "default", "digest": "abc123"}))
    return root


def test_create_labels_exec_and_destroy(tmp_path: Path, rootfs: Path) -> None:
    def run(argv: Any, stdin: bytes | None) -> tuple[bytes, bytes, int]:
        if argv[0] == "sh":
            return b"out\n", b"err\n", 3
        return (stdin or b""), b"", 0

    engine = FakeEngine(run=run)
    driver = _driver(tmp_path, engine)
    sb = driver.create(_spec(image=rootfs, network=True))
    assert [p.name for p in sb.phases] == ["create", "start", "ready", "exec"]
    assert sb.address == "10.216.0.2"
    (config,) = engine.containers_made.values()
    assert config.image == f"{REPOSITORY}:default-abc123"
    assert config.labels[LABEL_RUN] == RUN
    # The network of this run, on the bridge and subnet of its slot.
    net = engine.networks_made["isobench-r1"]
    assert (net.bridge, net.subnet, net.labels) == ("isobd0", "10.216.0.0/24", {LABEL_RUN: RUN})
    res = sb.exec(["sh", "-c", "x"], timeout=5, env={"A": "1"})
    assert (res.exit_code, res.stdout, res.stderr, res.argv) == (3, "out\n", "err\n", ("sh", "-c", "x"))
    assert sb.exec(["cat"], timeout=5, stdin=b"in").stdout == "in"
    assert sb.api_stats().as_dict() == {"memory_bytes": 1000.0, "cpu_seconds": 2.0}
    sb.destroy()
    assert engine.removed == [sb.container_id]
    assert [p.name for p in sb.phases if not p.name.startswith("daemon_")][-2:] == ["remove", "destroy"]
    with pytest.raises(SandboxError, match="destroyed"):
        sb.exec(["true"], timeout=5)
    driver.close()
    assert engine.networks_made == {} and engine.closed
    assert not (tmp_path / "runtime" / "slot-0.lock").exists() or slot_is_free(
        Slot(0, tmp_path / "runtime", tmp_path / "state")
    )


def test_image_is_imported_once_per_digest(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine()
    ref, took = ensure_image(engine, rootfs)
    assert ref == f"{REPOSITORY}:default-abc123" and took is not None
    assert engine.imported_bytes >= 3000  # a tar of the tree, not an empty stream
    assert ensure_image(engine, rootfs) == (ref, None)
    (rootfs.parent / "image.json").write_text(json.dumps({"name": "default", "digest": "new"}))
    assert ensure_image(engine, rootfs)[0] == f"{REPOSITORY}:default-new"


def test_a_tree_that_is_no_built_image_gets_a_path_tag(tmp_path: Path) -> None:
    tag = image_tag(tmp_path)
    assert tag.startswith("tree-") and tag == image_tag(tmp_path)


def _tars() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "tar"]


def test_a_failed_import_is_one_error_and_leaves_no_tar_running(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine(fail={"import_tar": SandboxError("docker import: no space left on device")})
    with pytest.raises(SandboxError, match="no space left"):
        ensure_image(engine, rootfs)
    assert _tars() == []
    assert engine.images == {}


def test_an_import_failing_at_create_leaves_nothing(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine(fail={"import_tar": SandboxError("docker import: broken pipe")})
    driver = _driver(tmp_path, engine)
    with pytest.raises(SandboxError, match="broken pipe"):
        driver.create(_spec(image=rootfs))
    assert engine.containers_made == {}
    driver.close()


@pytest.mark.parametrize("step", ["start", "exec_create"])
def test_a_failed_start_removes_the_container(tmp_path: Path, rootfs: Path, step: str) -> None:
    engine = FakeEngine(fail={step: SandboxError(f"docker {step}: boom")})
    driver = _driver(tmp_path, engine)
    with pytest.raises(SandboxError, match="boom"):
        driver.create(_spec(image=rootfs))
    assert engine.containers_made == {} and len(engine.removed) == 1
    driver.close()


def test_a_failing_probe_exec_removes_the_container(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine(run=lambda argv, stdin: (b"", b"", 1))
    driver = _driver(tmp_path, engine)
    with pytest.raises(SandboxError, match="cannot run `true` \\(exit 1\\)"):
        driver.create(_spec(image=rootfs))
    assert engine.containers_made == {}
    driver.close()


def test_an_exec_the_runtime_cannot_start_is_a_sandbox_error(tmp_path: Path, rootfs: Path) -> None:
    msg = b'OCI runtime exec failed: exec failed: exec: "nosuch": executable file not found in $PATH: unknown\r\n'

    def run(argv: Any, stdin: bytes | None) -> tuple[bytes, bytes, int]:
        return (msg, b"", 126) if argv[0] == "nosuch" else (b"", b"", 0)

    engine = FakeEngine(run=run)
    driver = _driver(tmp_path, engine)
    sb = driver.create(_spec(image=rootfs))
    with pytest.raises(SandboxError, match=r"cannot run 'nosuch'.*executable file not found"):
        sb.exec(["nosuch"], timeout=5)
    # A command that exits 127 on its own is a result, not a driver failure.
    engine.run = lambda argv, stdin: (b"", b"sh: nosuch: not found\n", 127)
    assert sb.exec(["sh", "-c", "nosuch"], timeout=5).exit_code == 127
    sb.destroy()
    driver.close()


def test_a_timed_out_exec_is_killed_with_what_it_started(tmp_path: Path, rootfs: Path) -> None:
    # the exec's process and one it started in a session of its own (as fio starts its jobs)
    pidfile = tmp_path / "pid"
    victim = subprocess.Popen(["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & wait"])
    end = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < end
        time.sleep(0.05)
    stray = psutil.Process(int(pidfile.read_text()))
    engine = FakeEngine(exec_pid=victim.pid)
    driver = _driver(tmp_path, engine)
    sb = driver.create(_spec(image=rootfs))
    engine.fail["exec_attach"] = CellTimeout("docker exec did not finish within 1s")
    with pytest.raises(CellTimeout):
        sb.exec(["sleep", "60"], timeout=1)
    assert victim.wait(timeout=5) == -9
    assert _dead(stray)
    sb.destroy()
    driver.close()


def _dead(p: psutil.Process, within: float = 5.0) -> bool:
    """``p`` is gone or a zombie (killed, and its new parent has not reaped it yet)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_an_exec_without_exit_code_is_an_error(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine()
    driver = _driver(tmp_path, engine)
    sb = driver.create(_spec(image=rootfs))
    engine.exit_codes.clear()
    engine.run = lambda argv, stdin: (b"", b"", None)  # type: ignore[assignment,return-value]
    with pytest.raises(SandboxError, match="gave no exit code"):
        sb.exec(["true"], timeout=5)
    sb.destroy()
    driver.close()


def test_close_removes_what_destroy_could_not(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine()
    driver = _driver(tmp_path, engine)
    sb = driver.create(_spec(image=rootfs))
    engine.fail["remove"] = SandboxError("docker remove: daemon busy")
    with pytest.raises(SandboxError, match=r"left resources.*daemon busy"):
        sb.destroy()
    del engine.fail["remove"]
    driver.close()
    assert engine.containers_made == {}


def test_a_failed_import_before_the_run_is_one_line_and_shuts_down(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine(fail={"import_tar": SandboxError("docker import: no space left on device")})
    driver = _driver(tmp_path, engine)
    driver._default_rootfs = lambda: rootfs  # type: ignore[method-assign]
    with pytest.raises(DriverUnavailable, match="no space left"):
        driver.metadata()
    assert engine.closed and engine.networks_made == {}
    with pytest.raises(DriverUnavailable, match="no space left"):
        driver.create(_spec(image=rootfs))


def test_metadata_names_docker_facts(tmp_path: Path) -> None:
    driver = _driver(tmp_path, FakeEngine())
    meta = driver.metadata()
    assert meta["docker_version"] == "20.10.24"
    assert (meta["runtime"], meta["storage_driver"], meta["cgroup_driver"]) == (
        "runc",
        "overlay2",
        "cgroupfs",
    )
    assert meta["seccomp"] == "default"
    assert meta["containerd_version"] == "1.6.20"
    driver.close()


# -- availability and the daemon ---------------------------------------------------------------------


def test_no_dockerd_says_which_package(tmp_path: Path) -> None:
    ctx = DriverContext(state_dir=tmp_path, work_dir=tmp_path / "w", run_id=RUN)
    probe = DockerProbe(which=lambda name: None if name == "dockerd" else f"/usr/bin/{name}")
    avail = DockerDriver(ctx, probe=probe).availability()
    assert not avail.ok and "dockerd not found" in avail.reason and "docker.io" in avail.reason


def test_a_socket_that_does_not_exist_or_answer(tmp_path: Path) -> None:
    ctx = DriverContext(tmp_path, tmp_path / "w", RUN, options={"socket": str(tmp_path / "nope.sock")})
    avail = DockerDriver(ctx).availability()
    assert not avail.ok and "does not exist" in avail.reason
    engine = FakeEngine(
        fail={"ping": SandboxError("docker ping: the daemon does not answer (ConnectionError)")}
    )
    driver = _driver(tmp_path, engine)
    avail = driver.availability()
    assert not avail.ok and "does not answer" in avail.reason


def test_a_daemon_that_fails_is_one_line_and_not_retried(tmp_path: Path, rootfs: Path) -> None:
    engine = FakeEngine(
        fail={"version": SandboxError("docker version: the daemon does not answer (ConnectionError)")}
    )
    driver = _driver(tmp_path, engine)
    with pytest.raises(DriverUnavailable, match="does not answer") as first:
        driver.metadata()
    assert "\n" not in str(first.value)
    del engine.fail["version"]
    with pytest.raises(DriverUnavailable, match="does not answer"):
        driver.create(_spec(image=rootfs))
    driver.close()


def test_dockerd_args_keep_everything_in_the_slot(tmp_path: Path) -> None:
    slot = Slot(3, tmp_path / "run", tmp_path / "state")
    args = dockerd_args("dockerd", slot)
    for flag in (
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--bridge=none",
        "--userland-proxy=false",
    ):
        assert flag in args
    assert args[args.index("--storage-driver") + 1] == "overlay2"
    assert args[args.index("--config-file") + 1] == str(tmp_path / "state/docker/slot-3/daemon.json")
    paths = [a for a in args if a.startswith("/") or a.startswith("unix://")]
    assert all(str(tmp_path) in p for p in paths), paths
    assert (slot.bridge, str(slot.subnet), slot.gateway) == ("isobd3", "10.216.3.0/24", "10.216.3.1")


def test_slots_are_exclusive_and_freed(tmp_path: Path) -> None:
    a = SlotLock.take(tmp_path, tmp_path / "state")
    b = SlotLock.take(tmp_path, tmp_path / "state")
    assert (a.slot.index, b.slot.index) == (0, 1)
    assert not slot_is_free(a.slot)
    a.release()
    assert slot_is_free(a.slot)
    assert SlotLock.take(tmp_path, tmp_path / "state").slot.index == 0
    b.release()


def _real_slot(tmp_path: Path) -> SlotLock:
    """A free slot of the host's own runtime dir: bridges are host-wide, so a daemon test must hold
    a real slot (a fake runtime dir's slot 0 would name a live run's bridge, isobd0)."""
    return SlotLock.take(DEFAULT_RUNTIME_DIR, tmp_path / "state")


def _fake_dockerd(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-dockerd"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_daemon_that_dies_at_start_is_one_line_naming_its_log(tmp_path: Path) -> None:
    binary = _fake_dockerd(
        tmp_path,
        'echo \'time="x" level=fatal msg="failed to start daemon: error initializing graphdriver"\' >&2; exit 1',
    )
    lock = _real_slot(tmp_path)
    daemon = PrivateDaemon(binary, lock.slot, start_timeout=10)
    with pytest.raises(DriverUnavailable) as err:
        daemon.start(lambda: False)
    msg = str(err.value)
    assert "exited with code 1" in msg and "error initializing graphdriver" in msg and "dockerd.log" in msg
    assert not daemon.alive()
    lock.release()


def test_a_daemon_that_never_answers_is_stopped(tmp_path: Path) -> None:
    binary = _fake_dockerd(tmp_path, "exec sleep 60")
    lock = _real_slot(tmp_path)
    daemon = PrivateDaemon(binary, lock.slot, start_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DriverUnavailable, match="did not answer on"):
        daemon.start(lambda: False)
    assert time.monotonic() - started < 10
    assert not daemon.alive() and daemon.pid is not None
    assert not psutil.pid_exists(daemon.pid) or psutil.Process(daemon.pid).status() == psutil.STATUS_ZOMBIE
    lock.release()


def test_the_daemon_holds_its_slot_while_it_lives(tmp_path: Path) -> None:
    binary = _fake_dockerd(tmp_path, "exec sleep 60")
    lock = _real_slot(tmp_path)
    daemon = PrivateDaemon(binary, lock.slot, start_timeout=5)
    # It answers once it runs (as dockerd answers only once it is dockerd).
    daemon.start(lambda: Path(f"/proc/{daemon.pid}/cmdline").read_bytes().startswith(b"sleep"))
    lock.release()  # the runner's hold is gone; the daemon's own one is not
    assert not slot_is_free(lock.slot)
    assert daemon.stop() == []
    assert slot_is_free(lock.slot)


def test_last_error_and_record_roundtrip(tmp_path: Path) -> None:
    log = 'time="t" level=info msg="starting"\ntime="t" level=error msg="bad \\"thing\\""\nlast line\n'
    assert last_error(log) == 'bad \\"thing\\"'
    assert last_error("just text\n") == "just text"
    record = DaemonRecord(2, "/run/x", "/var/lib/isobench", pid=77)
    write_record(tmp_path / "w" / "daemon.json", record)
    assert read_record(tmp_path / "w" / "daemon.json") == record
    assert read_record(tmp_path / "missing.json") is None


def _private_driver(tmp_path: Path, binary: str, *, answers: Any = lambda: True) -> DockerDriver:
    ctx = DriverContext(tmp_path / "state", tmp_path / "work", RUN, options={"binary": binary})
    probe = DockerProbe(
        which=lambda name: name if name.startswith("/") else f"/usr/bin/{name}",
        geteuid=lambda: 0,
        version=lambda b: "Docker version 0.test",
    )
    return DockerDriver(
        ctx, probe=probe, engine_factory=lambda url, timeout, version: FakeEngine(answers=answers)
    )


def test_availability_probes_a_private_daemon_once(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    binary = _fake_dockerd(tmp_path, f"echo x >> {starts}; exec sleep 60")

    def started() -> bool:  # "x" written, not just the file made (a loaded host sees the gap)
        return starts.exists() and "x" in starts.read_text()

    avail = _private_driver(tmp_path, binary, answers=started).availability()
    assert avail.ok and avail.details["probe"] == "a private dockerd started and answered"
    assert _private_driver(tmp_path, binary).availability().ok
    assert starts.read_text().count("x") == 1  # the success is cached per version and state dir


def test_a_private_daemon_that_cannot_start_makes_docker_unavailable(tmp_path: Path) -> None:
    binary = _fake_dockerd(
        tmp_path,
        "echo 'level=fatal msg=\"error initializing graphdriver: driver not supported\"' >&2; exit 1",
    )
    avail = _private_driver(tmp_path, binary, answers=lambda: False).availability()
    assert not avail.ok
    assert "exited with code 1: error initializing graphdriver: driver not supported" in avail.reason
    assert not list((tmp_path / "state" / "docker").glob("probe-*.ok"))  # a failure is probed again
