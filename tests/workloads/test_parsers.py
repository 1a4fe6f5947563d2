"""Parsers on outputs recorded from the real tools on the reference machine (tests/workloads/data)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec, SandboxStats
from isobench.errors import UsageError, WorkloadError
from isobench.workloads import network
from isobench.workloads._common import Budget, resolve_params
from isobench.workloads._fio import parse_fio_json
from isobench.workloads._stressng import parse_stress_ng_metrics
from isobench.workloads._sysbench import parse_sysbench_cpu, parse_sysbench_memory
from isobench.workloads.cpu import CpuParams, all_vcpus, cpu_measurements
from isobench.workloads.disk import PATTERNS, DiskParams, disk_measurements, fio_argv
from isobench.workloads.idle_memory import idle_measurements, parse_meminfo
from isobench.workloads.memory_bandwidth import MemoryBandwidthParams, bandwidth_measurements
from isobench.workloads.network import ConnectionRefused, parse_iperf3_json, parse_sockperf, retry_refused
from isobench.workloads.syscall import fork_exec_script, parse_dd_seconds, parse_fork_exec

Data = Callable[[str], str]


def test_sysbench_cpu_single_thread(data: Data) -> None:
    r = parse_sysbench_cpu(data("sysbench_cpu_1thread.txt"))
    assert (r.threads, r.events) == (1, 2000)
    assert r.events_per_second == pytest.approx(4295.37)
    assert r.total_seconds == pytest.approx(0.4649)
    assert r.latency_avg_seconds == pytest.approx(0.23e-3)
    assert r.latency_p95_seconds == pytest.approx(0.27e-3)


def test_sysbench_cpu_measurements_check_event_count(data: Data) -> None:
    r = parse_sysbench_cpu(data("sysbench_cpu_2threads.txt"))
    ms = cpu_measurements(r, CpuParams(events=4000), "all", 2)
    eps = next(m for m in ms if m.metric == "cpu.events_per_second")
    assert eps.value == pytest.approx(8410.79)
    assert (eps.unit, eps.better, eps.params["threads"]) == ("ops_per_second", "higher", 2)
    assert eps.metadata["sandbox_vcpus"] == 2
    with pytest.raises(WorkloadError, match="ran 4000 events"):
        cpu_measurements(r, CpuParams(events=5000), "all", 2)


@pytest.mark.parametrize(
    ("all_param", "vcpus", "cpuset", "usable", "wanted"),
    [
        (0, 1, None, 2, 2),  # the default spec on a 2-CPU host: a 2-vCPU sandbox for the variant
        (0, 1, None, 1, 1),  # one usable CPU: no all-vCPU variant
        (0, 1, (1,), 2, 1),  # pinned to one CPU: no variant either
        (0, 2, (0, 1), 2, 2),  # the spec's own sandbox already has them
        (0, 4, None, 2, 4),  # never fewer than the spec gives
        (3, 1, None, 2, 3),  # asked for: may overcommit
        (1, 1, None, 2, 1),  # 1 turns it off
    ],
)
def test_all_vcpus(
    all_param: int, vcpus: int, cpuset: tuple[int, ...] | None, usable: int, wanted: int
) -> None:
    spec = SandboxSpec(name="s", run_id="r", vcpus=vcpus, cpuset=cpuset)
    assert all_vcpus(CpuParams(all_vcpus=all_param), spec, usable) == wanted


def test_all_vcpus_rejects_negative() -> None:
    with pytest.raises(UsageError, match=r"parameter all_vcpus must be >= 0"):
        CpuParams(all_vcpus=-1)


def test_sysbench_fatal_is_reported(data: Data) -> None:
    with pytest.raises(WorkloadError, match="Invalid value of cpu-max-prime"):
        parse_sysbench_cpu(data("sysbench_cpu_fatal.txt"))
    with pytest.raises(WorkloadError, match="memory-oper: bogus"):
        parse_sysbench_memory(data("sysbench_memory_fatal.txt"))


def test_sysbench_memory(data: Data) -> None:
    r = parse_sysbench_memory(data("sysbench_memory_read_1thread.txt"))
    assert (r.operation, r.threads, r.block_bytes) == ("read", 1, 128 << 20)
    assert r.bytes_per_second == pytest.approx(17725.50 * 2**20)
    ms = bandwidth_measurements(r, MemoryBandwidthParams(seconds=1), "single")
    assert [m.metric for m in ms] == ["memory-bandwidth.read.bandwidth"]
    assert ms[0].unit == "bytes_per_second" and ms[0].better == "higher"
    w = parse_sysbench_memory(data("sysbench_memory_write_2threads.txt"))
    assert (w.operation, w.threads) == ("write", 2)
    # A 1 s run cannot pass as a 5 s one.
    with pytest.raises(WorkloadError, match="stopped after"):
        bandwidth_measurements(w, MemoryBandwidthParams(seconds=5), "all")


def test_fio_json_eight_jobs(data: Data) -> None:
    # Recorded: the quick disk cell's own fio_argv on this host's /var/tmp (libaio, direct=1).
    jobs = parse_fio_json(data("fio_lat_8jobs.json"))
    assert [(j.rw, j.bs, j.iodepth) for j in jobs] == [
        (rw, bs, depth) for rw, bs in PATTERNS.values() for depth in (1, 32)
    ]
    rr = jobs[4].main
    assert rr.iops == pytest.approx(8890.219561)
    # io_submit did the I/O: the completion latency alone (2.6 us) is not what a read took (97 us)
    assert rr.lat_p50_seconds == pytest.approx(96768e-9)
    assert rr.lat_p99_seconds == pytest.approx(391168e-9)
    assert rr.clat_p50_seconds == pytest.approx(2608e-9)
    assert rr.slat_mean_seconds == pytest.approx(79117.097216e-9)
    ms = disk_measurements(jobs, storage="root", direct=True, extra_meta={"fstype": "ext2/ext3"})
    p50 = next(m for m in ms if m.metric == "disk.rand_read.latency.p50" and m.params["iodepth"] == 1)
    assert p50.value == pytest.approx(96768e-9)
    assert p50.metadata["latency"] == "total: submission + completion (fio lat)"
    assert p50.metadata["clat_p50_seconds"] == pytest.approx(2608e-9)
    bw = next(m for m in ms if m.metric == "disk.seq_read.bandwidth" and m.params["iodepth"] == 1)
    assert bw.value == pytest.approx(688585836)
    assert bw.params == {"storage": "root", "rw": "read", "bs": "1M", "iodepth": 1, "direct": True}
    assert bw.metadata["cache"] == "cold"
    with pytest.raises(WorkloadError, match="expected False"):
        disk_measurements(jobs, storage="root", direct=False, extra_meta={})


def test_fio_json_without_total_latency_is_refused(data: Data) -> None:
    # Recorded before --lat_percentiles: completion percentiles only, which cannot stand for latency.
    with pytest.raises(WorkloadError, match="no 50th percentile of its total latency"):
        parse_fio_json(data("fio_direct_4jobs.json"))


def test_the_fio_command_asks_for_total_latency() -> None:
    assert "--lat_percentiles=1" in fio_argv(DiskParams.quick(), "/data", True)


def test_fio_job_error_and_junk(data: Data) -> None:
    # Recorded: fio writing to /dev/full via libaio -> errno 22, with an error line before the JSON.
    with pytest.raises(WorkloadError, match="errno 22"):
        parse_fio_json(data("fio_job_error_einval.json"))
    with pytest.raises(WorkloadError, match="no JSON"):
        parse_fio_json(data("fio_bad_directory.stderr"))


def test_fio_argv_has_all_variants() -> None:
    argv = fio_argv(DiskParams.quick(), "/w", direct=True)
    assert "--direct=1" in argv and "--output-format=json" in argv and "--time_based" in argv
    assert sum(a.startswith("--name=") for a in argv) == 8
    assert "--name=rand_write-qd32" in argv


def test_stress_ng_metrics(data: Data) -> None:
    m = parse_stress_ng_metrics(data("stress_ng_fork.stderr"), "fork")
    assert (m.bogo_ops, m.ops_per_second_real) == (500, pytest.approx(1324.65))
    c = parse_stress_ng_metrics(data("stress_ng_cpu.stderr"), "cpu")
    assert c.bogo_ops == 202
    # stress-ng exits 0 when it skips a stressor; the missing row must fail.
    with pytest.raises(WorkloadError, match="must not run as root"):
        parse_stress_ng_metrics(data("stress_ng_exec_root_refused.stderr"), "exec")
    with pytest.raises(WorkloadError, match="unrecognized option"):
        parse_stress_ng_metrics(data("stress_ng_bad_option.stderr"), "fork")


def test_dd_and_fork_exec(data: Data) -> None:
    assert parse_dd_seconds(data("dd_syscall_gnu.txt"), 1_000_000) == pytest.approx(0.466293)
    with pytest.raises(WorkloadError, match="did not copy"):
        parse_dd_seconds(data("dd_syscall_gnu.txt"), 5)
    with pytest.raises(WorkloadError, match="no elapsed time"):
        parse_dd_seconds("10+0 records in\n10+0 records out\n", 10)
    # recorded: dash running fork_exec_script(0.5, 20, "/bin/true") on the host
    r = parse_fork_exec(data("fork_exec_loop_timed.txt"), 0.5, 20)
    assert r.iterations == 800
    assert r.seconds == pytest.approx((1795834602965363406 - 1795834602460331537) / 1e9)
    assert r.per_op == pytest.approx(r.seconds / 800)
    with pytest.raises(WorkloadError, match=r"before 0\.6s"):
        parse_fork_exec(data("fork_exec_loop_timed.txt"), 0.6, 20)
    with pytest.raises(WorkloadError, match="whole chunks"):
        parse_fork_exec(data("fork_exec_loop_timed.txt"), 0.5, 300)
    with pytest.raises(WorkloadError, match="nanoseconds"):
        parse_fork_exec("forkexec 200 1700000000%N 1700000001%N\n", 0.1, 20)


def test_fork_exec_script_runs_in_dash_and_names_busybox_date(tmp_path: Path) -> None:
    script = fork_exec_script(0.05, 5, "/bin/true")
    res = subprocess.run(["dash", "-c", script], capture_output=True, text=True, check=True)
    assert parse_fork_exec(res.stdout, 0.05, 5).iterations >= 5
    # a sandbox whose date is busybox's: one clear line, not an arithmetic error
    fake = tmp_path / "date"
    fake.write_text('#!/bin/sh\necho "1700000000%N"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    res = subprocess.run(["dash", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 3
    assert "needs GNU coreutils date" in res.stderr


def test_iperf3(data: Data) -> None:
    r = parse_iperf3_json(data("iperf3_client_loopback.json"))
    assert r.received_bits_per_second == pytest.approx(18814841085.4436)
    assert r.seconds == pytest.approx(2.002315)
    # iperf3 3.12 exits 0 on refused connections: the error key is the signal.
    with pytest.raises(ConnectionRefused):
        parse_iperf3_json(data("iperf3_client_refused.json"))


def test_sockperf(data: Data) -> None:
    r = parse_sockperf(data("sockperf_pingpong_fullrtt.txt"))
    assert r.full_rtt
    assert r.observations == 34859
    assert r.avg_seconds == pytest.approx(15.764e-6)
    assert r.p50_seconds > 0 and r.p99_seconds >= r.p50_seconds
    with pytest.raises(ConnectionRefused):
        parse_sockperf(data("sockperf_refused.txt"))
    with pytest.raises(WorkloadError, match="no latency summary"):
        parse_sockperf("sockperf: Starting test...\n")


def test_meminfo_and_idle(data: Data) -> None:
    host = parse_meminfo(data("proc_meminfo_host.txt"))
    assert host["MemTotal"] == 24684084 * 1024
    guest = {"MemTotal": 480 << 20, "MemAvailable": 400 << 20}
    stats = SandboxStats(memory_bytes=3e6, memory_peak_bytes=4e6, pids=1, qemu_pss_bytes=2e6)
    ms = idle_measurements(stats, guest, host, "vm")
    by = {m.metric: m for m in ms}
    assert by["idle-memory.host_view"].value == 3e6
    assert "idle-memory.host_view.memory_peak_bytes" in by and "idle-memory.host_view.pids" not in by
    assert by["idle-memory.host_view.vm.qemu_pss_bytes"].value == 2e6  # the name it was always recorded by
    assert by["idle-memory.inside_used"].value == 80 << 20
    assert by["idle-memory.inside_used"].metadata["kernel"] == "own"
    assert by["idle-memory.inside_used"].better == "none"  # a guest's own use is not "better" than the host's
    shared = idle_measurements(SandboxStats(), host, host, "container")
    assert shared[0].metadata["kernel"] == "shared with host"
    # a cgroup's pages and kernel objects are its host view; the usage counter stays beside
    cg = SandboxStats(memory_bytes=262144, memory_footprint_bytes=176128, memory_peak_bytes=4e6)
    by = {m.metric: m for m in idle_measurements(cg, host, host, "container")}
    assert by["idle-memory.host_view"].value == 176128
    assert by["idle-memory.host_view"].metadata["host_view"] == "memory_footprint_bytes"
    assert by["idle-memory.host_view.memory_bytes"].value == 262144
    assert "idle-memory.host_view.memory_footprint_bytes" not in by
    with pytest.raises(WorkloadError, match="MemAvailable"):
        parse_meminfo("MemTotal: 1 kB\n")


def test_resolve_params() -> None:
    assert resolve_params(CpuParams, True, {}, "cpu") == CpuParams.quick()
    assert resolve_params(CpuParams, False, {"events": 7}, "cpu").events == 7
    assert resolve_params(DiskParams, False, {"iodepths": [4]}, "disk").iodepths == (4,)
    with pytest.raises(UsageError, match="unknown parameter"):
        resolve_params(CpuParams, False, {"evnts": 7}, "cpu")
    with pytest.raises(UsageError, match="must be int"):
        resolve_params(CpuParams, False, {"events": "many"}, "cpu")


def test_network_placement_plans() -> None:
    from isobench.workloads.network import NetworkParams, plan_placement

    cross = plan_placement("cross-cpu", [0, 1], None, guest=False)
    assert (cross.client_cpu, cross.server_cpu, cross.note) == (0, 1, "")
    assert cross.client(["sockperf", "x"]) == ["taskset", "-c", "0", "sockperf", "x"]
    assert cross.server("sockperf server") == "taskset -c 1 sockperf server"
    same = plan_placement("same-cpu", [0, 1], None, guest=False)
    assert (same.client_cpu, same.server_cpu) == (0, 0)
    # the sandbox's cpuset decides where its server may run; the client goes elsewhere
    pinned = plan_placement("cross-cpu", [0, 1, 2, 3], [0], guest=False)
    assert (pinned.client_cpu, pinned.server_cpu) == (1, 0)
    # one CPU: cross-cpu cannot be honoured, and the metadata says so
    one = plan_placement("cross-cpu", [3], None, guest=False)
    assert (one.client_cpu, one.server_cpu) == (3, 3)
    assert "one CPU" in one.metadata()["placement_note"]
    # a guest: only the client is pinned; pinning inside would pick a guest vCPU
    guest = plan_placement("cross-cpu", [0, 1], None, guest=True)
    assert (guest.client_cpu, guest.server_cpu) == (0, None)
    assert guest.server("iperf3 -s") == "iperf3 -s"
    assert "host scheduler" in guest.note
    free = plan_placement("free", [0, 1], None, guest=False)
    assert free.client(["a"]) == ["a"] and free.server("b") == "b"
    with pytest.raises(UsageError, match="placement"):
        NetworkParams(placement="anywhere")


def test_a_refusing_server_is_retried_until_it_exits_or_its_deadline_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused() -> float:
        raise ConnectionRefused("sockperf: connection refused")

    with pytest.raises(WorkloadError, match=r"^the host-loopback sockperf server exited: exit status 1$"):
        retry_refused(
            refused, lambda: "exit status 1", Budget(60, "cell"), "the host-loopback sockperf server"
        )
    calls = iter([None, None, 5.0])

    def listens_third() -> float:
        if (v := next(calls)) is None:
            raise ConnectionRefused("refused")
        return v

    monkeypatch.setattr(time, "sleep", lambda s: None)
    assert retry_refused(listens_third, lambda: None, Budget(60, "cell"), "x") == 5.0
    monkeypatch.setattr(network, "SERVER_START_SECONDS", 0.0)
    with pytest.raises(WorkloadError, match=r"^iperf3 server inside the sandbox never listened$"):
        retry_refused(refused, lambda: None, Budget(60, "cell"), "iperf3 server inside the sandbox")
