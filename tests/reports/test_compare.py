from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from isobench.errors import UsageError
from isobench.exact import rank_sum_test
from isobench.model import Sample
from isobench.reports.compare import Rule, assess, compare, min_repetitions, parse_rule, parse_rules
from isobench.reports.gate import decide
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


def test_too_few_samples_cannot_be_judged() -> None:
    # Exact min p: 3 vs 3 -> 2/20 = 0.1, 4 vs 4 -> 2/70, 5 vs 5 -> 2/252.
    assert min_repetitions(0.05) == 4
    assert min_repetitions(0.01) == 5
    assert min_repetitions(0.05, metrics=100) == 8  # 2/C(14,7) = 0.00058 is not below 0.05/100
    a = assess([1, 1.1, 1.2], [2, 2.1, 2.2], "lower")
    assert a.verdict == "cannot judge" and math.isinf(a.detectable) and a.min_p == pytest.approx(0.1)
    assert assess([1, 1.1, 1.2, 1.3], [2, 2.1, 2.2, 2.3], "lower", alpha=0.01).verdict == "cannot judge"
    slower = assess([1, 1.1, 1.2, 1.3, 1.4], [2, 2.1, 2.2, 2.3, 2.4], "lower", alpha=0.01)
    assert slower.verdict == "slower" and slower.p_value == pytest.approx(2 / 252)


def test_constant_values_compare_exactly() -> None:
    a = assess([0.0] * 6, [1.0] * 6, "lower", min_effect=0.5, absolute=True)
    assert a.verdict == "slower" and a.p_value == pytest.approx(2 / 924)
    same = assess([1.0] * 6, [1.0] * 6, "lower")
    assert same.verdict == "no significant change" and not same.failed


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


def test_a_change_native_shares_is_said_to_be_possibly_the_hosts() -> None:
    # a slower hour of the same machine: native and the container 20% slower, the vm's cpu.time not
    base = _run(
        "a",
        {
            ("host", "cpu.time"): _timings(1, 1.0),
            ("container", "cpu.time"): _timings(2, 1.0),
            ("vm", "cpu.time"): _timings(3, 3.0),
            ("vm", "startup.total"): _timings(4, 2.0),
        },
    )
    cur = _run(
        "b",
        {
            ("host", "cpu.time"): _timings(5, 1.2),
            ("container", "cpu.time"): _timings(6, 1.2),
            ("vm", "cpu.time"): _timings(7, 3.0),
            ("vm", "startup.total"): _timings(8, 2.4),  # native has no startup.total: not explained
        },
    )
    result = compare(base, cur, resamples=2000)
    verdicts = {(c.key.driver, c.key.metric): c.verdict for c in result.changes}
    assert verdicts[("container", "cpu.time")] == verdicts[("vm", "startup.total")] == "slower"
    (said,) = [w for w in result.warnings if w.startswith("native (host) moved")]
    assert "on 1 figure(s) (cpu.time +" in said and "as 1 flagged change(s) of other drivers" in said
    # a compare whose native did not move says nothing of it
    steady = _run("c", {("host", "cpu.time"): _timings(9, 1.0), ("container", "cpu.time"): _timings(6, 1.2)})
    assert not [w for w in compare(base, steady, resamples=2000).warnings if "native" in w]


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
    other = _run("d", {("vm", "startup.total"): _timings(2, 2.0, n=3)})
    r = compare(few, other, parse_rules(["startup.*:10%"]), resamples=200)
    # Not a pass and not a regression: its own verdict and exit code.
    assert not r.failed and r.exit_code == 3 and len(r.cannot_judge) == 1
    (summary,) = r.rule_summaries()
    assert "1 cannot judge" in summary and "n=3 vs 3" in summary and "smallest possible p 0.1" in summary
    # A run compared with itself: every value tied with its copy, so even less can be shown.
    assert "smallest possible p 0.2" in compare(few, few, parse_rules(["startup.*:10%"])).rule_summaries()[0]
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


# -- family-wise control, runs as the unit, what a verdict can see ----------------------------


def _aa_family_alarm_rate(*, holm: bool, compares: int = 120, metrics: int = 25, n: int = 8) -> float:
    """Share of A/A compares (no real change anywhere) in which a '*:0%' gate over ``metrics``
    log-normal metrics raised any alarm."""
    from isobench.reports.cells import CellKey
    from isobench.reports.gate import Evidence

    rng = np.random.default_rng(2024)
    rules = parse_rules(["*:0%"])
    alarms = 0
    for _ in range(compares):
        base = rng.lognormal(0, 0.03, (metrics, n))
        cur = rng.lognormal(0, 0.03, (metrics, n))
        tests = [rank_sum_test(c, b) for b, c in zip(base, cur, strict=True)]
        if not holm:  # what the old gate did: every metric on its own at alpha
            alarms += any(t.p_value < 0.05 for t in tests)
            continue
        deltas = np.median(cur, axis=1) - np.median(base, axis=1)
        evs = [
            Evidence(
                key=CellKey("w", f"w.m{i}", "", "vm"),
                unit="s",
                better="lower",
                baseline_n=n,
                current_n=n,
                baseline_median=1.0,
                current_median=1.0 + d,
                change=d,
                change_ci_low=math.nan,
                change_ci_high=math.nan,
                change_ci_confidence=math.nan,
                delta=d,
                test=t,
                sigma_log=0.03,
            )
            for i, (d, t) in enumerate(zip(deltas, tests, strict=True))
        ]
        changes = decide(evs, rules, alpha=0.05, min_effect=0.0, warnings=[])
        alarms += any(c.verdict != "no significant change" for c in changes)
    return alarms / compares


def test_family_wise_false_alarm_rate_is_at_most_alpha() -> None:
    # 120 compares: the rate's standard error at 5% is 0.02; allow three of them.
    assert _aa_family_alarm_rate(holm=True) <= 0.05 + 0.06
    # The same compares judged metric by metric alarm most of the time (about 1 - 0.95^25).
    assert _aa_family_alarm_rate(holm=False) >= 0.6


def test_one_real_regression_among_many_is_still_caught() -> None:
    metrics = {("vm", f"startup.m{i}"): _timings(i, 1.0, n=12) for i in range(30)}
    base = _run("a", metrics)
    cur_cells = {k: _timings(100 + i, 1.0, n=12) for i, k in enumerate(metrics)}
    cur_cells[("vm", "startup.m7")] = _timings(999, 1.0, n=12) * 1.15
    result = compare(base, _run("b", cur_cells), parse_rules(["startup.*:5%"]), resamples=200)
    assert [c.key.metric for c in result.changes if c.failed] == ["startup.m7"]
    bad = next(c for c in result.changes if c.failed)
    assert bad.p_adjusted < 0.05 and bad.p_adjusted >= bad.p_value
    assert 0.05 <= bad.detectable <= 0.15  # what a verdict at n=12 and CoV 3% can see
    assert result.exit_code == 1


def _runs_with_run_effect(seed: int, runs: int, shift: float = 0.0) -> list[Results]:
    """Runs whose level moves from run to run (sd 4%) more than samples move within a run (1%)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(runs):
        level = math.exp(rng.normal(0, 0.04)) * (1 + shift)
        out.append(
            _run(
                f"{seed}-{r}",
                {("vm", "startup.total"): level * _timings(seed * 100 + r, 1.0, n=10, cov=0.01)},
            )
        )
    return out


def test_the_run_is_the_unit_when_several_runs_exist() -> None:
    rules = parse_rules(["startup.*:2%"])
    by_sample = by_run = 0
    trials = 30
    for t in range(trials):
        base, cur = _runs_with_run_effect(t, 5), _runs_with_run_effect(1000 + t, 5)
        by_sample += compare(base[0], cur[0], rules, resamples=0).failed
        multi = compare(base, cur, rules, resamples=0)
        assert multi.unit == "run" and multi.changes[0].baseline_n == 5
        by_run += multi.failed
    # One run per side mistakes run-to-run variation for a change; runs as the unit do not.
    assert by_sample / trials >= 0.25
    assert by_run / trials <= 0.1
    # A real 15% shift of every run is still caught with runs as the unit (5 vs 5: p = 2/252).
    caught = compare(_runs_with_run_effect(7, 5), _runs_with_run_effect(8, 5, shift=0.15), rules, resamples=0)
    assert caught.failed


def test_no_changed_row_says_nothing_changed_only_of_what_was_judged() -> None:
    base = {("vm", "startup.total"): _timings(1, 1.0), ("host", "startup.total"): _timings(2, 0.1)}
    same = {("vm", "startup.total"): _timings(3, 1.0), ("host", "startup.total"): _timings(4, 0.1)}
    assert (
        compare(_run("a", base), _run("b", same), resamples=200).quiet() == "no figure changed significantly"
    )
    # Interrupted after one start each: the vm figure cannot be judged, and is not called unchanged.
    once = {**same, ("vm", "startup.total"): _timings(3, 1.0, n=1)}
    assert compare(_run("a", base), _run("b", once), resamples=200).quiet() == (
        "no figure changed significantly of the 1 judged (1 could not be)"
    )
    twice_once = {k: _timings(5, 1.0, n=1) for k in base}
    assert compare(_run("a", base), _run("b", twice_once), resamples=200).quiet() == (
        "no figure could be judged (too few values on one side or both)"
    )
    other = {("vm", "cpu.events"): _timings(6, 1.0)}
    assert compare(_run("a", base), _run("b", other), resamples=200).quiet() == (
        "no figure measured on both sides"
    )


def test_compact_rows_show_only_changes_and_failures() -> None:
    cells = {("vm", f"cpu.m{i}"): _timings(i, 1.0) for i in range(40)}
    base = _run("a", cells)
    cur = dict(cells)
    cur[("vm", "cpu.m3")] = _timings(3, 1.0) * 1.3
    result = compare(base, _run("b", cur), parse_rules(["cpu.m3:5%"]), resamples=200)
    assert [r["metric"] for r in result.rows(show_all=False)] == ["vm/cpu.m3"]
    assert len(result.rows(show_all=True)) == 40
    assert result.counts().startswith(
        "40 figures compared (unit: sample): 1 slower, 39 no significant change"
    )


def test_the_stated_detectable_change_is_caught_about_80_percent_of_the_time() -> None:
    # The detectable change is an approximation (normal theory, noise estimated from one pair of
    # samples); check it is the right size: a shift of that much is caught 65-95% of the time.
    base, cur = _timings(11, 1.0, n=10), _timings(12, 1.0, n=10)
    mde = assess(base, cur, "lower", min_effect=0.05).detectable
    assert 0.05 < mde < 0.1
    caught = gate_rates(n=10, cov=0.03, shift=mde, threshold=0.05, trials=300, seed=3)
    assert 0.65 <= caught.fail_rate <= 0.95


def test_quantised_regression_with_ties_is_caught_at_n5() -> None:
    # sysbench's p95 latency comes in 10 us steps: ties within a side. A 30% regression with no
    # overlap is the most extreme of the 252 splits, p = 2/252 < 0.01; the normal approximation
    # scipy falls back to on ties said p ~ 0.011 and passed it at alpha 0.01.
    from scipy.stats import mannwhitneyu

    base = [0.00034, 0.00034, 0.00035, 0.00034, 0.00036]
    cur = [0.00045, 0.00044, 0.00045, 0.00046, 0.00045]
    assert mannwhitneyu(cur, base, method="auto").pvalue > 0.01
    a = assess(base, cur, "lower", alpha=0.01, min_effect=0.05)
    assert a.p_value == pytest.approx(2 / 252) and a.verdict == "slower" and a.failed


def test_recorded_a_a_runs_alarm_per_sample_but_not_per_run() -> None:
    """Eight real back-to-back runs of the same code (tests/reports/data): their medians move from
    2.7 to 14 ms with the load of a shared host. Compared run against run with the sample as the unit,
    such pairs raise false alarms; as 4 vs 4 runs with the run as the unit, at most alpha of all
    70 splits do (the exact test's guarantee: only the most extreme split reaches p = 2/70)."""
    import itertools
    import json
    from pathlib import Path

    doc = json.loads(
        (Path(__file__).parent / "data" / "aa_runs_host_startup.json").read_text(encoding="utf-8")
    )
    runs = [_run(r["run_id"], {("host", "startup.total"): np.array(r["startup.total"])}) for r in doc["runs"]]
    rules = parse_rules(["startup.total:5%"])
    pairs = list(itertools.combinations(range(len(runs)), 2))
    per_sample = sum(compare(runs[i], runs[j], rules, resamples=0).failed for i, j in pairs)
    assert per_sample >= len(pairs) // 4  # 10 of 28 when recorded
    splits = list(itertools.combinations(range(len(runs)), 4))
    per_run = sum(
        compare(
            [runs[i] for i in s], [runs[i] for i in range(len(runs)) if i not in s], rules, resamples=0
        ).failed
        for s in splits
    )
    assert per_run <= 0.05 * len(splits)


def test_one_run_per_side_counts_run_to_run_variation_with_history() -> None:
    rules = parse_rules(["startup.*:2%"])
    alarms = caught = 0
    trials = 30
    for t in range(trials):
        runs = _runs_with_run_effect(t, 9)
        base, history = runs[0], runs[1:]
        (cur,) = _runs_with_run_effect(1000 + t, 1)
        (slow,) = _runs_with_run_effect(2000 + t, 1, shift=0.25)
        aa = compare(base, cur, rules, resamples=0, history=history)
        assert aa.unit == "run" and aa.changes[0].baseline_n == 9 and aa.changes[0].current_n == 1
        alarms += aa.failed
        caught += compare(base, slow, rules, resamples=0, history=history).failed
    # Without history the same pairs alarm >= 25% of the time (test above); with it, at most alpha-ish.
    assert alarms / trials <= 0.1
    # 25% against runs that move 4%: the stated detectable change is ~15%, so nearly always caught.
    assert caught / trials >= 0.9


def test_recorded_runs_judged_against_their_history_do_not_alarm() -> None:
    """The eight real runs of tests/reports/data (medians 2.7 to 14 ms under a shared host's load):
    each run, as the current one, against another as the baseline and the other six as history."""
    import itertools
    import json
    from pathlib import Path

    doc = json.loads(
        (Path(__file__).parent / "data" / "aa_runs_host_startup.json").read_text(encoding="utf-8")
    )
    runs = [_run(r["run_id"], {("host", "startup.total"): np.array(r["startup.total"])}) for r in doc["runs"]]
    rules = parse_rules(["startup.total:5%"])
    pairs = list(itertools.permutations(range(len(runs)), 2))
    alarms = 0
    for i, j in pairs:
        history = [r for k, r in enumerate(runs) if k not in (i, j)]
        cmp = compare(runs[i], runs[j], rules, resamples=0, history=history)
        assert math.isfinite(cmp.changes[0].detectable)
        alarms += cmp.failed
    assert alarms <= 0.05 * len(pairs)


def test_runs_from_different_hosts_are_named_in_a_warning() -> None:
    cells = {("vm", "startup.total"): _timings(1, 1.0)}
    here, there, older = _run("a", cells), _run("b", cells), _run("c", cells)
    here.run["host"] = {"hostname": "ci-1"}
    there.run["host"] = {"hostname": "ci-1"}
    assert not any("hosts" in w for w in compare(here, there, resamples=0).warnings)
    older.run["host"] = {"hostname": "laptop"}
    (warning,) = [
        w for w in compare(here, there, resamples=0, history=[older, here]).warnings if "hosts" in w
    ]
    assert warning.startswith("the runs come from 2 hosts (ci-1, laptop)")


def test_a_guest_accelerator_that_changed_between_the_sides_is_named() -> None:
    # On a host whose KVM probe can time out, one run may get KVM and the next TCG: ~10x by itself.
    cells = {("vm", "startup.total"): _timings(1, 1.0)}
    tcg, kvm = _run("a", cells), _run("b", cells)
    tcg.run["drivers"] = {"vm": {"accel": "tcg"}}
    kvm.run["drivers"] = {"vm": {"accel": "kvm"}}
    assert [w for w in compare(tcg, kvm, resamples=0).warnings if "accelerator" in w] == [
        "the guests' accelerator differs between the sides (vm tcg vs kvm): their figures compare the "
        "accelerators (KVM, or TCG software emulation), not the code"
    ]
    assert not [w for w in compare(tcg, tcg, resamples=0).warnings if "accelerator" in w]


def test_a_compare_across_a_redefinition_says_so() -> None:
    cells = {("host", "disk.rand_read.latency.p50"): _timings(1, 1e-4), ("host", "cpu.x"): _timings(2, 1.0)}
    old = dataclasses.replace(_run("old", cells), schema_version=7)
    new = dataclasses.replace(_run("new", cells), schema_version=8)
    said = [w for w in compare(old, new).warnings if "redefined" in w]
    assert said == [
        "results schema 8 redefined 1 figure(s) these runs compare (disk.rand_read.latency.p50): disk "
        "latency is the total (fio lat), no longer the completion alone (clat); the runs span schemas "
        "7-8, so their changes there are by construction, not a regression"
    ]
    assert not [w for w in compare(new, _run("newer", cells)).warnings if "redefined" in w]
    assert not [w for w in compare(dataclasses.replace(old, schema_version=1), old).warnings if "disk" in w]


def _stolen(r: Results, share: float) -> Results:
    return dataclasses.replace(
        r, samples=[dataclasses.replace(s, metadata={**s.metadata, "host_steal": share}) for s in r.samples]
    )


def test_a_change_measured_under_different_host_steal_says_so() -> None:
    base = _run("base", {("host", "network.rtt"): _timings(1, 100e-6), ("host", "cpu.x"): _timings(2, 1.0)})
    slow = _run("slow", {("host", "network.rtt"): _timings(3, 300e-6), ("host", "cpu.x"): _timings(4, 1.0)})

    def said(b: Results, c: Results) -> list[str]:
        return [w for w in compare(b, c, resamples=0).warnings if "steal" in w]

    # only the flagged figure (the RTT tripled; cpu.x did not move) is named
    assert said(_stolen(base, 0.05), _stolen(slow, 0.21)) == [
        "1 flagged figure(s) ran while the host lost notably more of its CPU time to steal on their "
        "slower side (host/network.rtt: baseline 5%, current 21%): the host's hypervisor, not the change, "
        "may explain them; rerun before acting on them"
    ]
    # steal on the faster side, the same steal on both, or no readings (before schema 9): nothing
    assert said(_stolen(base, 0.21), _stolen(slow, 0.05)) == []
    assert said(_stolen(base, 0.2), _stolen(slow, 0.21)) == []
    assert said(base, slow) == []


def test_a_run_measured_beside_another_is_named() -> None:
    cells = {("vm", "startup.total"): _timings(1, 1.0)}
    base, cur = _run("a", cells), _run("b", {("vm", "startup.total"): _timings(2, 1.0)})
    assert not any("beside another" in w for w in compare(base, cur, resamples=200).warnings)
    cur.run["concurrent_runs"] = {"other": 4}
    (w,) = [w for w in compare(base, cur, resamples=200).warnings if "beside another" in w]
    assert w.startswith("b measured beside another isobench run on the same host")
