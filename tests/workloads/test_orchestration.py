"""Workload orchestration without root: what each workload runs, in which sandboxes, how it turns
recorded tool output into samples, and the branches it takes on a driver's capabilities (the fakes
that stand for a new native or guest driver have other names: behaviour must follow capabilities).

Every sandbox here is an ``isobench.testing.FakeSandbox`` answering from recorded outputs (tests/
workloads/data); the real tools run in the integration tests (test_host.py, test_drivers.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import Capabilities, DriverKind, ExecModel, ExecResult, RootStorage, SandboxStats
from isobench.drivers.container import ContainerDriver
from isobench.drivers.host import HostDriver
from isobench.drivers.qemu import QemuDriver
from isobench.errors import CellTimeout, WorkloadError
from isobench.model import Measurement
from isobench.testing import FakeDriver, Reply, in_turn, workload_context
from isobench.workloads import network
from isobench.workloads.base import get_workload
from isobench.workloads.idle_memory import IdleMemoryWorkload
from isobench.workloads.overlay import FIXTURES, FIXTURES_DIR

from .conftest import STALL_DISK  # type: ignore[import-not-found]

Data = Callable[[str], str]


def by_metric(ms: list[Measurement]) -> dict[str, list[Measurement]]:
    out: dict[str, list[Measurement]] = {}
    for m in ms:
        out.setdefault(m.metric, []).append(m)
    return out


# ------------------------------------------------------------------------------------------ startup


def test_startup_times_the_drivers_phases_and_one_exec() -> None:
    driver = FakeDriver.like(ContainerDriver, script=[("^true$", Reply(seconds=0.25))])
    ms = by_metric(list(get_workload("startup").run(workload_context(driver))))
    assert driver.commands() == ["true"]
    assert {"startup.phase.create", "startup.phase.ready", "startup.phase.destroy"} <= set(ms)
    assert ms["startup.exec"][0].value >= 0.25
    assert ms["startup.to_exit"][0].value >= ms["startup.to_ready"][0].value + 0.25
    assert ms["startup.total"][0].value >= ms["startup.to_exit"][0].value
    assert ms["startup.phase.destroy"][0].phase == "destroy"
    assert driver.sandboxes[0].destroyed


def test_startup_to_exit_is_ready_plus_the_exec_not_a_check_the_driver_ran_in_create() -> None:
    from isobench.model import PhaseTiming
    from isobench.workloads.startup import startup_measurements

    ms = 1_000_000
    # bwrap's shape: ready after 1 ms (its overlay), then its own `true` check (5 ms, the "exec"
    # phase inside create), create returns, the workload's exec 10-15 ms, destroy 16-17 ms
    phases = [
        PhaseTiming("create", 0, 1 * ms),
        PhaseTiming("ready", 1 * ms, 1 * ms),
        PhaseTiming("exec", 1 * ms, 6 * ms),
        PhaseTiming("destroy", 16 * ms, 17 * ms),
    ]
    out = by_metric(
        startup_measurements(
            phases, exec_start_ns=10 * ms, exec_end_ns=15 * ms, outer_start_ns=0, outer_end_ns=18 * ms
        )
    )
    assert out["startup.to_ready"][0].value == pytest.approx(0.001)
    assert out["startup.exec"][0].value == pytest.approx(0.005)
    # 1 + 5, not the 15 ms from the start to the command's exit (the check and the gap are not in it)
    assert out["startup.to_exit"][0].value == pytest.approx(0.006)
    assert out["startup.total"][0].value == pytest.approx(0.018)  # the whole life keeps them
    assert out["startup.phase.exec"][0].value == pytest.approx(0.005)


def test_startup_runs_the_configured_command_and_names_it_when_it_fails() -> None:
    driver = FakeDriver(script=[("^/bin/false -x$", Reply(stderr="no\n", exit_code=1))])
    ctx = workload_context(driver, params={"command": ["/bin/false", "-x"]})
    with pytest.raises(WorkloadError, match=r"/bin/false -x failed in sandbox .* \(exit 1\): no"):
        list(get_workload("startup").run(ctx))
    assert driver.sandboxes[0].destroyed


# ---------------------------------------------------------------------------------------------- cpu


def sysbench_cpu(data: Data) -> Callable[[tuple[str, ...]], str]:
    """The recorded sysbench run for the asked thread count, claiming the asked event count."""

    def answer(argv: tuple[str, ...]) -> str:
        threads = int(next(a for a in argv if a.startswith("--threads=")).split("=")[1])
        events = next(a for a in argv if a.startswith("--events=")).split("=")[1]
        text = data("sysbench_cpu_1thread.txt" if threads == 1 else "sysbench_cpu_2threads.txt")
        return re.sub(r"(total number of events:\s+)\d+", rf"\g<1>{events}", text)

    return answer


def test_cpu_all_variant_gets_its_own_wider_sandbox(data: Data) -> None:
    driver = FakeDriver.like(HostDriver, script=[("^sysbench cpu ", sysbench_cpu(data))])
    ctx = workload_context(driver, params={"events": 2000, "all_vcpus": 2})
    ms = by_metric(list(get_workload("cpu").run(ctx)))
    assert [sb.spec.vcpus for sb in driver.sandboxes] == [1, 2]
    assert [c.sandbox for c in driver.calls] == [sb.name for sb in driver.sandboxes]
    assert driver.commands()[1] == (
        "sysbench cpu --threads=2 --events=2000 --time=0 --cpu-max-prime=10000 run"
    )
    eps = {m.params["variant"]: m for m in ms["cpu.events_per_second"]}
    assert (eps["single"].value, eps["all"].value) == (4295.37, 8410.79)
    assert (eps["all"].params["threads"], eps["all"].metadata["sandbox_vcpus"]) == (2, 2)


def test_cpu_runs_both_variants_in_one_sandbox_that_is_wide_enough(data: Data) -> None:
    driver = FakeDriver(script=[("^sysbench cpu ", sysbench_cpu(data))])
    ctx = workload_context(driver, params={"events": 2000, "all_vcpus": 2})
    ctx.spec = ctx.spec.__class__(name=ctx.spec.name, run_id=ctx.spec.run_id, vcpus=2)
    list(get_workload("cpu").run(ctx))
    assert len(driver.sandboxes) == 1 and len(driver.calls) == 2


def test_cpu_refuses_more_all_vcpus_than_the_host_has_in_the_cell_too(data: Data) -> None:
    """A fleet's host is not checked before the run (its CPUs are its own): the cell says it."""
    driver = FakeDriver(script=[("^sysbench cpu ", sysbench_cpu(data))])
    too_many = len(os.sched_getaffinity(0)) + 1
    with pytest.raises(WorkloadError, match=f"all_vcpus={too_many} is more than the"):
        list(get_workload("cpu").run(workload_context(driver, params={"all_vcpus": too_many})))
    assert driver.sandboxes == []


def test_cpu_refuses_a_run_that_did_other_work(data: Data) -> None:
    driver = FakeDriver(script=[("^sysbench cpu ", data("sysbench_cpu_1thread.txt"))])  # 2000 events
    with pytest.raises(WorkloadError, match="ran 2000 events, asked for 500"):
        list(get_workload("cpu").run(workload_context(driver, params={"all_vcpus": 1})))


# --------------------------------------------------------------------------------- memory-bandwidth


def test_memory_bandwidth_runs_each_operation_in_one_sandbox(data: Data) -> None:
    driver = FakeDriver(
        script=[
            ("--memory-oper=read ", data("sysbench_memory_read_1thread.txt")),
            ("--memory-oper=write ", data("sysbench_memory_write_2threads.txt")),
        ]
    )
    ms = by_metric(list(get_workload("memory-bandwidth").run(workload_context(driver))))
    assert len(driver.sandboxes) == 1
    assert [c.split()[:3] for c in driver.commands()] == [["sysbench", "memory", "--threads=1"]] * 2
    assert ms["memory-bandwidth.read.bandwidth"][0].value == pytest.approx(17725.50 * 2**20)
    assert set(ms) == {"memory-bandwidth.read.bandwidth", "memory-bandwidth.write.bandwidth"}


def test_memory_bandwidth_refuses_a_block_the_sandbox_cannot_hold() -> None:
    driver = FakeDriver()
    ctx = workload_context(driver, params={"block_mib": 512})
    with pytest.raises(WorkloadError, match="does not fit a 512 MiB sandbox"):
        list(get_workload("memory-bandwidth").run(ctx))
    assert driver.sandboxes == []


# ------------------------------------------------------------------------------------------ syscall


def test_syscall_runs_dd_stress_ng_and_the_loop(data: Data) -> None:
    driver = FakeDriver(
        script=[
            ("^dd ", Reply(stderr=data("dd_syscall_gnu.txt"))),
            ("^stress-ng --fork 1 ", Reply(stderr=data("stress_ng_fork.stderr"))),
            ("^sh -c i=0;", data("fork_exec_loop_timed.txt")),
        ]
    )
    ms = by_metric(
        list(get_workload("syscall").run(workload_context(driver, params={"dd_records": 1_000_000})))
    )
    assert driver.commands()[:2] == [
        "dd if=/dev/zero of=/dev/null bs=1 count=1000000",
        "stress-ng --fork 1 --timeout 1s --metrics-brief",
    ]
    assert "do /bin/true;" in driver.commands()[2]
    assert ms["syscall.read_write.per_call"][0].value == pytest.approx(0.466293 / 2e6)
    assert ms["syscall.fork.ops_per_second"][0].value == pytest.approx(1324.65)
    fork_exec = ms["syscall.fork_exec.per_op"][0]
    assert fork_exec.value == pytest.approx((1795834602965363406 - 1795834602460331537) / 1e9 / 800)
    assert fork_exec.metadata["iterations"] == 800


# --------------------------------------------------------------------------------------------- disk


def fio_script(data: Data, *, direct_ok: bool = True, mounted: bool = True) -> list[Any]:
    doc = json.loads(data("fio_lat_8jobs.json"))

    def fio(argv: tuple[str, ...]) -> str:
        # fio reports the direct flag it ran with
        out = copy.deepcopy(doc)
        out["global options"]["direct"] = next(a for a in argv if a.startswith("--direct=")).split("=")[1]
        return json.dumps(out)

    refused = Reply(stderr="fio: looks like your file system does not support direct=1\n", exit_code=1)
    return [
        ("^mountpoint -q /data$", Reply(exit_code=0 if mounted else 1)),
        ("^stat -f -c %T ", "ext2/ext3\n"),
        ("^fio .*--name=probe", Reply() if direct_ok else refused),
        ("^fio ", fio),
        ("^sh -c rm -f ", ""),
    ]


def fio_calls(driver: FakeDriver) -> list[Any]:
    """The fio runs of the disk workload's jobs (not its O_DIRECT probes), in order."""
    return [c for s in driver.sandboxes for c in s.calls if "--name=seq_read" in c.command]


def fio_dirs(driver: FakeDriver) -> list[str]:
    return [re.sub(r".*--directory=(\S+).*", r"\1", c.command) for c in fio_calls(driver)]


def test_disk_native_volume_is_a_host_directory_at_its_own_path(data: Data, tmp_path: Path) -> None:
    driver = FakeDriver.like(
        HostDriver.capabilities,
        name="baremetal",
        script=fio_script(data),
        metadata={"volume": "host directory"},
    )
    ms = list(get_workload("disk").run(workload_context(driver, scratch=tmp_path)))
    volume = tmp_path / "volume"
    assert volume.is_dir() and driver.sandboxes[0].spec.volume == volume
    assert fio_dirs(driver) == ["/var/tmp/isobench", str(volume)]
    assert not any(c.startswith("mountpoint") for c in driver.commands())
    storages = {m.params["storage"]: m for m in ms if m.metric == "disk.rand_read.iops"}
    assert storages["volume"].metadata["volume"] == "host directory"
    assert storages["root"].metadata["cache"] == "cold" and storages["root"].params["direct"] is True
    assert len(ms) == 2 * 8 * 4  # two storages, eight recorded jobs, four figures each


def test_disk_sandbox_volume_is_checked_mounted_at_data(data: Data, tmp_path: Path) -> None:
    driver = FakeDriver.like(ContainerDriver, script=fio_script(data), metadata={"volume": "bind mount"})
    list(get_workload("disk").run(workload_context(driver, scratch=tmp_path)))
    assert driver.commands()[0] == "mountpoint -q /data"
    assert fio_dirs(driver) == ["/var/tmp/isobench", "/data"]


def test_disk_refuses_to_measure_an_unmounted_data(data: Data, tmp_path: Path) -> None:
    driver = FakeDriver.like(
        QemuDriver.capabilities, name="firecracker", script=fio_script(data, mounted=False)
    )
    with pytest.raises(WorkloadError, match="/data is not a mount point"):
        list(get_workload("disk").run(workload_context(driver, scratch=tmp_path)))
    assert not any(c.startswith("fio") for c in driver.commands())


def test_disk_runs_buffered_where_o_direct_is_refused(data: Data, tmp_path: Path) -> None:
    driver = FakeDriver(script=fio_script(data, direct_ok=False))
    ms = list(get_workload("disk").run(workload_context(driver, params={"volume": False}, scratch=tmp_path)))
    assert all("--direct=0" in c for c in driver.commands() if "--name=seq_read" in c)
    assert {m.metadata["cache"] for m in ms} == {"warm"}
    assert "does not support direct=1" in ms[0].metadata["direct_unsupported"]
    assert not (tmp_path / "volume").exists()  # volume=False: no volume made


def test_disk_on_a_driver_without_volumes_measures_the_root_only(data: Data, tmp_path: Path) -> None:
    no_volumes = Capabilities(
        DriverKind.CONTAINER, RootStorage.OVERLAYFS, None, False, ExecModel.RUNTIME_EXEC, 5
    )
    driver = FakeDriver.like(no_volumes, script=fio_script(data))
    ms = list(get_workload("disk").run(workload_context(driver, scratch=tmp_path)))
    assert {m.params["storage"] for m in ms} == {"root"} and fio_dirs(driver) == ["/var/tmp/isobench"]
    ctx = workload_context(driver, scratch=tmp_path)
    ctx.spec = ctx.spec.__class__(name="s", run_id="r", volume=tmp_path)
    with pytest.raises(WorkloadError, match="attaches no volumes"):
        list(get_workload("disk").run(ctx))


def stalling_fio(data: Data, stalls: int) -> Callable[[tuple[str, ...]], str]:
    """fio that times out (as a driver's exec does once it killed it) ``stalls`` times, then runs."""
    ok = dict(fio_script(data))["^fio "]
    left = [stalls]

    def fio(argv: tuple[str, ...]) -> str:
        if left[0] > 0:
            left[0] -= 1
            raise CellTimeout(f"{argv[0]} did not finish (in guest)")
        return ok(argv)  # type: ignore[operator, no-any-return]

    return fio


def test_disk_fio_runs_to_its_own_deadline_not_the_cells(data: Data) -> None:
    from isobench.workloads.disk import DiskParams, fio_stall_deadline

    params = DiskParams(size_mib=8, runtime="300ms", ramp_time="100ms", volume=False)
    assert params.jobs_seconds() == pytest.approx(8 * 0.4)
    # a minute, four times the jobs' 3.2 s, 8 MiB laid out at 4 MiB/s (or an io_bps cap of 1 MiB/s)
    assert fio_stall_deadline(params) == pytest.approx(60 + 12.8 + 2)
    assert fio_stall_deadline(params, 1 << 20) == pytest.approx(60 + 12.8 + 8)
    assert fio_stall_deadline(DiskParams()) == pytest.approx(60 + 4 * 8 * 6 + 128)
    driver = FakeDriver(script=fio_script(data))
    list(get_workload("disk").run(workload_context(driver, params=STALL_DISK, timeout=300)))
    assert [c.timeout for c in fio_calls(driver)] == [pytest.approx(74.8)]


def test_disk_a_stalled_fio_is_killed_noted_and_run_once_more(data: Data) -> None:
    script = [
        ("^fio .*--name=seq_read", stalling_fio(data, 1)),
        ("^sh -c for d in /sys/block", "vdb 0 1\n"),
        *fio_script(data),
    ]
    driver = FakeDriver.like(QemuDriver.capabilities, name="guest", script=script)
    ms = list(get_workload("disk").run(workload_context(driver, params=STALL_DISK, timeout=300)))
    assert len(fio_calls(driver)) == 2 and len(ms) == 8 * 4
    stall = ms[0].metadata["fio_stall"]
    assert "fio on /var/tmp/isobench did not finish within 75 s (its jobs run 3.2 s)" in stall
    assert stall.endswith("I/O still in flight (device reads writes): vdb 0 1")
    assert {m.metadata["fio_stall"] for m in ms} == {stall}


def test_disk_a_second_stall_ends_the_cell_and_a_clean_run_says_nothing(data: Data) -> None:
    script = [("^fio .*--name=seq_read", stalling_fio(data, 2)), ("^sh -c for d in", ""), *fio_script(data)]
    driver = FakeDriver(script=script)
    with pytest.raises(
        CellTimeout, match=r"within 75 s \(its jobs run 3.2 s\), twice in sandbox .*the first: fio"
    ):
        list(get_workload("disk").run(workload_context(driver, params=STALL_DISK, timeout=300)))
    assert len(fio_calls(driver)) == 2
    assert driver.commands()[-1].startswith("sh -c rm -f ")  # its files removed all the same
    clean = list(
        get_workload("disk").run(workload_context(FakeDriver(script=fio_script(data)), params=STALL_DISK))
    )
    assert not any("fio_stall" in m.metadata for m in clean)


def test_disk_fio_gets_what_is_left_when_the_cell_ends_first_and_no_second_run(data: Data) -> None:
    driver = FakeDriver(script=[("^fio .*--name=seq_read", stalling_fio(data, 1)), *fio_script(data)])
    with pytest.raises(CellTimeout):
        list(get_workload("disk").run(workload_context(driver, params=STALL_DISK, timeout=50)))
    (call,) = fio_calls(driver)
    assert 40 < call.timeout <= 50


# ------------------------------------------------------------------------------------------ overlay


def overlay_stdout(files: tuple[str, ...], rename: str = "errno 18") -> str:
    lines = ["t noop 1000"]
    for f in files:
        lines += [f"size {f} {FIXTURES[f]}", f"t first_write:{f} 200000", f"t later_write:{f} 20000"]
    lines += ["t delete_file 3000", "t delete_dir 400000", "t recreate_dir 5000", "t rename_dir 600000"]
    return "\n".join([*lines, f"rename {rename}", ""])


QUICK_FILES = ("file-4k", "file-1m", "file-16m")


def test_overlay_stages_fixtures_on_a_root_on_the_host_tree() -> None:
    script = [("^sh -c set -e", ""), ("^sh -c set -u", overlay_stdout(QUICK_FILES))]
    driver = FakeDriver.like(HostDriver.capabilities, name="baremetal", script=script)
    ms = by_metric(list(get_workload("overlay").run(workload_context(driver))))
    staging, script = driver.commands()
    assert "mkdir -p /var/tmp/isobench/isobench-fixtures" in staging
    assert "[ -d /var/tmp/isobench/isobench-fixtures ]" in script and f" {FIXTURES_DIR}" not in script
    assert ms["overlay.noop"][0].metadata["fixtures"].startswith("staged in workdir")


@pytest.mark.parametrize("driver_type", [ContainerDriver, QemuDriver])
def test_overlay_uses_the_image_lower_layer_in_sandboxes(driver_type: Any) -> None:
    driver = FakeDriver.like(driver_type, script=[("^sh -c set -u", overlay_stdout(QUICK_FILES))])
    ms = by_metric(list(get_workload("overlay").run(workload_context(driver))))
    assert len(driver.commands()) == 1 and f"[ -d {FIXTURES_DIR} ]" in driver.commands()[0]
    first = {m.params["file"]: m.value for m in ms["overlay.first_write"]}
    assert first == dict.fromkeys(QUICK_FILES, 200e-6)
    assert ms["overlay.rename_dir"][0].metadata["rename_syscall"] == "EXDEV"
    assert ms["overlay.noop"][0].metadata["fixtures"] == "image lower layer"


def test_overlay_says_to_rebuild_an_image_without_fixtures() -> None:
    missing = Reply(stdout=f"missing {FIXTURES_DIR}\n", exit_code=3)
    driver = FakeDriver.like(ContainerDriver, script=[("^sh -c set -u", missing)])
    with pytest.raises(WorkloadError, match="rebuild it"):
        list(get_workload("overlay").run(workload_context(driver)))


# ---------------------------------------------------------------------------------------- network


#: Without the paired host reference, whose loopback server is a real host process.
UNPAIRED = {"paired_windows": 0}


@pytest.fixture
def host_client(monkeypatch: pytest.MonkeyPatch, data: Data) -> list[list[str]]:
    """The host side of the network workload, scripted: two usable CPUs, the client tools there,
    and their recorded outputs. Returns the client argvs run."""
    ran: list[list[str]] = []
    monkeypatch.setattr(network.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(network.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def run_command(argv: list[str], *, timeout: float) -> ExecResult:
        ran.append(list(argv))
        out = (
            data("iperf3_client_loopback.json") if "iperf3" in argv else data("sockperf_pingpong_fullrtt.txt")
        )
        return ExecResult(tuple(argv), 0, out, "", 0, 1)

    monkeypatch.setattr(network, "run_command", run_command)
    return ran


def servers(driver: FakeDriver) -> list[str]:
    return [c for c in driver.commands() if c.startswith("sh -c echo $$")]


def test_network_pins_client_and_server_on_other_cpus(host_client: list[list[str]]) -> None:
    driver = FakeDriver.like(ContainerDriver, script=[(r"^sh -c echo \$\$", "")])
    ms = by_metric(list(get_workload("network").run(workload_context(driver, params=UNPAIRED))))
    assert driver.sandboxes[0].spec.network
    iperf, sockperf = servers(driver)
    assert "timeout 42 taskset -c 1 iperf3 -s -1 -B 10.0.0.2 -p " in iperf
    assert "taskset -c 1 sockperf server --tcp -i 10.0.0.2" in sockperf
    assert [argv[:4] for argv in host_client] == [
        ["taskset", "-c", "0", "iperf3"],
        ["taskset", "-c", "0", "sockperf"],
    ]
    tput = ms["network.tcp_throughput"][0]
    assert tput.value == pytest.approx(18814841085.4436 / 8)
    assert (tput.metadata["client_cpu"], tput.metadata["server_cpu"], tput.metadata["client"]) == (
        0,
        1,
        "host",
    )
    assert ms["network.tcp_rtt.p50"][0].value == pytest.approx(14.581e-6)


def test_network_leaves_a_guests_vcpus_where_they_are(host_client: list[list[str]]) -> None:
    driver = FakeDriver.like(QemuDriver.capabilities, name="firecracker", script=[(r"^sh -c echo \$\$", "")])
    ms = list(get_workload("network").run(workload_context(driver, params=UNPAIRED)))
    assert all("taskset" not in s for s in servers(driver))
    assert host_client[0][:3] == ["taskset", "-c", "0"]  # the host client is still pinned
    assert {m.metadata["server_cpu"] for m in ms} == {None}
    assert "server in a guest" in ms[0].metadata["placement_note"]


def test_network_pairs_windows_of_the_sandbox_and_host_loopback(
    host_client: list[list[str]], monkeypatch: pytest.MonkeyPatch, data: Data
) -> None:
    started: list[list[str]] = []
    popen = subprocess.Popen

    def reference(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        started.append(list(argv))
        return popen(["sleep", "60"], **kw)  # stands in for the host's sockperf server

    windows: list[list[str]] = []
    tried: list[str] = []
    servers: list[tuple[str, ...]] = []
    through = threading.Event()

    def listening(address: str, port: int) -> None:
        tried.append(address)
        if tried == ["10.0.0.2"]:  # the server inside still starting, once
            raise ConnectionRefusedError(111, "Connection refused")
        through.set()

    def server(argv: tuple[str, ...]) -> str:
        servers.append(argv)
        if len(servers) == 3:  # iperf3's, the latency window's, then the pairs' server: it runs on
            through.wait(10)  # until a connection got through, or a refusal would read as its exit
        return ""

    def staggered(argvs: list[list[str]], *, cadence: float, timeout: float) -> list[network.Window]:
        windows.extend(argvs)
        return [
            network.Window(data("sockperf_pingpong_fullrtt.txt"), 1.0 + i, 2.0 + i) for i in range(len(argvs))
        ]

    monkeypatch.setattr(network.subprocess, "Popen", reference)
    monkeypatch.setattr(network, "connect_once", listening)
    monkeypatch.setattr(network, "staggered_windows", staggered)
    driver = FakeDriver.like(ContainerDriver, script=[(r"^sh -c echo \$\$", server)])
    ctx = workload_context(driver, params={"paired_windows": 3})
    ms = by_metric(list(get_workload("network").run(ctx)))
    # the reference server: bounded by timeout, on the sandbox server's CPU, on loopback
    (ref,) = started
    assert ref[0] == "timeout" and ref[2:5] == ["taskset", "-c", "1"] and "127.0.0.1" in ref
    # 1 s windows from the pinned client, sandbox first, then host loopback, three times
    assert all(
        argv[:4] == ["taskset", "-c", "0", "sockperf"] and argv[argv.index("-t") + 1] == "1"
        for argv in windows
    )
    assert [argv[argv.index("-i") + 1] for argv in windows] == ["10.0.0.2", "127.0.0.1"] * 3
    (paired,) = ms["network.tcp_rtt.p50_paired_ratio"]
    assert paired.value == 1.0 and paired.metadata["pair_ratios"] == [1.0, 1.0, 1.0]
    assert paired.metadata["reference"] == "host loopback, server on CPU 1"
    assert paired.metadata["window_gaps_seconds"] == [0.0] * 5
    assert tried == ["10.0.0.2", "10.0.0.2", "127.0.0.1"]  # retried while refused, then the reference


def test_network_retries_while_the_server_inside_starts(
    host_client: list[list[str]], monkeypatch: pytest.MonkeyPatch, data: Data
) -> None:
    served = threading.Event()
    answers = in_turn(data("iperf3_client_refused.json"), data("iperf3_client_loopback.json"))

    def run_command(argv: list[str], *, timeout: float) -> ExecResult:
        host_client.append(list(argv))
        if "iperf3" not in argv:
            return ExecResult(tuple(argv), 0, data("sockperf_pingpong_fullrtt.txt"), "", 0, 1)
        out = answers(tuple(argv))
        if len(host_client) == 2:  # the server goes on until the second, accepted client ran
            served.set()
        return ExecResult(tuple(argv), 0, str(out), "", 0, 1)

    def server(argv: tuple[str, ...]) -> str:
        served.wait(10)  # a server that keeps running until a client got through
        return ""

    monkeypatch.setattr(network, "run_command", run_command)
    driver = FakeDriver.like(ContainerDriver, script=[(r"^sh -c echo \$\$", server)])
    ms = by_metric(list(get_workload("network").run(workload_context(driver, params=UNPAIRED))))
    assert [argv[3] for argv in host_client] == ["iperf3", "iperf3", "sockperf"]
    assert ms["network.tcp_throughput"][0].value > 0


def test_network_needs_an_address(host_client: list[list[str]]) -> None:
    driver = FakeDriver.like(ContainerDriver, address=None)
    with pytest.raises(WorkloadError, match="gave the sandbox no address"):
        list(get_workload("network").run(workload_context(driver)))
    assert driver.commands() == [] and driver.sandboxes[0].destroyed


# ------------------------------------------------------------------------------------ idle-memory

GUEST_MEMINFO = "MemTotal:         491520 kB\nMemFree:          400000 kB\nMemAvailable:     409600 kB\n"


def test_idle_memory_records_every_byte_figure_of_the_typed_stats(data: Data, tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(data("proc_meminfo_host.txt"))
    stats = SandboxStats(memory_bytes=9e7, cpu_seconds=1.0, qemu_pss_bytes=3e7, guest_used_bytes=4e7)
    driver = FakeDriver.like(QemuDriver, script=[("^cat /proc/meminfo$", GUEST_MEMINFO)], stats=stats)
    ctx = workload_context(driver, params={"settle_seconds": 0})
    ms = by_metric(list(IdleMemoryWorkload(proc_root=tmp_path).run(ctx)))
    assert set(ms) == {
        "idle-memory.host_view",
        "idle-memory.host_view.vm.qemu_pss_bytes",
        "idle-memory.host_view.vm.guest_used_bytes",
        "idle-memory.inside_used",
    }
    assert ms["idle-memory.host_view"][0].value == 9e7
    assert ms["idle-memory.inside_used"][0].value == (491520 - 409600) * 1024
    assert ms["idle-memory.inside_used"][0].metadata["kernel"] == "own"


def test_idle_memory_reads_a_cgroups_memory_stat_only_after_the_kernels_flush(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 12-03 01:05: a 1 s settle read a fresh container's memory.stat without its init's 24 KiB of
    # anonymous memory in 3 of 6 repetitions (the kernel adds the figures up every 2 s)
    from isobench.drivers.stats import MEMCG_STATS_LAG_S

    (tmp_path / "meminfo").write_text(data("proc_meminfo_host.txt"))
    reads: list[float] = []

    def stats() -> SandboxStats:
        reads.append(0.0)
        return SandboxStats(
            memory_bytes=256 * 1024, memory_footprint_bytes=(108 if len(reads) == 1 else 132) * 1024
        )

    slept: list[float] = []
    clock = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr("isobench.workloads.idle_memory.time.sleep", sleep)
    monkeypatch.setattr("isobench.workloads.idle_memory.time.monotonic", lambda: clock[0])
    meminfo = data("proc_meminfo_host.txt")
    driver = FakeDriver.like(ContainerDriver, script=[("^cat /proc/meminfo$", meminfo)], stats=stats)
    ctx = workload_context(driver, params={"settle_seconds": 1.0})
    ms = by_metric(list(IdleMemoryWorkload(proc_root=tmp_path).run(ctx)))
    assert ms["idle-memory.host_view"][0].value == 132 * 1024
    # the settle, then the rest of the flush's lag from the sandbox's ready, then a second read
    assert len(reads) == 2 and slept[:2] == [1.0, pytest.approx(MEMCG_STATS_LAG_S - 1.0)]
    # a figure that is not from memory.stat (a guest's) is current at once: no wait beyond the settle
    slept.clear()
    guest = FakeDriver.like(
        QemuDriver, script=[("^cat /proc/meminfo$", GUEST_MEMINFO)], stats=SandboxStats(9e7)
    )
    list(IdleMemoryWorkload(proc_root=tmp_path).run(workload_context(guest, params={"settle_seconds": 1.0})))
    assert slept[0] == 1.0 and all(s < 0.1 for s in slept[1:])


def test_memcg_lag_left_counts_from_the_last_change() -> None:
    from isobench.drivers.stats import MEMCG_STATS_LAG_S, memcg_lag_left

    cgroup, guest = SandboxStats(memory_footprint_bytes=1.0), SandboxStats(memory_bytes=1.0)
    assert memcg_lag_left(10.0, [cgroup], now=11.0) == pytest.approx(MEMCG_STATS_LAG_S - 1.0)
    assert memcg_lag_left(10.0, [guest, cgroup], now=10.0 + MEMCG_STATS_LAG_S + 0.1) == 0.0
    assert memcg_lag_left(10.0, [guest], now=10.0) == 0.0
    assert memcg_lag_left(10.0, [], now=10.0) == 0.0


def test_idle_memory_of_a_driver_that_measures_nothing(data: Data, tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(data("proc_meminfo_host.txt"))
    driver = FakeDriver.like(HostDriver, script=[("^cat /proc/meminfo$", data("proc_meminfo_host.txt"))])
    ms = list(
        IdleMemoryWorkload(proc_root=tmp_path).run(workload_context(driver, params={"settle_seconds": 0}))
    )
    assert [m.metric for m in ms] == ["idle-memory.inside_used"]
    assert ms[0].metadata["kernel"] == "shared with host"
