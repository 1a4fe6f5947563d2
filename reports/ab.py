"""A/B in one run: two configurations measured interleaved round by round, compared pair by pair.

The runner records each configuration as the workload param ``ab=<label>`` on every sample (so the
two variants are separate cells) and the round index as ``metadata["round"]``; ``run["ab"]["labels"]``
names the variants. Within a round A and B ran minutes apart on the same machine state, so the
per-round log ratio log(B/A) cancels slow drift that a two-sample test would count as noise: the test
is the exact Wilcoxon signed-rank test over rounds (a sign-flip permutation test of the ranks, ties
with midranks), and the ratio B/A is the Hodges-Lehmann estimate of the per-round ratio with the
exact signed-rank interval. Metrics with a non-positive value are compared by differences instead.
Verdicts, Holm over the gated family and exit codes are those of :mod:`isobench.reports.gate`:
"current" is B, "baseline" is A.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from isobench.errors import UsageError
from isobench.exact import ExactTest, paired_change, signed_rank_test
from isobench.model import Sample
from isobench.results import Results

from .cells import CellKey, variant_of
from .compare import _check_options
from .gate import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT, Comparison, Evidence, Rule, decide, unmatched_rules

__all__ = ["AB_PARAM", "ab_labels", "compare_ab"]

#: The workload param that names a sample's configuration in an A/B run.
AB_PARAM = "ab"


def ab_labels(results: Results) -> list[str]:
    """The variant labels of an A/B run: from run["ab"]["labels"], else from the samples."""
    info = results.run.get("ab")
    if isinstance(info, dict) and isinstance(info.get("labels"), list):
        return [str(x) for x in info["labels"]]
    seen: dict[str, None] = {}
    for s in results.measured():
        if AB_PARAM in s.params:
            seen.setdefault(str(s.params[AB_PARAM]), None)
    return list(seen)


_Rounds = dict[int, list[float]]


def _round_of(s: Sample) -> int:
    r = s.metadata.get("round", s.repetition)
    return int(r)


def compare_ab(
    results: Results,
    a_label: str,
    b_label: str,
    rules: Sequence[Rule] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> Comparison:
    """B against A, per driver/workload/metric/variant, paired by round."""
    _check_options(alpha, min_effect)
    labels = ab_labels(results)
    for label in (a_label, b_label):
        if label not in labels:
            known = ", ".join(labels) or "none: not an A/B run"
            raise UsageError(f"A/B label {label!r} is not in run {results.run_id}; its labels: {known}")
    if a_label == b_label:
        raise UsageError("an A/B comparison needs two different labels")
    acc: dict[CellKey, dict[str, _Rounds]] = {}
    meta: dict[CellKey, Sample] = {}
    for s in results.measured():
        label = str(s.params.get(AB_PARAM))
        if AB_PARAM not in s.params or label not in (a_label, b_label) or s.value is None:
            continue
        rest = {k: v for k, v in s.params.items() if k != AB_PARAM}
        key = CellKey(s.workload, s.metric, variant_of(rest), s.driver)
        acc.setdefault(key, {}).setdefault(label, {}).setdefault(_round_of(s), []).append(s.value)
        meta.setdefault(key, s)
    evidences: list[Evidence] = []
    only_a: list[CellKey] = []
    only_b: list[CellKey] = []
    for key in sorted(acc):
        sides = acc[key]
        if b_label not in sides:
            only_a.append(key)
            continue
        if a_label not in sides:
            only_b.append(key)
            continue
        evidences.append(_paired_evidence(key, meta[key], sides[a_label], sides[b_label]))
    warnings: list[str] = []
    changes = decide(evidences, rules, alpha=alpha, min_effect=min_effect, warnings=warnings)
    rule_errors = [
        f"{k.driver}/{k.metric}: measured for {a_label} but not for {b_label} (violates {r.text})"
        for k in only_a
        for r in rules
        if r.matches(k)
    ]
    rule_errors += unmatched_rules(rules, acc)
    unpaired = [e.key for e in evidences if e.baseline_n == 0]
    if unpaired:
        warnings.append(f"{len(unpaired)} figure(s) have no round measured for both {a_label} and {b_label}")
    return Comparison(
        changes=tuple(changes),
        only_baseline=tuple(only_a),
        only_current=tuple(only_b),
        rules=tuple(rules),
        rule_errors=tuple(rule_errors),
        alpha=alpha,
        min_effect=min_effect,
        warnings=tuple(warnings),
        unit="round",
    )


def _paired_evidence(key: CellKey, first: Sample, a: _Rounds, b: _Rounds) -> Evidence:
    rounds = sorted(set(a) & set(b))
    # Several values of one variant in one round (a workload measuring twice) count as their median.
    va = np.array([float(np.median(a[r])) for r in rounds])
    vb = np.array([float(np.median(b[r])) for r in rounds])
    n = len(rounds)
    ma = float(np.median(va)) if n else math.nan
    mb = float(np.median(vb)) if n else math.nan
    pc = paired_change(va, vb)
    d = pc.d
    delta = float(np.median(vb - va)) if n else math.nan
    test = signed_rank_test(d) if n else ExactTest(math.nan, 1.0, True)
    # The paired test's noise is that of the per-round (log) differences, not of either side.
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) if n else math.nan
    if not pc.log_scale and n:
        noise /= pc.scale
    pooled = np.concatenate([va, vb])
    return Evidence(
        key=key,
        unit=first.unit,
        better=first.better,
        baseline_n=n,
        current_n=n,
        baseline_median=ma,
        current_median=mb,
        change=pc.change,
        delta=delta,
        change_ci_low=pc.low,
        change_ci_high=pc.high,
        change_ci_confidence=pc.confidence,
        test=test,
        sigma_log=noise,
        paired=True,
        identical=bool(n >= 2 and np.all(pooled == pooled[0])),
    )
