"""Sampling-loop dumps, per-file parsers and alignment, on recorded and hand-made text."""

from __future__ import annotations

import subprocess

import pytest
from isobench.leakage import series as s

STAT = """cpu  1000 10 500 8000 100 0 20 7 0 0
cpu0 500 5 250 4000 50 0 10 3 0 0
btime 1795822980
"""
LOADAVG = "0.95 0.58 0.30 3/412 28460\n"
MEMINFO = "MemTotal:       24684084 kB\nMemFree:        23000000 kB\nMemAvailable:   23684084 kB\n"
ZONEINFO = """Node 0, zone      DMA
  pages free     3840
        min      0
Node 0, zone    DMA32
  pages free     400000
"""
DISKSTATS = """ 254       0 vda 12 0 3000 5 400 10 8000 20 0 30 40 0 0 0 0 0 0
 254       1 vda1 6 0 1500 2 200 5 4000 10 0 15 20 0 0 0 0 0 0
"""
INTERRUPTS = """           CPU0       CPU1
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
LOC:      11870      12574   Local timer interrupts
RES:        100        200   Rescheduling interrupts
ERR:          0
"""
SOFTIRQS = """                    CPU0       CPU1
          HI:          0          0
       TIMER:      11870      12574
      NET_TX:          7          1
      NET_RX:       3953       5882
"""


def test_parsers_on_recorded_formats() -> None:
    assert s.stat_busy(STAT) == (1000 + 10 + 500 + 20 + 7, 1000 + 10 + 500 + 8000 + 100 + 20 + 7)
    assert s.stat_steal(STAT) == (7.0, 9637.0)
    assert s.loadavg_running(LOADAVG) == 3.0
    assert s.meminfo_used(MEMINFO) == 1_000_000.0
    assert s.vmstat_used("nr_free_pages 12345\nnr_zone_inactive_anon 1\n") == -12345.0
    assert s.zoneinfo_used(ZONEINFO) == -403840.0
    assert s.diskstats_written(DISKSTATS) == 12000.0
    assert s.single_number("2016\t0\t9223372036854775807\n") == 2016.0
    assert s.interrupts_total(INTERRUPTS) == 1 + 11870 + 12574 + 100 + 200 + 0
    assert s.softirqs_net(SOFTIRQS) == 7 + 1 + 3953 + 5882


def test_parsers_return_none_on_garbage() -> None:
    for f in (
        s.stat_busy,
        s.loadavg_running,
        s.meminfo_used,
        s.vmstat_used,
        s.zoneinfo_used,
        s.diskstats_written,
        s.single_number,
        s.softirqs_net,
        s.single_number,
    ):
        assert f("") is None
        assert f("no such thing\n") is None


def test_parse_dump_drops_torn_sample() -> None:
    text = "@@t 10.00\n@@f /proc/loadavg\n1 1 1 2/3 4\n@@t 10.05\n@@f /proc/loadavg\n1 1 1 5/3 4\n@@t 10.10\n"
    samples = s.parse_dump(text)
    assert [x.t for x in samples] == [10.0, 10.05]
    assert samples[1].files["/proc/loadavg"].startswith("1 1 1 5/3")


def test_pattern_on_fraction() -> None:
    p = s.LoadPattern(start=100.0, period=0.5, periods=4)  # off on off on
    assert p.on_intervals() == [(100.5, 101.0), (101.5, 102.0)]
    assert p.on_fraction(100.0, 100.5) == 0.0
    assert p.on_fraction(100.5, 101.0) == 1.0
    assert p.on_fraction(100.25, 100.75) == pytest.approx(0.5)
    assert p.end == 102.0


def test_align_offset_shared_clock_and_anchor() -> None:
    assert s.align_offset(500.2, 505.0, 500.0, 505.1) == (0.0, "shared boot clock")
    off, how = s.align_offset(12.0, 17.0, 500.0, 505.1)
    assert off == pytest.approx(488.0)
    assert how == "anchored at exec start"


def test_rate_points_pair_counter_deltas_with_load_share() -> None:
    pattern = s.LoadPattern(start=0.0, period=1.0, periods=2)
    samples = [s.Sample(t, {"/c": str(v)}) for t, v in [(0.0, 0), (0.5, 5), (1.0, 10), (1.5, 60), (2.0, 110)]]
    xs, ys = s.aligned_points(samples, "/c", s.single_number, "rate", pattern, 0.0)
    assert xs == [0.0, 0.0, 1.0, 1.0]
    assert ys == [10.0, 10.0, 100.0, 100.0]


def test_sampler_script_runs_under_sh_and_parses() -> None:
    """The loop is plain POSIX sh: run it for real (no root needed) and parse what it printed."""
    script = s.sampler_script(["/proc/loadavg"], duration=0.3, interval=0.05)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=True).stdout
    samples = s.parse_dump(out)
    assert len(samples) >= 3
    assert all(s.loadavg_running(x.files["/proc/loadavg"]) is not None for x in samples)
    assert samples[-1].t - samples[0].t >= 0.29


def test_instant_points_pair_a_reading_with_the_load_at_that_moment() -> None:
    pattern = s.LoadPattern(start=0.0, period=1.0, periods=2)  # off [0,1), on [1,2)
    samples = [s.Sample(t, {"/l": f"0 0 0 {v}/100 1"}) for t, v in [(0.0, 1), (0.9, 1), (1.1, 3), (1.9, 3)]]
    xs, ys = s.aligned_points(samples, "/l", s.loadavg_running, "instant", pattern, 0.0)
    assert xs == [0.0, 1.0, 1.0]
    assert ys == [1.0, 3.0, 3.0]
    # The same readings as a "level" series are paired with the share of the interval before them.
    xs_level, _ = s.aligned_points(samples, "/l", s.loadavg_running, "level", pattern, 0.0)
    assert xs_level[1] == pytest.approx(0.5)
