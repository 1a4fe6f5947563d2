"""Each threshold of the correlation rule, on real series recorded on this host that sit just above
and just below it (tests/leakage/data/thresholds.json; how they were recorded: data/README.md).

Moving any threshold (r >= 0.8, p < 0.01, the undecided zone from r = 0.5 or p < 0.05, the 8-point
minimum) past one of these pairs fails a test here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from isobench.leakage import CORRELATION_PROBES, rules
from isobench.leakage import series as s

PAIRS = [
    "r_just_above_0.8",
    "r_just_below_0.8",
    "p_just_above_0.01",
    "p_just_below_0.01",
    "r_just_above_0.5",
    "r_just_below_0.5",
    "p_just_below_0.05",
    "p_just_above_0.05",
    "eight_points_leak",
]


@pytest.fixture
def pairs(recorded: Callable[[str], Any]) -> dict[str, Any]:
    data: dict[str, Any] = recorded("thresholds.json")["pairs"]
    return data


@pytest.mark.parametrize("name", PAIRS)
def test_recorded_pair_gets_its_verdict(pairs: dict[str, Any], name: str) -> None:
    pair = pairs[name]
    v = rules.correlation(pair["xs"], pair["ys"])
    assert v.status == pair["expect"], (name, v)
    assert v.r == pytest.approx(pair["r"], abs=1e-4)


def test_pairs_sit_close_to_the_thresholds(pairs: dict[str, Any]) -> None:
    """The fixture is only worth something if each pair is near the line it tests."""
    r = {k: v["r"] for k, v in pairs.items()}
    p = {k: v["p"] for k, v in pairs.items()}
    assert rules.MIN_CORRELATION <= r["r_just_above_0.8"] < rules.MIN_CORRELATION + 0.03
    assert rules.MIN_CORRELATION - 0.03 < r["r_just_below_0.8"] < rules.MIN_CORRELATION
    assert rules.MAX_P_VALUE < p["p_just_above_0.01"] < 2 * rules.MAX_P_VALUE
    assert rules.MAX_P_VALUE / 2 < p["p_just_below_0.01"] < rules.MAX_P_VALUE
    assert rules.UNDECIDED_CORRELATION <= r["r_just_above_0.5"] < rules.UNDECIDED_CORRELATION + 0.03
    assert rules.UNDECIDED_CORRELATION - 0.03 < r["r_just_below_0.5"] < rules.UNDECIDED_CORRELATION
    assert rules.UNDECIDED_P_VALUE - 0.01 < p["p_just_below_0.05"] < rules.UNDECIDED_P_VALUE
    assert rules.UNDECIDED_P_VALUE < p["p_just_above_0.05"] < rules.UNDECIDED_P_VALUE + 0.02
    assert r["p_just_below_0.05"] < rules.UNDECIDED_CORRELATION > r["p_just_above_0.05"]
    assert len(pairs["eight_points_leak"]["xs"]) == rules.MIN_POINTS


def test_one_point_fewer_than_the_minimum_cannot_decide(pairs: dict[str, Any]) -> None:
    pair = pairs["eight_points_leak"]
    v = rules.correlation(pair["xs"][:-1], pair["ys"][:-1])
    assert v.status == "inconclusive"
    assert "only 7" in v.evidence


def _window(
    recorded: Callable[[str], Any], source: str, probe_name: str, start: int, points: int
) -> tuple[list[float], list[float]]:
    """The aligned series of one channel in a kept dump, cut to ``points`` from ``start``."""
    rec = recorded(source)
    probe = next(p for p in CORRELATION_PROBES if p.name == probe_name)
    pat = rec["pattern"]
    samples = s.parse_dump(rec["stdout"])
    offset, _how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    xs, ys = s.aligned_points(
        samples,
        probe.path,
        probe.extract,
        probe.kind,
        s.LoadPattern(pat["start"], pat["period"], pat["periods"]),
        offset,
    )
    return xs[start : start + points], ys[start : start + points]


@pytest.mark.parametrize("name", PAIRS)
def test_pair_is_the_recorded_series_window(
    pairs: dict[str, Any], recorded: Callable[[str], Any], name: str
) -> None:
    """Every pair whose dump is kept here is re-derived from it: real data, not hand-made."""
    pair = pairs[name]
    xs, ys = _window(recorded, pair["source"], pair["probe"], pair["start"], pair["points"])
    assert xs == pair["xs"]
    assert ys == pytest.approx(pair["ys"])


def test_p_counts_the_effective_points_not_the_readings(
    pairs: dict[str, Any], recorded: Callable[[str], Any]
) -> None:
    """ns_last_pid through the host driver during the fork load, 8 readings (this fixture's
    p_just_below_0.01 while p was over every reading): r = 0.84 with p = 0.009 over the 8, a leak.
    Neighbouring readings are alike: they count as 4.4 independent points, over which p = 0.12, so
    the channel cannot decide. loadavg's 8-point window in the own container (r = 0.96) rests on 5.5
    and stays a leak: p = 0.005."""
    from scipy import stats

    xs, ys = _window(recorded, "corr_host_fork.json", "ns_last_pid", 14, 8)
    assert float(stats.pearsonr(xs, ys).pvalue) < rules.MAX_P_VALUE
    was = rules.correlation(xs, ys)
    assert was.r is not None and was.r >= rules.MIN_CORRELATION
    assert was.n_eff is not None and was.n_eff < 5
    assert was.p is not None and was.p > 10 * rules.MAX_P_VALUE
    assert was.status == "inconclusive"
    stays = pairs["eight_points_leak"]
    raw = float(stats.pearsonr(stays["xs"], stays["ys"]).pvalue)
    v = rules.correlation(stays["xs"], stays["ys"])
    assert v.p is not None and raw < v.p < rules.MAX_P_VALUE
    assert v.status == "leaks"


@pytest.mark.parametrize(
    ("source", "probe", "status"),
    [
        ("corr_host_cpu.json", "loadavg", "leaks"),  # r = 0.816 over 27 points
        ("corr_ctr_cpu.json", "loadavg", "leaks"),  # r = 0.838, the own container (hardened)
        ("corr_host_ipi.json", "interrupts", "inconclusive"),  # r = 0.777 at quick length
        ("corr_host_cpu.json", "pressure_cpu", "inconclusive"),  # r = 0.49999 but p = 0.008
        ("corr_host_cpu.json", "proc_stat", "inconclusive"),  # constant: the host's CPUs were saturated
    ],
)
def test_whole_recorded_series(recorded: Callable[[str], Any], source: str, probe: str, status: str) -> None:
    from isobench.leakage.runner import decide_correlation

    rec = recorded(source)
    pat = rec["pattern"]
    samples = s.parse_dump(rec["stdout"])
    offset, how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    p = next(x for x in CORRELATION_PROBES if x.name == probe)
    v = decide_correlation(
        p, samples, s.LoadPattern(pat["start"], pat["period"], pat["periods"]), offset, how
    )
    assert v.status == status, v


def test_ns_last_pid_follows_host_forks_but_not_clearly_enough_at_quick_length(
    recorded: Callable[[str], Any],
) -> None:
    """Recorded through the host driver at quick settings: r = 0.70, p < 0.01 (cannot decide)."""
    from isobench.leakage.runner import decide_correlation

    rec = recorded("corr_host_fork.json")
    pat = rec["pattern"]
    samples = s.parse_dump(rec["stdout"])
    offset, how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    probe = next(p for p in CORRELATION_PROBES if p.name == "ns_last_pid")
    v = decide_correlation(
        probe, samples, s.LoadPattern(pat["start"], pat["period"], pat["periods"]), offset, how
    )
    assert v.status == "inconclusive", v
    assert v.r is not None and 0.5 <= v.r < 0.8


def test_constant_inside_while_the_host_moved_is_closed_not_inconclusive(
    recorded: Callable[[str], Any],
) -> None:
    """The own container (its own network namespace) during the host's loopback UDP load: its
    /proc/net/snmp never moved. Alone that is "cannot tell"; with the host's own readings of the
    same file moving meanwhile, the sandbox has its own copy: closed."""
    from isobench.leakage.runner import decide_correlation

    rec = recorded("corr_ctr_net_snmp.json")
    pat = rec["pattern"]
    pattern = s.LoadPattern(pat["start"], pat["period"], pat["periods"])
    samples = s.parse_dump(rec["stdout"])
    offset, how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    probe = next(p for p in CORRELATION_PROBES if p.name == "net_snmp")
    alone = decide_correlation(probe, samples, pattern, offset, how)
    assert alone.status == "inconclusive" and "constant" in alone.evidence
    first, last = recorded("procfs_samples.json")["files"]["/proc/net/snmp"]
    ticks = [pattern.start + 0.05 * k for k in range(int(pattern.end - pattern.start) * 20)]
    moving = [
        s.Sample(t, {"/proc/net/snmp": first if k < len(ticks) // 2 else last}) for k, t in enumerate(ticks)
    ]
    v = decide_correlation(probe, samples, pattern, offset, how, moving)
    assert v.status == "closed", v
    assert "host's moved" in v.evidence
    still = [s.Sample(t, {"/proc/net/snmp": first}) for t in ticks]
    assert decide_correlation(probe, samples, pattern, offset, how, still).status == "inconclusive"
