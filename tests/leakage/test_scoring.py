"""Score and Measurements from verdicts."""

from __future__ import annotations

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


def test_too_few_samples_is_flagged_inconclusive() -> None:
    from isobench.leakage import rules

    v = rules.correlation([0, 1, 0], [1, 2, 1])
    assert v.inconclusive
    ms = {m.metric: m for m in measurements([ProbeResult("softirqs", 2, "d", v)], {})}
    assert ms["leakage.softirqs"].value == 0.0
    assert ms["leakage.softirqs"].metadata["inconclusive"] is True
