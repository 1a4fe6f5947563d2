"""Interference parsers on recorded tool output, degradation arithmetic, and the command catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.errors import WorkloadError
from isobench.interference.catalogue import STRESSORS, VICTIMS
from isobench.interference.parsers import VictimResult, degradation, parse_fio, parse_iperf3, parse_sysbench

DATA = Path(__file__).parent / "data"


def test_sysbench_cpu_recorded() -> None:
    r = parse_sysbench((DATA / "sysbench_cpu.txt").read_text())
    assert r.unit == "events/s"
    assert r.throughput > 100
    assert r.p99_ms is not None and r.mean_latency_ms is not None
    assert r.p99_ms >= r.mean_latency_ms


def test_sysbench_memory_recorded() -> None:
    r = parse_sysbench((DATA / "sysbench_memory.txt").read_text())
    assert r.unit == "MiB/s"
    assert r.throughput > 100
    assert r.p99_ms is not None


def test_fio_recorded() -> None:
    r = parse_fio((DATA / "fio_randwrite.json").read_text())
    assert r.unit == "IOPS"
    assert r.throughput > 0
    assert r.p99_ms is not None and r.p99_ms > 0


def test_iperf3_recorded() -> None:
    r = parse_iperf3((DATA / "iperf3.json").read_text())
    assert r.unit == "Gbit/s"
    assert r.throughput > 0.1
    assert r.p99_ms is None


@pytest.mark.parametrize("parser", [parse_sysbench, parse_fio, parse_iperf3])
def test_parsers_refuse_garbage(parser: object) -> None:
    with pytest.raises(WorkloadError):
        parser("stress-ng: error: out of memory\n")  # type: ignore[operator]


def test_degradation_signs() -> None:
    base = VictimResult(100.0, "events/s", p99_ms=1.0)
    worse = VictimResult(60.0, "events/s", p99_ms=3.0)
    d_mean, d_p99 = degradation(base, worse)
    assert d_mean == pytest.approx(0.4)
    assert d_p99 == pytest.approx(2.0)
    better = degradation(base, VictimResult(110.0, "events/s", p99_ms=0.5))
    assert better[0] < 0
    assert better[1] is not None and better[1] < 0
    assert degradation(VictimResult(1.0, "Gbit/s"), VictimResult(0.5, "Gbit/s"))[1] is None
    with pytest.raises(WorkloadError):
        degradation(VictimResult(0.0, "x"), base)


def test_every_stressor_is_time_bounded_and_sized_from_limits() -> None:
    for s in STRESSORS.values():
        cmd = s.command(2.0, "/isobench-work", 256, 2)
        assert "--timeout 2s" in cmd, s.name
        assert cmd.startswith("cd /isobench-work && exec stress-ng "), s.name
    assert "--vm-bytes 512M" in STRESSORS["memory_bomb"].command(2, "/w", 256, 1)
    assert "--hdd-bytes 512M" in STRESSORS["disk_writer"].command(2, "/w", 256, 1)
    assert "--cpu 2" in STRESSORS["cpu"].command(2, "/w", 256, 2)
    assert {
        "cpu",
        "memory_bomb",
        "fork_bomb",
        "disk_writer",
        "net_send",
        "net_recv",
        "cache",
        "stream",
        "sync_storm",
    } <= set(STRESSORS)


def test_victim_commands_use_the_workdir() -> None:
    assert "cd /isobench-work && fio" in VICTIMS["disk"].command(2, "/isobench-work")
    assert "--time=2" in VICTIMS["cpu"].command(1.6, "/w")


def test_interference_needs_nothing_from_leakage() -> None:
    # Its own package: the workload and its catalogue import without the leakage probes.
    import subprocess
    import sys

    code = (
        "import sys, isobench.workloads.interference, isobench.interference.catalogue; "
        "print(sorted(m for m in sys.modules if m.startswith('isobench.leakage')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
