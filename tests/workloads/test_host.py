"""Every workload at its quick size through the real host driver and the real tools."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from isobench.model import Measurement
from isobench.workloads.base import WorkloadContext, all_workloads, get_workload

from .conftest import check_a_stopped_fio_is_killed_and_run_again  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration

Ctx = Callable[..., WorkloadContext]


def run(name: str, ctx: WorkloadContext) -> dict[str, list[Measurement]]:
    out: dict[str, list[Measurement]] = {}
    for m in get_workload(name).run(ctx):
        assert m.metric.startswith(f"{name}."), m.metric
        assert m.value >= 0, m
        out.setdefault(m.metric, []).append(m)
    return out


def test_registry_lists_the_workload_set() -> None:
    names = set(all_workloads())
    wanted = {"startup", "idle-memory", "cpu", "memory-bandwidth", "disk", "network", "syscall", "overlay"}
    assert wanted <= names


def test_startup(host_ctx: Ctx) -> None:
    ms = run("startup", host_ctx())
    phases = {name.removeprefix("startup.phase."): m[0].phase for name, m in ms.items() if ".phase." in name}
    assert {"create", "ready", "destroy"} <= set(phases)
    assert all(metric == phase for metric, phase in phases.items())
    assert ms["startup.to_exit"][0].value >= ms["startup.to_ready"][0].value
    assert ms["startup.total"][0].value >= ms["startup.to_exit"][0].value


def test_cpu(host_ctx: Ctx) -> None:
    ms = run("cpu", host_ctx())
    variants = {m.params["variant"]: m.value for m in ms["cpu.events_per_second"]}
    assert set(variants) == {"single", "all"}
    assert all(v > 0 for v in variants.values())


def test_cpu_all_variant_on_a_one_vcpu_spec(host_ctx: Ctx) -> None:
    """The default spec has one vCPU: the all-vCPU variant still runs, on a sandbox of its own."""
    ctx = host_ctx()
    ctx.spec = replace(ctx.spec, vcpus=1)
    made: list[int] = []
    factory = ctx.sandbox

    def counting(**overrides: Any) -> Any:
        made.append(int(overrides.get("vcpus", ctx.spec.vcpus)))
        return factory(**overrides)

    ctx.sandbox = counting
    ms = run("cpu", ctx)
    usable = len(os.sched_getaffinity(0))
    eps = {m.params["variant"]: m for m in ms["cpu.events_per_second"]}
    if usable > 1:
        assert made == [1, usable]
        assert eps["all"].params["threads"] == eps["all"].metadata["sandbox_vcpus"] == usable
    else:
        assert made == [1] and set(eps) == {"single"}


def test_memory_bandwidth(host_ctx: Ctx) -> None:
    ms = run("memory-bandwidth", host_ctx(params={"block_mib": 16}))
    assert len(ms["memory-bandwidth.read.bandwidth"]) == 2
    assert min(m.value for m in ms["memory-bandwidth.write.bandwidth"]) > 100e6


@pytest.mark.slow
def test_disk_root_and_volume(host_ctx: Ctx, tmp_path: Path) -> None:
    ctx = host_ctx(params={"size_mib": 8, "runtime": "300ms", "ramp_time": "100ms", "iodepths": [1, 32]})
    volume = tmp_path / "isobench-volume"
    volume.mkdir()
    ctx.spec = replace(ctx.spec, volume=volume)
    ms = run("disk", ctx)
    storages = {m.params["storage"] for m in ms["disk.rand_read.iops"]}
    assert storages == {"root", "volume"}
    assert len(ms["disk.seq_write.bandwidth"]) == 4
    assert all(m.metadata["cache"] in {"cold", "warm"} for ms_ in ms.values() for m in ms_)
    assert not list(volume.iterdir()), "fio data file left on the volume"


def test_disk_makes_its_own_volume_in_the_cells_scratch_dir(host_ctx: Ctx, tmp_path: Path) -> None:
    """As under `isobench run`: no volume in the spec, so the cell makes one; on the host it is a
    plain directory, the baseline of the sandboxes' volume rows."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ctx = host_ctx(params={"size_mib": 8, "runtime": "300ms", "ramp_time": "100ms"}, scratch=scratch)
    ms = run("disk", ctx)
    volume_rows = [m for m in ms["disk.rand_read.iops"] if m.params["storage"] == "volume"]
    assert volume_rows and all(m.metadata["volume"] == "host directory" for m in volume_rows)
    assert all(m.metadata["directory"] == str(scratch / "volume") for m in volume_rows)
    # and a workload asked not to measure one does not
    ctx = host_ctx(
        params={"size_mib": 8, "runtime": "300ms", "ramp_time": "100ms", "volume": False}, scratch=scratch
    )
    assert {m.params["storage"] for m in run("disk", ctx)["disk.rand_read.iops"]} == {"root"}


def test_disk_a_fio_that_never_finishes_is_killed_at_its_deadline_and_run_again(
    host_ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_a_stopped_fio_is_killed_and_run_again(host_ctx(), monkeypatch)


def test_syscall(host_ctx: Ctx) -> None:
    ms = run("syscall", host_ctx())
    assert 0 < ms["syscall.read_write.per_call"][0].value < 1e-3
    assert ms["syscall.fork.ops_per_second"][0].value > 10
    assert 0 < ms["syscall.fork_exec.per_op"][0].value < 1.0


def test_network_loopback(host_ctx: Ctx) -> None:
    ms = run("network", host_ctx(params={"iperf_seconds": 1, "latency_seconds": 1, "paired_windows": 0}))
    assert ms["network.tcp_throughput"][0].value > 1e6
    assert ms["network.tcp_throughput"][0].metadata["address"] == "127.0.0.1"
    p50, p99 = ms["network.tcp_rtt.p50"][0].value, ms["network.tcp_rtt.p99"][0].value
    assert 0 < p50 <= p99


def test_idle_memory(host_ctx: Ctx) -> None:
    ms = run("idle-memory", host_ctx(params={"settle_seconds": 0.1}))
    inside = ms["idle-memory.inside_used"][0]
    assert inside.value > 0 and inside.metadata["kernel"] == "shared with host"


def test_overlay_staged_on_host(host_ctx: Ctx) -> None:
    ms = run("overlay", host_ctx(params={"files": ["file-4k", "file-1m"]}))
    sizes = sorted(m.params["size_bytes"] for m in ms["overlay.first_write"])
    assert sizes == [4096, 1 << 20]
    assert ms["overlay.rename_dir"][0].metadata["rename_syscall"] == "ok"
    assert ms["overlay.noop"][0].metadata["fixtures"].startswith("staged")


def test_network_paired_reference_pairs_adjacent_windows(host_ctx: Ctx) -> None:
    params = {"iperf_seconds": 1, "latency_seconds": 1, "paired_windows": 2}
    started = time.time() - 1
    ms = run("network", host_ctx(params=params))
    (paired,) = ms["network.tcp_rtt.p50_paired_ratio"]
    md = paired.metadata
    assert paired.unit == "ratio" and len(md["pair_ratios"]) == 2
    assert len(md["sandbox_p50_seconds"]) == len(md["host_p50_seconds"]) == 2
    # the host driver's sandbox is host loopback too: an A/A pair, whatever the host did meanwhile
    assert 0.1 < paired.value < 10
    assert md["host_steal"] >= 0 and md["reference"].startswith("host loopback")
    # no sockperf server this cell started outlives it (the reference one runs in its own group)
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline", "create_time"])
        if "sockperf" in (p.info["cmdline"] or []) and p.info["create_time"] >= started
    ]
    assert left == []
