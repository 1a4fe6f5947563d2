"""A/B comparison of two runs and the regression gate behind ``isobench compare --fail-on``.

A change is reported only if it is statistically significant *and* at least a minimum effect size,
as asv and Firecracker's A/B tests do: timings are skewed and heavy-tailed, so significance comes
from the two-sided Mann-Whitney U test (no normality assumed) at ``alpha``, the size of the change
is the ratio of medians, and its interval is a bootstrap of that ratio.

Rules (``--fail-on``) follow pytest-benchmark's ``field:N%`` syntax: ``PATTERN:THRESHOLD`` where
PATTERN is a glob over metric names (``startup.*``) or over ``driver/metric`` when it contains a
"/" (``vm/startup.*``), and THRESHOLD is a relative change (``10%``) or an absolute one in the
metric's unit (``0.05``). A rule is violated by a metric it matches whose change is significant, in
the worse direction (from Sample.better), and larger than the threshold; for those metrics the
threshold is also the minimum effect the verdict uses, so verdict and gate always agree. A rule is
also violated when a metric it matches is in the baseline but missing from the current run (a cell
that now fails), and when it matches no metric at all (a typo must not pass silently).

Operating characteristics (measured by isobench.reports.power.gate_rates, asserted in
tests/reports/test_compare.py): a threshold of N% catches a true N% shift only about half the time
by construction, since the observed change is centred on the true one; to catch a 10% regression
reliably, gate at about 5%.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from isobench.errors import UsageError
from isobench.model import Better
from isobench.results import Results
from isobench.stats import ratio_ci
from scipy.stats import mannwhitneyu

from .cells import Cell, CellKey, group_cells

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_EFFECT",
    "Comparison",
    "MetricChange",
    "Rule",
    "assess",
    "compare",
    "min_repetitions",
    "parse_rule",
    "parse_rules",
]

DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 0.05

Verdict = Literal["faster", "slower", "changed", "no significant change", "insufficient data"]

_RULE = re.compile(
    r"^\s*(?P<pattern>[^:]+?)\s*:\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<pct>%)?\s*$"
)


@dataclass(frozen=True)
class Rule:
    pattern: str
    threshold: float  # a fraction when relative (0.1 = 10%), else in the metric's unit
    relative: bool
    text: str

    def matches(self, key: CellKey) -> bool:
        subject = f"{key.driver}/{key.metric}" if "/" in self.pattern else key.metric
        return fnmatch.fnmatchcase(subject, self.pattern)


def parse_rule(text: str) -> Rule:
    m = _RULE.match(text)
    if m is None:
        raise UsageError(
            f"--fail-on {text!r} is not PATTERN:THRESHOLD; write e.g. 'startup.*:10%' (relative) or "
            "'vm/startup.total:0.05' (absolute, in the metric's unit)"
        )
    num = float(m["num"])
    relative = m["pct"] is not None
    if relative and num >= 1000:
        raise UsageError(f"--fail-on {text!r}: threshold {num}% is not a sensible relative change")
    return Rule(m["pattern"], num / 100.0 if relative else num, relative, text.strip())


def parse_rules(texts: Iterable[str]) -> tuple[Rule, ...]:
    """Parse every ``--fail-on`` value; a value may hold several rules separated by commas."""
    return tuple(parse_rule(part) for t in texts for part in t.split(",") if part.strip())


@dataclass(frozen=True)
class Assessment:
    change: float  # relative change of the median, current/baseline - 1 (NaN if baseline median 0)
    delta: float  # absolute change of the median
    p_value: float
    verdict: Verdict
    regression: float  # change in the worse direction (relative; absolute if change is NaN), >= 0


def _min_p(n1: int, n2: int) -> float:
    """Smallest two-sided p the exact Mann-Whitney test can give: below alpha nothing can be shown."""
    return 2.0 / math.comb(n1 + n2, n1)


def assess(
    baseline: Sequence[float] | npt.NDArray[np.float64],
    current: Sequence[float] | npt.NDArray[np.float64],
    better: Better,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    absolute: bool = False,
) -> Assessment:
    """The decision for one metric; ``min_effect`` is a fraction, or an absolute delta if ``absolute``."""
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(current, dtype=float)
    mb, mc = float(np.median(b)), float(np.median(c))
    delta = mc - mb
    change = mc / mb - 1.0 if mb != 0 else math.nan
    if b.size < 2 or c.size < 2 or _min_p(b.size, c.size) >= alpha:
        return Assessment(change, delta, math.nan, "insufficient data", 0.0)
    if np.all(b == b[0]) and np.all(c == c[0]):
        # Constant on both sides (e.g. a 0/1 probe): the data is exact, no test needed.
        p = 0.0 if b[0] != c[0] else 1.0
    else:
        p = float(mannwhitneyu(c, b, alternative="two-sided", method="auto").pvalue)
        if math.isnan(p):
            p = 1.0
    size = abs(delta) if absolute or math.isnan(change) else abs(change)
    significant = p < alpha and size >= min_effect and delta != 0
    worse = (
        (better == "lower" and delta > 0)
        or (better == "higher" and delta < 0)
        or (better == "none" and delta != 0)
    )
    verdict: Verdict
    if not significant:
        verdict = "no significant change"
    elif better == "none":
        verdict = "changed"
    else:
        verdict = "slower" if worse else "faster"
    return Assessment(change, delta, p, verdict, size if (significant and worse) else 0.0)


@dataclass(frozen=True)
class MetricChange:
    key: CellKey
    unit: str
    better: Better
    baseline_n: int
    current_n: int
    baseline_median: float
    current_median: float
    change: float
    change_ci_low: float
    change_ci_high: float
    p_value: float
    verdict: Verdict
    failed_rules: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.failed_rules)


@dataclass(frozen=True)
class Comparison:
    changes: tuple[MetricChange, ...]
    #: Cells only in the baseline (e.g. now failing) and only in the current run.
    only_baseline: tuple[CellKey, ...]
    only_current: tuple[CellKey, ...]
    rules: tuple[Rule, ...]
    #: Rule violations that are not about one compared metric (missing metrics, rules matching none).
    rule_errors: tuple[str, ...] = ()
    alpha: float = DEFAULT_ALPHA
    min_effect: float = DEFAULT_MIN_EFFECT
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        """The gate's decision: any rule violated."""
        return bool(self.rule_errors) or any(c.failed for c in self.changes)

    def failures(self) -> list[str]:
        out = [
            f"{_name(c.key)}: {c.verdict} by {_pct(c.change)} (p={c.p_value:.2g}), violates "
            + ", ".join(c.failed_rules)
            for c in self.changes
            if c.failed
        ]
        return out + list(self.rule_errors)

    def to_frame(self) -> pd.DataFrame:
        """Rows for printing: metric, medians, change % with CI, verdict and the failed-rule flag."""
        rows = [
            {
                "driver": c.key.driver,
                "workload": c.key.workload,
                "metric": c.key.metric,
                "variant": c.key.variant,
                "unit": c.unit,
                "better": c.better,
                "baseline_n": c.baseline_n,
                "current_n": c.current_n,
                "baseline_median": c.baseline_median,
                "current_median": c.current_median,
                "change_pct": c.change * 100,
                "change_ci_low_pct": c.change_ci_low * 100,
                "change_ci_high_pct": c.change_ci_high * 100,
                "p_value": c.p_value,
                "verdict": c.verdict,
                "failed": c.failed,
                "failed_rules": ", ".join(c.failed_rules),
            }
            for c in self.changes
        ]
        return pd.DataFrame(rows, columns=_FRAME_COLUMNS)

    def rows(self) -> list[dict[str, str]]:
        """The same rows as display strings, e.g. change "+10.2% [+7.9%, +12.5%]"."""
        return [
            {
                "metric": _name(c.key),
                "baseline": _num(c.baseline_median, c.unit),
                "current": _num(c.current_median, c.unit),
                "change": f"{_pct(c.change)} [{_pct(c.change_ci_low)}, {_pct(c.change_ci_high)}]",
                "verdict": c.verdict,
                "failed": "FAIL" if c.failed else "",
            }
            for c in self.changes
        ]


_FRAME_COLUMNS = [
    "driver",
    "workload",
    "metric",
    "variant",
    "unit",
    "better",
    "baseline_n",
    "current_n",
    "baseline_median",
    "current_median",
    "change_pct",
    "change_ci_low_pct",
    "change_ci_high_pct",
    "p_value",
    "verdict",
    "failed",
    "failed_rules",
]


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:+.1f}%"


def _num(x: float, unit: str) -> str:
    return f"{x:.4g} {unit}".strip()


def _name(key: CellKey) -> str:
    return f"{key.driver}/{key.metric}" + (f" [{key.variant}]" if key.variant else "")


def min_repetitions(alpha: float) -> int:
    """Fewest repetitions per side with which the test can reach significance at ``alpha``."""
    n = 2
    while _min_p(n, n) >= alpha:
        n += 1
    return n


def _violates(rule: Rule, a: Assessment) -> bool:
    if a.verdict not in ("slower", "changed"):
        return False
    size = abs(a.change) if rule.relative and not math.isnan(a.change) else abs(a.delta)
    if rule.relative and math.isnan(a.change):
        return False  # a relative threshold on a zero baseline has no meaning; reported as warning
    return size > rule.threshold


def compare(
    baseline: Results,
    current: Results,
    rules: Sequence[Rule] = (),
    *,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    resamples: int = 10_000,
    seed: int | None = 0,
) -> Comparison:
    """Compare every cell present in both runs; decide the gate from ``rules``."""
    if not 0 < alpha < 1:
        raise UsageError(f"alpha {alpha} must be between 0 and 1, e.g. 0.01")
    if min_effect < 0:
        raise UsageError(f"minimum effect {min_effect} must not be negative, e.g. 0.05 for 5%")
    base_cells = group_cells(baseline)
    cur_cells = group_cells(current)
    common = [k for k in base_cells if k in cur_cells]
    changes: list[MetricChange] = []
    warnings: list[str] = []
    rule_errors: list[str] = []
    used: set[Rule] = set()
    for key in common:
        b, c = base_cells[key], cur_cells[key]
        matching = [r for r in rules if r.matches(key)]
        used.update(matching)
        change = _change(key, b, c, matching, alpha, min_effect, resamples, seed, warnings)
        changes.append(change)
        if matching and change.verdict == "insufficient data":
            # Fail closed: a gate that cannot judge a metric it was asked to guard must not pass.
            rule_errors.append(
                f"{_name(key)}: {change.baseline_n} vs {change.current_n} samples cannot show a "
                f"significant change at alpha={alpha}; run at least {min_repetitions(alpha)} "
                "repetitions per side"
            )
    only_base = tuple(k for k in base_cells if k not in cur_cells)
    only_cur = tuple(k for k in cur_cells if k not in base_cells)
    for key in only_base:
        for r in rules:
            if r.matches(key):
                used.add(r)
                rule_errors.append(
                    f"{_name(key)}: in the baseline but not measured in the current run (violates {r.text})"
                )
    for r in rules:
        if r not in used and not any(r.matches(k) for k in only_cur):
            rule_errors.append(f"rule {r.text!r} matches no metric in either run; check the pattern")
    if baseline.failures() or current.failures():
        warnings.append(
            f"failed cells: {len(baseline.failures())} in the baseline, {len(current.failures())} in "
            "the current run"
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
    )


def _change(
    key: CellKey,
    b: Cell,
    c: Cell,
    rules: Sequence[Rule],
    alpha: float,
    min_effect: float,
    resamples: int,
    seed: int | None,
    warnings: list[str],
) -> MetricChange:
    # A rule's threshold is the effect size that matters for its metrics (the strictest one wins).
    relative_rules = [r for r in rules if r.relative]
    absolute_rules = [r for r in rules if not r.relative]
    if relative_rules:
        a = assess(
            b.values, c.values, c.better, alpha=alpha, min_effect=min(r.threshold for r in relative_rules)
        )
    elif absolute_rules:
        a = assess(
            b.values,
            c.values,
            c.better,
            alpha=alpha,
            min_effect=min(r.threshold for r in absolute_rules),
            absolute=True,
        )
    else:
        a = assess(b.values, c.values, c.better, alpha=alpha, min_effect=min_effect)
    failed = tuple(r.text for r in rules if _violates(r, a))
    if any(r.relative for r in rules) and math.isnan(a.change):
        warnings.append(f"{key.driver}/{key.metric}: baseline median is 0, a relative rule cannot apply")
    r = ratio_ci(c.values, b.values, resamples=resamples, seed=seed)
    return MetricChange(
        key=key,
        unit=c.unit,
        better=c.better,
        baseline_n=len(b.values),
        current_n=len(c.values),
        baseline_median=float(np.median(b.values)),
        current_median=float(np.median(c.values)),
        change=a.change,
        change_ci_low=r.ci_low - 1.0,
        change_ci_high=r.ci_high - 1.0,
        p_value=a.p_value,
        verdict=a.verdict,
        failed_rules=failed,
    )
