"""The margin of the correlation rule: a leaks or closed verdict whose r's 95% interval reaches another
verdict's r threshold is *uncertain*, on real series of this host (tests/leakage/data/margins.json;
how they were recorded: data/README.md).

Widening or narrowing the interval (its confidence, the effective number of points) or moving the
margin off the r thresholds fails a test here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from isobench.leakage import CORRELATION_PROBES, ProbeResult, rules, score
from isobench.leakage import series as s
from isobench.leakage.runner import decide_correlation

PAIRS = {
    # name: (status, uncertain)
    "leaks_certain_just": ("leaks", False),  # r = 0.925, r_low = 0.803 over 17.4 effective points
    "leaks_uncertain_just": ("leaks", True),  # r = 0.932 but r_low = 0.797 over 14.3
    "closed_certain_just": ("closed", False),  # r = -0.147, r_high = 0.497 over 11
    "closed_uncertain_just": ("closed", True),  # r = 0.204, r_high = 0.503 over 35
}


@pytest.fixture
def margins(recorded: Callable[[str], Any]) -> dict[str, Any]:
    data: dict[str, Any] = recorded("margins.json")
    return data


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_recorded_series_on_either_side_of_the_margin(margins: dict[str, Any], name: str) -> None:
    pair = margins["pairs"][name]
    status, uncertain = PAIRS[name]
    v = rules.correlation(pair["xs"], pair["ys"])
    assert v.status == status, (name, v)
    assert v.uncertain is uncertain, (name, v)
    assert (v.r_low, v.r_high) == pytest.approx((pair["r_low"], pair["r_high"]), abs=1e-4)


def test_the_pairs_sit_close_to_the_margin(margins: dict[str, Any]) -> None:
    """Each pair is worth something only if its interval ends within 0.01 of the threshold."""
    p = margins["pairs"]
    assert rules.MIN_CORRELATION < p["leaks_certain_just"]["r_low"] < rules.MIN_CORRELATION + 0.01
    assert rules.MIN_CORRELATION - 0.01 < p["leaks_uncertain_just"]["r_low"] < rules.MIN_CORRELATION
    assert (
        rules.UNDECIDED_CORRELATION - 0.01 < p["closed_certain_just"]["r_high"] < rules.UNDECIDED_CORRELATION
    )
    assert (
        rules.UNDECIDED_CORRELATION
        < p["closed_uncertain_just"]["r_high"]
        < rules.UNDECIDED_CORRELATION + 0.01
    )


def test_the_margin_depends_on_the_effective_points_not_on_r_alone(margins: dict[str, Any]) -> None:
    """The higher r is the uncertain one: its series rests on fewer independent points."""
    certain = rules.correlation(
        margins["pairs"]["leaks_certain_just"]["xs"], margins["pairs"]["leaks_certain_just"]["ys"]
    )
    unsure = rules.correlation(
        margins["pairs"]["leaks_uncertain_just"]["xs"], margins["pairs"]["leaks_uncertain_just"]["ys"]
    )
    assert certain.r is not None and unsure.r is not None
    assert unsure.r > certain.r
    assert unsure.n_eff is not None and certain.n_eff is not None and unsure.n_eff < certain.n_eff


def test_plausible_statuses() -> None:
    leaks = rules.Verdict("correlation", True, "x", r=0.93, p=1e-9, n=56, r_low=0.797, r_high=0.978)
    assert leaks.plausible == ("inconclusive", "leaks")
    wide = rules.Verdict("correlation", False, "x", r=0.2, p=0.3, n=20, r_low=-0.3, r_high=0.85)
    assert wide.plausible == ("closed", "inconclusive", "leaks")
    firm = rules.Verdict("correlation", False, "x", r=0.0, p=0.9, n=80, r_low=-0.2, r_high=0.2)
    assert firm.plausible == ("closed",) and not firm.uncertain
    # could not run / could not decide: either way; static readings: what they are
    assert rules.error("presence", "no perl").plausible == ("closed", "leaks")
    assert rules.correlation([0, 1] * 6, [5.0] * 12).plausible == ("closed", "leaks")
    assert rules.Verdict("equal", True, "same").plausible == ("leaks",)
    assert rules.not_applicable("presence", "no RAPL").plausible == ("n/a",)


def test_fisher_interval_and_effective_points() -> None:
    lo, hi = rules.r_interval(0.5, 28)  # z = 0.549, half-width 1.96 / 5
    assert (lo, hi) == pytest.approx((math.tanh(0.5493 - 0.392), math.tanh(0.5493 + 0.392)), abs=1e-3)
    assert rules.r_interval(0.9, 4) == (-1.0, 1.0)
    # A square wave of 10 readings per period (7 switches in 79 neighbour pairs): lag-1
    # autocorrelation (72 - 7) / 80 = 0.8125, so 80 readings count as 16.4 independent ones.
    wave = ([0.0] * 10 + [1.0] * 10) * 4
    a = 65 / 80
    assert rules.effective_points(wave, wave) == pytest.approx(80 * (1 - a * a) / (1 + a * a))
    alternating = [float(k % 2) for k in range(80)]
    assert rules.effective_points(wave, alternating) == 80  # a negative product counts as none


def test_fewer_periods_give_a_wider_interval(margins: dict[str, Any]) -> None:
    """A quick run's series is a prefix's length of a full one: the same channel, a wider interval."""
    full = margins["pairs"]["leaks_certain_just"]
    whole = rules.correlation(full["xs"], full["ys"])
    half = rules.correlation(full["xs"][: len(full["xs"]) // 2], full["ys"][: len(full["ys"]) // 2])
    assert whole.r_low is not None and whole.r_high is not None
    assert half.r_low is not None and half.r_high is not None
    assert half.r_high - half.r_low > whole.r_high - whole.r_low


def test_a_channel_that_flipped_between_runs_is_open_in_each_of_them(margins: dict[str, Any]) -> None:
    """/proc/meminfo inside the own container, six recordings a few minutes apart on this host: it
    leaked in two quick runs (r 0.90, 0.81), looked closed in a third (0.33) and could not decide in
    three full ones (0.40-0.67). Every run's plausible statuses meet every other's, so the score
    intervals they give cannot exclude each other through this channel."""
    runs = margins["meminfo_runs"]
    verdicts = {name: rules.correlation(r["xs"], r["ys"]) for name, r in runs.items()}
    statuses = {v.status for v in verdicts.values()}
    assert statuses == {"leaks", "closed", "inconclusive"}
    for a in verdicts.values():
        for b in verdicts.values():
            assert set(a.plausible) & set(b.plausible), (a, b)
    # and none of the runs states its verdict as certain
    assert all(v.uncertain or not v.scored for v in verdicts.values())


def test_score_intervals_of_the_flipping_runs_overlap(margins: dict[str, Any]) -> None:
    static = [
        ProbeResult("boot_id", 1, "d", rules.Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", rules.Verdict("presence", False, "none")),
    ]
    scores = []
    for r in margins["meminfo_runs"].values():
        v = rules.correlation(r["xs"], r["ys"])
        scores.append(
            score([*static, *(ProbeResult(n, 2, "d", v) for n in ("meminfo", "vmstat", "zoneinfo"))])
        )
    points = [s.percent for s in scores]
    assert max(points) - min(points) > 40  # the point score alone jumps
    assert max(s.low for s in scores) <= min(s.high for s in scores)  # the intervals share a point


def _dump(recorded: Callable[[str], Any], name: str) -> tuple[list[s.Sample], s.LoadPattern, float, str]:
    rec = recorded(name)
    pat = rec["pattern"]
    samples = s.parse_dump(rec["stdout"])
    offset, how = s.align_offset(samples[0].t, samples[-1].t, rec["exec_start"], rec["exec_end"])
    return samples, s.LoadPattern(pat["start"], pat["period"], pat["periods"]), offset, how


def test_closed_needs_the_hosts_own_reading_to_have_followed_the_load(recorded: Callable[[str], Any]) -> None:
    """/proc/diskstats inside the own container, two quick runs two minutes apart: r = 0.86, then
    r = -0.36 (the disk writer starved by other work). The container shares the host's diskstats,
    so the second run's host reading did not follow the load either: not closed, cannot tell. Had
    the host's reading followed it (the first run's, moved onto the second's schedule), closed."""
    probe = next(p for p in CORRELATION_PROBES if p.name == "diskstats")
    flat, pattern, offset, how = _dump(recorded, "corr_ctr_disk_flat.json")
    alone = decide_correlation(probe, flat, pattern, offset, how)
    assert alone.status == "closed" and alone.r is not None and alone.r < 0
    same_file = decide_correlation(probe, flat, pattern, offset, how, flat)
    assert same_file.status == "inconclusive", same_file
    assert "host's own reading did not follow" in same_file.evidence
    follows, other, _o, _h = _dump(recorded, "corr_ctr_disk_follows.json")
    assert (other.period, other.periods) == (pattern.period, pattern.periods)
    shift = pattern.start - other.start
    moved = [s.Sample(x.t + shift, x.files) for x in follows]
    assert decide_correlation(probe, flat, pattern, offset, how, moved).status == "closed"


def test_steal_time_is_not_held_to_the_hosts_reading(recorded: Callable[[str], Any]) -> None:
    """Steal time exists inside guests; the host's own does not follow its own load. Recorded in the
    own container during the cpu load: r = -0.13, closed, whatever the host's reading did."""
    probe = next(p for p in CORRELATION_PROBES if p.name == "steal_time")
    samples, pattern, offset, how = _dump(recorded, "corr_ctr_cpu.json")
    v = decide_correlation(probe, samples, pattern, offset, how, samples)
    assert v.status == "closed", v
    # pressure_cpu of the same recording (closed, r = -0.10) is held to it: the host's did not follow
    pressure = next(p for p in CORRELATION_PROBES if p.name == "pressure_cpu")
    assert decide_correlation(pressure, samples, pattern, offset, how, samples).status == "inconclusive"


def test_a_host_reading_short_of_the_bar_still_shows_the_load(recorded: Callable[[str], Any]) -> None:
    """/proc/interrupts with no load driven (r = -0.07: closed) against the host's own reading during
    the ipi load at quick length (r = 0.78: follows it, short of the leak bar): the load showed on
    the host, so the quiet series stays closed; the same series against itself cannot tell."""
    probe = next(p for p in CORRELATION_PROBES if p.name == "interrupts")
    quiet, pattern, offset, how = _dump(recorded, "corr_ipi_noload.json")
    host, host_pattern, _o, _h = _dump(recorded, "corr_host_ipi.json")
    moved = [s.Sample(x.t + pattern.start - host_pattern.start, x.files) for x in host]
    on_host = decide_correlation(probe, moved, pattern, 0.0, how)
    assert on_host.status == "inconclusive" and on_host.r is not None
    assert rules.UNDECIDED_CORRELATION <= on_host.r < rules.MIN_CORRELATION
    assert decide_correlation(probe, quiet, pattern, offset, how, moved).status == "closed"
    assert decide_correlation(probe, quiet, pattern, offset, how, quiet).status == "inconclusive"
