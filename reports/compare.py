"""Comparison of two runs (or two sets of runs) and the regression gate behind
``isobench compare --fail-on``.

A change is reported only if it is statistically significant *and* at least a minimum effect size,
as asv and Firecracker's A/B tests do. Significance comes from an exact two-sided
Wilcoxon-Mann-Whitney test (midranks for ties, the permutation distribution enumerated: no normal
approximation, no normality assumed), corrected with Holm over every metric the ``--fail-on`` rules
match (see :mod:`isobench.reports.gate`), so ``--alpha`` is the chance that comparing two runs with no
real difference raises any alarm. The size of the change is the ratio of medians, with a bootstrap
interval (none when a side has one value).

With one run per side the test's unit is the sample, and run-to-run variation (a different boot, a
different page cache) is not counted: it can only be judged by repeating runs. With several runs on
a side (``compare(baseline=[r1, r2, ...], current=[...])``) the unit is the run: each run counts with
its median, so two sides whose runs differ no more than runs do raise no alarm. Few runs then mean
few values: 5 runs per side can at best reach p=0.008 per metric.

Rules (``--fail-on``) follow pytest-benchmark's ``field:N%`` syntax, ``PATTERN:THRESHOLD`` where
PATTERN is a glob over metric names (``startup.*``) or over ``driver/metric`` when it contains a "/"
(``vm/startup.*``), and THRESHOLD a relative change (``10%``) or an absolute one in the metric's unit
(``0.05``). A rule is violated by a metric it matches whose change is significant, in the worse
direction (from Sample.better), and larger than the threshold (the threshold is also the minimum
effect for those metrics, so verdict and gate agree); by a metric it matches that is in the baseline
but missing from the current run; and by matching no metric at all. A gated metric the data cannot
judge (too few values for any p below the family's level) is "cannot judge": exit 3, not a pass.

Operating characteristics (isobench.reports.power.gate_rates, asserted in tests/reports/test_compare.py):
a false alarm needs an exact p below alpha after Holm over the gated figures, so A/A compares (no
change beyond the variation the test's unit sees) alarm at most alpha of the time however many
figures are gated (simulated: 4% over 25 figures; 78% when each is tested alone at alpha); a
threshold of N% catches a true N% shift only about half the time by construction (the observed change
is centred on the true one), so to catch a 10% regression reliably, gate at about 5%; every verdict
states the change it could have detected (80% power) at its n and noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from isobench.errors import UsageError
from isobench.exact import PREDICTION_MIN_RUNS, prediction_test, rank_sum_test
from isobench.model import Better
from isobench.results import Results, redefinitions
from isobench.stats import ratio_ci

from .cells import NATIVE, Cell, CellKey, group_cells, steal_may_explain
from .confounds import confounds
from .gate import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    Comparison,
    Evidence,
    MetricChange,
    Rule,
    decide,
    parse_rule,
    parse_rules,
    unmatched_rules,
)
from .units import human_pct

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_EFFECT",
    "Comparison",
    "MetricChange",
    "Rule",
    "assess",
    "compare",
    "evidence",
    "min_repetitions",
    "parse_rule",
    "parse_rules",
    "prediction_evidence",
    "sigma_log",
]

ArrayLike = Sequence[float] | npt.NDArray[np.float64]
#: The verdicts of a change with a direction.
_MOVED = ("faster", "slower")


def sigma_log(*sides: ArrayLike) -> float:
    """Robust noise of the values in log space (1.4826 x MAD about each side's median, pooled);
    relative MAD when a value is not positive."""
    devs: list[float] = []
    for side in sides:
        arr = np.asarray(side, dtype=float)
        if arr.size < 2:
            continue
        if np.all(arr > 0):
            logs = np.log(arr)
            devs.extend(np.abs(logs - np.median(logs)))
        else:
            med = float(np.median(arr))
            scale = abs(med) if med != 0 else max(float(np.max(np.abs(arr))), 1e-300)
            devs.extend(np.abs(arr - med) / scale)
    return 1.4826 * float(np.median(devs)) if devs else math.nan


def evidence(
    key: CellKey,
    unit: str,
    better: Better,
    baseline: ArrayLike,
    current: ArrayLike,
    *,
    resamples: int = 10_000,
    seed: int | None = 0,
) -> Evidence:
    """One metric's two-sample evidence: medians, change with its CI, the exact test, the noise."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(current, dtype=float)
    mb, mc = float(np.median(b)), float(np.median(c))
    low, high, confidence = _change_interval(b, c, resamples, seed)
    pooled = np.concatenate([b, c])
    return Evidence(
        key=key,
        unit=unit,
        better=better,
        baseline_n=int(b.size),
        current_n=int(c.size),
        baseline_median=mb,
        current_median=mc,
        change=mc / mb - 1.0 if mb != 0 else math.nan,
        delta=mc - mb,
        change_ci_low=low,
        change_ci_high=high,
        change_ci_confidence=confidence,
        test=rank_sum_test(c, b),
        sigma_log=sigma_log(b, c),
        identical=bool(b.size >= 2 and c.size >= 2 and np.all(pooled == pooled[0])),
    )


def prediction_evidence(key: CellKey, unit: str, better: Better, reference: ArrayLike, x: float) -> Evidence:
    """One current run's median ``x`` against the medians of the reference runs (the baseline run and
    its ``--history``): :func:`isobench.exact.prediction_test`; the noise is the reference's plain
    standard deviation of logs, the baseline median the reference's median."""
    ref = np.asarray(reference, dtype=float)
    mb = float(np.median(ref))
    positive = bool(np.all(ref > 0) and x > 0)
    return Evidence(
        key=key,
        unit=unit,
        better=better,
        baseline_n=int(ref.size),
        current_n=1,
        baseline_median=mb,
        current_median=x,
        change=x / mb - 1.0 if mb != 0 else math.nan,
        delta=x - mb,
        change_ci_low=math.nan,
        change_ci_high=math.nan,
        change_ci_confidence=math.nan,
        test=prediction_test(ref, x) if positive else rank_sum_test([x], ref),
        sigma_log=float(np.std(np.log(ref), ddof=1)) if positive else sigma_log(ref),
        prediction=positive,
        identical=bool(np.all(ref == x)),
    )


def _change_interval(
    b: np.ndarray, c: np.ndarray, resamples: int, seed: int | None
) -> tuple[float, float, float]:
    """Bootstrap interval of the relative change of the medians (the quantity the verdict and the
    table show) and its nominal confidence; none with one value on a side or ``resamples=0`` (power
    simulations skip its cost). Not the rank test's own (Hodges-Lehmann) interval: that one estimates
    a shift, which differs from the change of medians when the two sides' shapes differ (bimodal
    start-up phases do), and a point outside its interval would confuse more than it helps."""
    if resamples <= 0:
        return math.nan, math.nan, math.nan
    r = ratio_ci(c, b, resamples=resamples, seed=seed)
    if math.isnan(r.ci_low):
        return math.nan, math.nan, math.nan
    return r.ci_low - 1.0, r.ci_high - 1.0, 0.95


def assess(
    baseline: ArrayLike,
    current: ArrayLike,
    better: Better,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    absolute: bool = False,
) -> MetricChange:
    """The decision for one metric on its own (a family of one): ``min_effect`` is a fraction, or an
    absolute delta if ``absolute``. ``.regression`` of the old API is ``failed``/``change`` now."""
    key = CellKey("", "metric", "", "")
    rule = Rule("metric", min_effect, not absolute, f"metric:{min_effect}")
    e = evidence(key, "", better, baseline, current, resamples=0)
    (change,) = decide([e], [rule], alpha=alpha, min_effect=min_effect, warnings=[])
    return change


def min_repetitions(alpha: float, metrics: int = 1) -> int:
    """Fewest values per side with which the exact test can reach significance at ``alpha`` in a
    family of ``metrics`` (no ties): 2/C(2n, n) < alpha/metrics."""
    n = 2
    while 2.0 / math.comb(2 * n, n) >= alpha / metrics:
        n += 1
    return n


def _as_runs(side: Results | Sequence[Results]) -> list[Results]:
    return [side] if isinstance(side, Results) else list(side)


def _side_cells(runs: Sequence[Results], by_run: bool) -> dict[CellKey, tuple[Cell, tuple[float, ...]]]:
    """Per cell: one Cell for its unit/direction and the values the test uses (samples, or the
    median of each run that measured it when the run is the unit)."""
    out: dict[CellKey, tuple[Cell, list[float]]] = {}
    for run in runs:
        for key, cell in group_cells(run).items():
            values = [float(np.median(cell.values))] if by_run else list(cell.values)
            if key in out:
                out[key][1].extend(values)
            else:
                out[key] = (cell, values)
    return {k: (cell, tuple(v)) for k, (cell, v) in out.items()}


def compare(
    baseline: Results | Sequence[Results],
    current: Results | Sequence[Results],
    rules: Sequence[Rule] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    resamples: int = 10_000,
    seed: int | None = 0,
    history: Sequence[Results] = (),
) -> Comparison:
    """Compare every cell present on both sides; decide the gate from ``rules``. With more than one
    run on either side the run is the unit of the test (each run counts with its median).

    ``history``: earlier runs of the baseline's configuration on the same host, joining the baseline
    side as reference runs, so the run is the unit and run-to-run variation counts even with one
    run per side: one current run is judged by where it falls against the reference runs' spread
    (:func:`prediction_evidence`), several by the rank test over runs."""
    _check_options(alpha, min_effect)
    base_runs, cur_runs = _as_runs(baseline), _as_runs(current)
    if not base_runs or not cur_runs:
        raise UsageError("compare needs at least one run on each side")
    by_run = len(base_runs) > 1 or len(cur_runs) > 1 or bool(history)
    base_cells = _side_cells([*base_runs, *history], by_run)
    cur_cells = _side_cells(cur_runs, by_run)
    common = [k for k in base_cells if k in cur_cells]
    evidences = []
    for k in common:
        cell, ref = base_cells[k][0], base_cells[k][1]
        values = cur_cells[k][1]
        if by_run and len(values) == 1 and len(ref) >= PREDICTION_MIN_RUNS:
            evidences.append(prediction_evidence(k, cell.unit, cell.better, ref, values[0]))
        else:
            evidences.append(evidence(k, cell.unit, cell.better, ref, values, resamples=resamples, seed=seed))
    warnings: list[str] = []
    changes = decide(evidences, rules, alpha=alpha, min_effect=min_effect, warnings=warnings)
    only_base = tuple(k for k in base_cells if k not in cur_cells)
    only_cur = tuple(k for k in cur_cells if k not in base_cells)
    rule_errors = [
        f"{k.driver}/{k.metric}: in the baseline but not measured in the current run (violates {r.text})"
        for k in only_base
        for r in rules
        if r.matches(k)
    ]
    rule_errors += unmatched_rules(rules, [*base_cells, *cur_cells])
    runs = (*base_runs, *cur_runs, *history)
    hosts = sorted({_hostname(r) for r in runs} - {""})
    if len(hosts) > 1:
        warnings.append(
            f"the runs come from {len(hosts)} hosts ({', '.join(hosts[:4])}): a comparison across "
            "machines measures the machines, not the change"
        )
    warnings += confounds([*base_runs, *history], cur_runs)
    warnings += redefinitions((r.schema_version for r in runs), (k.metric for k in common))
    warnings += _held_back(changes, _side_steal([*base_runs, *history]), _side_steal(cur_runs))
    warnings += _native_moved(changes)
    if beside := sorted(r.run_id for r in runs if r.run.get("concurrent_runs")):
        warnings.append(
            f"{', '.join(beside)} measured beside another isobench run on the same host (the report's "
            "warnings name it): a change there may be that run's load, not the code's"
        )
    base_failed = sum(len(r.failures()) for r in base_runs)
    cur_failed = sum(len(r.failures()) for r in cur_runs)
    if base_failed or cur_failed:
        warnings.append(f"failed cells: {base_failed} in the baseline, {cur_failed} in the current run")
    if not by_run and any(c.gated and math.isfinite(c.p_adjusted) for c in changes):
        warnings.append(
            "one run per side: the test's unit is the sample, so run-to-run variation is not counted; "
            "give earlier baseline runs (--history DIR) or several runs per side (-b D1 -b D2 ...) "
            "to count it"
        )
    return Comparison(
        changes=tuple(changes),
        only_baseline=only_base,
        only_current=only_cur,
        rules=tuple(rules),
        rule_errors=tuple(rule_errors),
        alpha=alpha,
        min_effect=min_effect,
        warnings=tuple(warnings),
        unit="run" if by_run else "sample",
    )


def _side_steal(runs: Sequence[Results]) -> dict[CellKey, float]:
    """Per cell, the median over the side's runs of each run's median host steal (NaN: none)."""
    per: dict[CellKey, list[float]] = {}
    for run in runs:
        for key, cell in group_cells(run).items():
            if not math.isnan(cell.host_steal):
                per.setdefault(key, []).append(cell.host_steal)
    return {k: float(np.median(v)) for k, v in per.items()}


def _held_back(
    changes: Sequence[MetricChange], base: dict[CellKey, float], cur: dict[CellKey, float]
) -> list[str]:
    """The figures the comparison flags (a change, or a failed rule) whose slower side ran while the
    host lost notably more of its CPU time to steal than the other: the host may explain them."""
    hit = []
    for c in changes:
        if not (c.failed or c.verdict in ("slower", "faster", "changed")):
            continue
        a, b = base.get(c.key, math.nan), cur.get(c.key, math.nan)
        if c.verdict == "slower":
            explains = steal_may_explain(b, a)
        elif c.verdict == "faster":
            explains = steal_may_explain(a, b)
        else:  # no direction: either side's steal may have moved it
            explains = steal_may_explain(a, b) or steal_may_explain(b, a)
        if explains:
            hit.append(f"{c.key.driver}/{c.key.metric}: baseline {a:.0%}, current {b:.0%}")
    if not hit:
        return []
    return [
        f"{len(hit)} flagged figure(s) ran while the host lost notably more of its CPU time to steal "
        f"on their slower side ({'; '.join(hit[:3])}{'; ...' if len(hit) > 3 else ''}): the host's "
        "hypervisor, not the change, may explain them; rerun before acting on them"
    ]


def _native_moved(changes: Sequence[MetricChange]) -> list[str]:
    """Changes of other drivers that native's own figure shares in direction: a faster or slower
    host moves every driver (two default runs of one machine at different hours: every CPU line
    +15-23%, the host's +18%), which a comparison of runs measured apart cannot tell from the code."""
    moved = {c.key.without_driver(): c for c in changes if c.key.driver == NATIVE and c.verdict in _MOVED}
    shared = [
        c
        for c in changes
        if c.key.driver != NATIVE
        and c.verdict in _MOVED
        and (n := moved.get(c.key.without_driver())) is not None
        and n.verdict == c.verdict
    ]
    if not shared:
        return []
    natives = sorted({c.key.without_driver() for c in shared})
    examples = "; ".join(f"{moved[k].key.metric} {human_pct(moved[k].change, 2)}" for k in natives[:3]) + (
        "; ..." if len(natives) > 3 else ""
    )
    return [
        f"native ({NATIVE}) moved the same way on {len(natives)} figure(s) ({examples}), as "
        f"{len(shared)} flagged change(s) of other drivers did: the host itself may have been faster or "
        "slower, not the isolation; an A/B run (isobench run --ab, compare --ab) alternates both sides in "
        "one run and cannot be misled that way"
    ]


def _hostname(run: Results) -> str:
    host = run.run.get("host")
    return str(host.get("hostname") or "") if isinstance(host, dict) else ""


def _check_options(alpha: float, min_effect: float) -> None:
    if not 0 < alpha < 1:
        raise UsageError(f"alpha {alpha} must be between 0 and 1, e.g. 0.05")
    if min_effect < 0:
        raise UsageError(f"minimum effect {min_effect} must not be negative, e.g. 0.05 for 5%")
