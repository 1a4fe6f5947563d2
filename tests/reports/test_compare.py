from __future__ import annotations

import math

import numpy as np
import pytest
from isobench.errors import UsageError
from isobench.model import Sample
from isobench.reports.compare import Rule, assess, compare, min_repetitions, parse_rule, parse_rules
from isobench.reports.power import gate_rates
from isobench.results import Results


def _run(run_id: str, cells: dict[tuple[str, str], np.ndarray], better: str = "lower") -> Results:
    samples = [
        Sample(
            run_id=run_id,
            driver=driver,
            workload=metric.split(".")[0],
            metric=metric,
            value=float(v),
            unit="s",
            repetition=i,
            better=better,
        )  # type: ignore[arg-type]
        for (driver, metric), values in cells.items()
        for i, v in enumerate(values)
    ]
    return Results(run={"run_id": run_id}, samples=samples)


def _timings(seed: int, centre: float, n: int = 15, cov: float = 0.03) -> np.ndarray:
    sigma = math.sqrt(math.log1p(cov**2))
    return centre * np.random.default_rng(seed).lognormal(0, sigma, n)


# -- rules -------------------------------------------------------------------------------------


def test_parse_relative_and_absolute_rules() -> None:
    assert parse_rule("startup.*:10%") == Rule("startup.*", pytest.approx(0.10), True, "startup.*:10%")
    r = parse_rule(" vm/startup.total : 0.05 ")
    assert (r.pattern, r.threshold, r.relative) == ("vm/startup.total", 0.05, False)
    assert [x.text for x in parse_rules(["startup.*:10%,cpu.*:5%", "disk.*:2.5%"])] == [
        "startup.*:10%",
        "cpu.*:5%",
        "disk.*:2.5%",
    ]


@pytest.mark.parametrize(
    "bad", ["startup.*", "startup.*:", ":10%", "startup.*:ten%", "x:5%%", "x:-5%", "x:5000%"]
)
def test_malformed_rules_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="--fail-on"):
        parse_rule(bad)


def test_rule_matching_by_metric_or_driver_and_metric() -> None:
    from isobench.reports.cells import CellKey

    key = CellKey("startup", "startup.total", "", "vm")
    assert parse_rule("startup.*:10%").matches(key)
    assert parse_rule("vm/startup.*:10%").matches(key)
    assert not parse_rule("container/startup.*:10%").matches(key)
    assert not parse_rule("cpu.*:10%").matches(key)


# -- verdicts ----------------------------------------------------------------------------------


def test_verdicts_follow_direction() -> None:
    base = _timings(1, 1.0)
    slow = _timings(2, 1.2)
    assert assess(base, slow, "lower").verdict == "slower"
    assert assess(slow, base, "lower").verdict == "faster"
    # For throughput a higher value is the improvement.
    assert assess(base, slow, "higher").verdict == "faster"
    assert assess(base, slow, "none").verdict == "changed"
    assert assess(base, _timings(3, 1.0), "lower").verdict == "no significant change"


def test_significant_but_small_change_is_not_reported() -> None:
    base = _timings(1, 1.0, n=200, cov=0.01)
    cur = _timings(2, 1.02, n=200, cov=0.01)
    a = assess(base, cur, "lower", min_effect=0.05)
    assert a.p_value < 1e-6
    assert a.verdict == "no significant change"
    assert assess(base, cur, "lower", min_effect=0.01).verdict == "slower"


def test_too_few_samples_are_insufficient() -> None:
    assert min_repetitions(0.01) == 5
    assert assess([1, 1.1, 1.2, 1.3], [2, 2.1, 2.2, 2.3], "lower").verdict == "insufficient data"
    assert assess([1, 1.1, 1.2, 1.3, 1.4], [2, 2.1, 2.2, 2.3, 2.4], "lower").verdict == "slower"


def test_constant_values_compare_exactly() -> None:
    assert assess([0.0] * 6, [1.0] * 6, "lower", min_effect=0.5, absolute=True).verdict == "slower"
    assert assess([1.0] * 6, [1.0] * 6, "lower").verdict == "no significant change"


# -- the gate ----------------------------------------------------------------------------------


def test_a_a_does_not_fail_the_gate() -> None:
    rules = parse_rules(["startup.*:5%", "cpu.*:5%"])
    for seed in range(20):
        base = _run(
            "a",
            {
                ("vm", "startup.total"): _timings(seed, 2.0),
                ("container", "cpu.time"): _timings(seed + 100, 0.5),
            },
        )
        cur = _run(
            "b",
            {
                ("vm", "startup.total"): _timings(seed + 1000, 2.0),
                ("container", "cpu.time"): _timings(seed + 2000, 0.5),
            },
        )
        result = compare(base, cur, rules, resamples=500)
        assert not result.failed, result.failures()


def test_injected_ten_percent_slowdown_fails_the_gate() -> None:
    base = _run("a", {("vm", "startup.total"): _timings(1, 2.0), ("vm", "cpu.time"): _timings(2, 1.0)})
    cur = _run("b", {("vm", "startup.total"): _timings(3, 2.0) * 1.10, ("vm", "cpu.time"): _timings(4, 1.0)})
    result = compare(base, cur, parse_rules(["startup.*:5%"]), resamples=2000)
    assert result.failed
    by_metric = {c.key.metric: c for c in result.changes}
    startup = by_metric["startup.total"]
    assert startup.verdict == "slower"
    assert startup.failed_rules == ("startup.*:5%",)
    assert startup.change == pytest.approx(0.10, abs=0.03)
    assert startup.change_ci_low < startup.change < startup.change_ci_high
    assert startup.change_ci_low > 0.05
    assert not by_metric["cpu.time"].failed
    assert result.failures()[0].startswith("vm/startup.total: slower by +")
    rows = result.rows()
    assert {r["failed"] for r in rows} == {"FAIL", ""}
    frame = result.to_frame()
    assert frame.loc[frame["metric"] == "startup.total", "failed"].item()


def test_improvement_never_fails_and_throughput_drop_does() -> None:
    base = _run("a", {("vm", "network.gbit"): _timings(1, 10.0)}, better="higher")
    faster = _run("b", {("vm", "network.gbit"): _timings(2, 12.0)}, better="higher")
    slower = _run("c", {("vm", "network.gbit"): _timings(3, 8.0)}, better="higher")
    rules = parse_rules(["network.*:5%"])
    assert not compare(base, faster, rules, resamples=200).failed
    assert compare(base, slower, rules, resamples=200).failed


def test_missing_metric_unmatched_rule_and_too_few_samples_fail_closed() -> None:
    base = _run("a", {("vm", "startup.total"): _timings(1, 2.0)})
    gone = _run("b", {("vm", "cpu.time"): _timings(1, 2.0)})
    r = compare(base, gone, parse_rules(["startup.*:10%"]), resamples=200)
    assert r.failed and "not measured in the current run" in r.failures()[0]
    r = compare(base, base, parse_rules(["statup.*:10%"]), resamples=200)
    assert r.failed and "matches no metric" in r.failures()[0]
    few = _run("c", {("vm", "startup.total"): _timings(1, 2.0, n=3)})
    r = compare(few, few, parse_rules(["startup.*:10%"]), resamples=200)
    assert r.failed and "at least 5 repetitions" in r.failures()[0]
    # Without rules nothing can fail.
    assert not compare(base, gone, (), resamples=200).failed


def test_absolute_rule() -> None:
    base = _run("a", {("vm", "startup.total"): _timings(1, 2.0)})
    cur = _run("b", {("vm", "startup.total"): _timings(2, 2.0) + 0.3})
    assert compare(base, cur, parse_rules(["startup.total:0.2"]), resamples=200).failed
    assert not compare(base, cur, parse_rules(["startup.total:0.5"]), resamples=200).failed


def test_invalid_options_are_usage_errors() -> None:
    r = _run("a", {("vm", "x.y"): _timings(1, 1.0)})
    with pytest.raises(UsageError):
        compare(r, r, alpha=0)
    with pytest.raises(UsageError):
        compare(r, r, min_effect=-1)


# -- operating characteristics (fixed seeds; realistic n and CoV) ------------------------------


@pytest.mark.parametrize("n", [10, 20])
def test_false_alarm_rate_and_detection_rate(n: int) -> None:
    # CoV 3% log-normal timings; the rule is startup.*:5%.
    aa = gate_rates(n=n, cov=0.03, shift=0.0, threshold=0.05, trials=400, seed=n)
    ab = gate_rates(n=n, cov=0.03, shift=0.10, threshold=0.05, trials=400, seed=n + 1)
    assert aa.fail_rate <= 0.01
    assert ab.fail_rate >= 0.95
