"""A/B in one run: variants paired by round, an exact signed-rank test, ratio B/A with its interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from isobench.errors import UsageError
from isobench.model import Sample
from isobench.reports.ab import ab_labels, compare_ab
from isobench.reports.compare import compare, parse_rules
from isobench.results import Results


def _ab_run(
    rounds: int,
    factor: float,
    *,
    drift: float = 0.3,
    noise: float = 0.01,
    seed: int = 0,
    metric: str = "startup.total",
) -> Results:
    """Rounds whose level drifts a lot (the machine warms, a neighbour runs) while B/A within a
    round is ``factor`` give or take ``noise``."""
    rng = np.random.default_rng(seed)
    samples = []
    for r in range(rounds):
        level = 1.0 + drift * rng.random()
        for label, f in (("A", 1.0), ("B", factor)):
            samples.append(
                Sample(
                    run_id="ab",
                    driver="container",
                    workload=metric.split(".", maxsplit=1)[0],
                    metric=metric,
                    value=level * f * math.exp(rng.normal(0, noise)),
                    unit="s",
                    repetition=r,
                    params={"ab": label, "size": "small"},
                    metadata={"round": r},
                )
            )
    return Results(run={"run_id": "ab", "ab": {"labels": ["A", "B"]}}, samples=samples)


def test_paired_by_round_sees_through_drift() -> None:
    results = _ab_run(10, 1.10, drift=0.8)
    cmp = compare_ab(results, "A", "B", parse_rules(["startup.*:5%"]))
    (change,) = cmp.changes
    assert cmp.unit == "round" and change.baseline_n == change.current_n == 10
    assert change.key.variant == "size=small"  # the ab param is what is compared, not a variant
    assert change.verdict == "slower" and change.failed and cmp.exit_code == 1
    assert change.p_value == pytest.approx(2 / 1024)  # every round B > A: the most extreme of 2^10
    assert change.change == pytest.approx(0.10, abs=0.01)
    assert change.change_ci_low < 0.10 < change.change_ci_high
    assert change.change_ci_low > 0.05
    # The same samples as two independent groups: the drift swamps the 10% and nothing is seen.
    a = Results(run={"run_id": "a"}, samples=[s for s in results.samples if s.params["ab"] == "A"])
    b = Results(run={"run_id": "b"}, samples=[s for s in results.samples if s.params["ab"] == "B"])
    unpaired = compare(_strip_ab(a), _strip_ab(b), parse_rules(["startup.*:5%"]))
    assert not unpaired.failed and unpaired.changes[0].p_value > 0.1


def _strip_ab(r: Results) -> Results:
    from dataclasses import replace

    return Results(run=r.run, samples=[replace(s, params={"size": "small"}) for s in r.samples])


def test_a_a_pairs_raise_no_alarm() -> None:
    alarms = sum(
        compare_ab(_ab_run(10, 1.0, seed=s), "A", "B", parse_rules(["startup.*:0%"])).failed
        for s in range(40)
    )
    assert alarms <= 5  # alpha 5%: 2 expected; a binomial tail beyond 5 has probability < 2%


def test_too_few_rounds_cannot_be_judged() -> None:
    cmp = compare_ab(_ab_run(4, 1.2), "A", "B", parse_rules(["startup.*:5%"]))
    (change,) = cmp.changes
    # 4 rounds: the most extreme sign pattern has p = 2/16 > 0.05.
    assert change.verdict == "cannot judge" and cmp.exit_code == 3
    assert change.min_p == pytest.approx(2 / 16)


def test_improvement_is_faster_and_does_not_fail() -> None:
    cmp = compare_ab(_ab_run(8, 0.8), "A", "B", parse_rules(["startup.*:5%"]))
    (change,) = cmp.changes
    assert change.verdict == "faster" and not cmp.failed and cmp.exit_code == 0
    assert change.change == pytest.approx(-0.2, abs=0.02)


def test_labels_and_unknown_labels() -> None:
    results = _ab_run(3, 1.0)
    assert ab_labels(results) == ["A", "B"]
    assert ab_labels(Results(run={"run_id": "x"}, samples=results.samples)) == ["A", "B"]
    with pytest.raises(UsageError, match="'C' is not in run ab"):
        compare_ab(results, "A", "C")
    with pytest.raises(UsageError, match="two different labels"):
        compare_ab(results, "A", "A")


def test_a_metric_only_one_variant_measured_violates_its_rule() -> None:
    results = _ab_run(8, 1.0)
    kept = [s for s in results.samples if s.params["ab"] == "A" or s.metadata["round"] < 0]
    extra = _ab_run(8, 1.0, metric="cpu.time").samples
    cmp = compare_ab(Results(run=results.run, samples=kept + extra), "A", "B", parse_rules(["startup.*:5%"]))
    assert cmp.failed
    assert any("measured for A but not for B" in f for f in cmp.failures())
