"""Score and Measurements from verdicts."""

from __future__ import annotations

import pytest
from isobench.leakage import ProbeResult, measurements, score
from isobench.leakage.rules import Verdict, not_applicable


def _results() -> list[ProbeResult]:
    return [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult("interrupts", 2, "d", Verdict("correlation", True, "r=0.9", r=0.9, p=1e-9, n=40)),
        ProbeResult("rapl", 1, "d", not_applicable("presence", "no RAPL")),
    ]


def test_score_counts_applicable_only() -> None:
    sc = score(_results())
    assert (sc.count, sc.weighted, sc.max_weighted, sc.evaluated) == (2, 3, 6, 3)
    assert sc.percent == 50.0


def test_measurements_shape() -> None:
    ms = {m.metric: m for m in measurements(_results(), {"hardening": False})}
    assert "leakage.rapl" not in ms
    b = ms["leakage.boot_id"]
    assert (b.value, b.unit, b.better) == (1.0, "bool", "lower")
    assert b.metadata["rule"] == "equal"
    assert b.metadata["evidence"] == "same"
    assert b.params == {"hardening": False}
    assert ms["leakage.interrupts"].metadata["r"] == 0.9
    assert ms["leakage.capabilities"].value == 0.0
    assert ms["leakage.count"].value == 2.0
    assert ms["leakage.score"].value == 50.0
    assert ms["leakage.score"].metadata["not_applicable"] == {"rapl": "no RAPL"}
    assert ms["leakage.score"].metadata["leaking"] == ["boot_id", "interrupts"]


def test_too_few_samples_is_inconclusive_listed_and_not_scored() -> None:
    from isobench.leakage import rules

    v = rules.correlation([0, 1, 0], [1, 2, 1])
    assert v.status == "inconclusive"
    results = [
        ProbeResult("softirqs", 2, "d", v),
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
    ]
    ms = {m.metric: m for m in measurements(results, {})}
    assert "leakage.softirqs" not in ms  # no 0 that a table would read as "closed"
    assert ms["leakage.inconclusive"].value == 1.0
    assert "softirqs" in ms["leakage.score"].metadata["inconclusive"]
    assert ms["leakage.score"].value == 100.0  # the one scored probe leaks
    assert ms["leakage.score"].metadata["max_weighted"] == 1


def test_a_probe_that_could_not_run_is_an_error_shown_not_scored() -> None:
    from isobench.leakage import rules

    results = [
        ProbeResult("seccomp", 1, "d", rules.error("presence", "no perl in the sandbox")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
    ]
    sc = score(results)
    assert (sc.count, sc.weighted, sc.max_weighted, sc.evaluated, sc.errors) == (1, 1, 4, 2, 1)
    assert sc.percent == 25.0
    ms = {m.metric: m for m in measurements(results, {})}
    assert "leakage.seccomp" not in ms
    assert ms["leakage.errors"].value == 1.0
    assert ms["leakage.errors"].metadata["probes"] == {"seccomp": "no perl in the sandbox"}
    assert ms["leakage.capabilities"].metadata["status"] == "closed"


def test_a_failed_probe_cannot_flatter_the_score() -> None:
    """Before: an error counted as "closed", so a sandbox whose probes broke scored lower (better)."""
    from isobench.leakage import rules

    ok = [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("caps", 3, "d", Verdict("presence", True, "x")),
    ]
    broken = [*ok, ProbeResult("devices", 3, "d", rules.error("presence", "exec stopped"))]
    assert score(broken).percent == score(ok).percent == 100.0


def test_bounds_span_every_left_out_probe_closed_or_leaking() -> None:
    from isobench.leakage import rules

    results = [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult("diskstats", 2, "d", rules.correlation([0, 1] * 6, [5.0] * 12)),
    ]
    sc = score(results)
    assert sc.percent == 25.0
    assert sc.bounds == (100 / 6, 50.0)  # 1/6 if diskstats is closed, 3/6 if it leaks
    assert score(results[:2]).bounds == (25.0, 25.0)


def _uncertain_results() -> list[ProbeResult]:
    from isobench.leakage import rules

    loadavg = Verdict("correlation", True, "r=0.93", r=0.93, p=1e-9, n=56, r_low=0.797, r_high=0.978)
    ns_last_pid = Verdict("correlation", False, "r=0.20", r=0.2, p=0.2, n=35, r_low=-0.14, r_high=0.503)
    return [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult("loadavg", 2, "d", loadavg),
        ProbeResult("ns_last_pid", 2, "d", ns_last_pid),
        ProbeResult("seccomp", 1, "d", rules.error("presence", "no perl")),
    ]


def test_interval_takes_every_open_probe_to_both_ends() -> None:
    """Point: boot_id + loadavg leak, 3 of 8 scored. Lowest: loadavg left out (it may be short of
    the bar), ns_last_pid and seccomp closed: 1 of 7. Highest: loadavg and seccomp leak,
    ns_last_pid left out (its r may reach 0.5): 4 of 7."""
    sc = score(_uncertain_results())
    assert sc.percent == 37.5
    assert sc.interval == pytest.approx((100 / 7, 400 / 7))
    assert sc.low <= sc.percent <= sc.high
    assert sc.uncertain == 2
    assert sc.bounds == pytest.approx((100 * 3 / 9, 100 * 4 / 9))  # the left-out probe alone: narrower


def test_certain_evidence_gives_a_point_interval() -> None:
    results = [
        ProbeResult("boot_id", 1, "d", Verdict("equal", True, "same")),
        ProbeResult("capabilities", 3, "d", Verdict("presence", False, "none")),
        ProbeResult(
            "interrupts", 2, "d", Verdict("correlation", True, "x", r=0.95, n=40, r_low=0.9, r_high=0.98)
        ),
    ]
    sc = score(results)
    assert sc.interval == (50.0, 50.0) and sc.uncertain == 0


def test_measurements_record_the_interval_and_the_uncertain_probes() -> None:
    ms = {m.metric: m for m in measurements(_uncertain_results(), {})}
    meta = ms["leakage.score"].metadata
    assert meta["interval"] == [14.29, 57.14]
    assert sorted(meta["uncertain"]) == ["loadavg", "ns_last_pid"]
    assert ms["leakage.loadavg"].metadata["plausible"] == ["inconclusive", "leaks"]
    assert ms["leakage.loadavg"].metadata["r_interval"] == [0.797, 0.978]
    assert "plausible" not in ms["leakage.capabilities"].metadata
