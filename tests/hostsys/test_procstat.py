"""Steal share from /proc/stat: read through the host probe, short stretches give no share."""

from pathlib import Path

import pytest
from isobench.hostsys import HostProbe
from isobench.hostsys.procstat import CpuTimes, read_cpu_times, stat_busy, stat_steal, steal_over, steal_share

#: user nice system idle iowait irq softirq steal guest guest_nice (a recorded line's layout)
STAT = "cpu  1000 10 500 8000 100 0 20 7 0 0\ncpu0 500 5 250 4000 50 0 10 3 0 0\nintr 1 2\n"


def _host(tmp_path: Path, stat: str) -> HostProbe:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/stat").write_text(stat)
    return HostProbe(root=tmp_path)


def test_parsers_read_the_aggregate_line() -> None:
    assert stat_steal(STAT) == (7.0, 9637.0)
    assert stat_busy(STAT) == (1537.0, 9637.0)
    assert stat_steal("cpu  1 2 3 4\n") is None  # a kernel without the steal field


def test_read_through_the_probe_root(tmp_path: Path) -> None:
    assert read_cpu_times(_host(tmp_path, STAT)) == CpuTimes(7.0, 9637.0)
    assert read_cpu_times(HostProbe(root=tmp_path / "nowhere")) is None
    assert read_cpu_times(_host(tmp_path, "cpu  1 x 3 4 5 6 7 8\n")) is None


def test_steal_share_over_a_stretch() -> None:
    before = CpuTimes(steal=100.0, total=10_000.0)
    assert steal_share(before, CpuTimes(steal=130.0, total=10_200.0)) == pytest.approx(0.15)
    # a stretch shorter than a CPU-second reads a handful of ticks: no share
    assert steal_share(before, CpuTimes(steal=101.0, total=10_050.0)) is None
    assert steal_share(None, before) is None and steal_share(before, None) is None
    # counters that went backwards (a different host's reading) never give a negative share
    assert steal_share(before, CpuTimes(steal=90.0, total=10_200.0)) == 0.0


def test_steal_over_a_callable_is_its_own_window(tmp_path: Path) -> None:
    host = _host(tmp_path, "cpu  1000 0 0 9000 0 0 0 100 0 0\n")

    def work() -> str:
        (tmp_path / "proc/stat").write_text("cpu  1300 0 0 9600 0 0 0 200 0 0\n")
        return "done"

    out, share = steal_over(work, host)
    assert out == "done" and share == pytest.approx(100 / 1000)
