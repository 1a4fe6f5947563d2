"""The regression gate's decision over a family of metrics: rules, verdicts, exit codes, the CI-log
summary. The tests feeding it live in :mod:`isobench.reports.compare` (two runs or two sets of runs)
and :mod:`isobench.reports.ab` (two variants of one A/B run, paired by round).

Decision, per metric: a verdict ("slower", "faster", "changed") needs the exact test's p-value, after
Holm's correction over its family, below ``alpha`` *and* the observed change at least the metric's
minimum effect (its strictest rule's threshold, else ``min_effect``). The families are the gated
metrics (every metric some ``--fail-on`` rule matches) and, separately, the rest; so ``alpha`` is the
chance that a compare of two runs with no real difference raises any alarm at all (the family-wise
error rate), not a per-metric rate. A metric whose sizes and ties cannot reach a p-value small enough
(3 vs 3 samples: 0.1 at best) is "cannot judge" and leaves the family (Tarone), so it neither passes
silently nor dilutes the others.

Exit codes of ``isobench compare``: 1 when a rule is violated (a gated metric regressed beyond its
threshold, a gated metric of the baseline is missing, a rule matches nothing); else 3 when a gated
metric could not be judged; else 0.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

import pandas as pd
from isobench.errors import UsageError
from isobench.exact import ExactTest, min_detectable_change, prediction_detectable, tarone_holm
from isobench.model import Better

from .cells import CellKey
from .units import human, plural

__all__ = [
    "CANNOT_JUDGE",
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_EFFECT",
    "EXIT_CANNOT_JUDGE",
    "EXIT_FAILED",
    "Comparison",
    "Evidence",
    "Figure",
    "MetricChange",
    "Rule",
    "decide",
    "parse_rule",
    "parse_rules",
]

#: Family-wise: the chance that a compare with no real change raises any alarm.
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_EFFECT = 0.05
EXIT_FAILED = 1
EXIT_CANNOT_JUDGE = 3
Verdict = Literal["faster", "slower", "changed", "no significant change", "cannot judge"]
CANNOT_JUDGE: Verdict = "cannot judge"
_CHANGED = ("faster", "slower", "changed")

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
class Figure:
    """One compared metric: where, how many values per side, medians and the relative change."""

    key: CellKey
    unit: str
    better: Better
    baseline_n: int
    current_n: int
    baseline_median: float
    current_median: float
    change: float  # relative change current/baseline - 1 (NaN if the baseline median is 0)
    change_ci_low: float
    change_ci_high: float
    #: The confidence the change interval has: nominal 95% for the bootstrap of two runs; exact for
    #: an A/B run's signed-rank interval (93.8% at 5 rounds); NaN without an interval.
    change_ci_confidence: float


@dataclass(frozen=True)
class Evidence(Figure):
    """What one metric's test saw, before the family decision."""

    delta: float  # absolute change of the median
    test: ExactTest
    sigma_log: float  # noise of log(values), for the detectable effect
    paired: bool = False
    #: One current run against reference runs (``compare --history``): :func:`prediction_test`.
    prediction: bool = False
    #: Every value on both sides is the same: nothing changed and nothing to test.
    identical: bool = False


@dataclass(frozen=True)
class MetricChange(Figure):
    p_value: float  # raw, two-sided, exact
    verdict: Verdict
    failed_rules: tuple[str, ...] = ()
    p_adjusted: float = math.nan  # Holm over the metric's family; NaN when it cannot be judged
    min_p: float = math.nan  # the smallest p its sizes and ties allow
    #: Smallest true relative change this comparison would flag 80% of the time (inf: none).
    detectable: float = math.nan
    gated: bool = False

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
    #: What one value of a test is: a "sample", a "run" (several runs per side) or a "round" (A/B).
    unit: str = "sample"

    @property
    def failed(self) -> bool:
        """The gate's decision: any rule violated."""
        return bool(self.rule_errors) or any(c.failed for c in self.changes)

    @property
    def cannot_judge(self) -> tuple[MetricChange, ...]:
        """Gated metrics the data cannot decide (too few values for the test at alpha)."""
        return tuple(c for c in self.changes if c.gated and c.verdict == CANNOT_JUDGE)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_FAILED
        return EXIT_CANNOT_JUDGE if self.cannot_judge else 0

    def failures(self) -> list[str]:
        out = [
            f"{_name(c.key)}: {c.verdict} by {_pct(c.change)} (p={c.p_value:.2g}, Holm {c.p_adjusted:.2g}), "
            "violates " + ", ".join(c.failed_rules)
            for c in self.changes
            if c.failed
        ]
        return out + list(self.rule_errors)

    def counts(self) -> str:
        """One line: how many figures were compared and what became of them."""
        by: Counter[str] = Counter(c.verdict for c in self.changes)
        parts = [f"{by[v]} {v}" for v in ("slower", "faster", "changed") if by[v]]
        parts += [f"{by['no significant change']} no significant change", f"{by[CANNOT_JUDGE]} cannot judge"]
        line = f"{plural(len(self.changes), 'figure')} compared (unit: {self.unit}): " + ", ".join(parts)
        if self.only_baseline or self.only_current:
            line += f"; {len(self.only_baseline)} only in the baseline, {len(self.only_current)} only in the current"
        return line

    def quiet(self) -> str:
        """What a compare that shows no changed figure says instead: "nothing changed" only over
        the figures it could judge."""
        stuck = sum(c.verdict == CANNOT_JUDGE for c in self.changes)
        if not self.changes:
            return "no figure measured on both sides"
        if stuck == len(self.changes):
            return "no figure could be judged (too few values on one side or both)"
        if stuck:
            judged = len(self.changes) - stuck
            return f"no figure changed significantly of the {judged} judged ({stuck} could not be)"
        return "no figure changed significantly"

    def rule_summaries(self) -> list[str]:
        """One line per rule: what it matched, what failed, passed, and could not be judged, and why."""
        out = []
        for rule in self.rules:
            matched = [c for c in self.changes if rule.matches(c.key)]
            failed = sum(rule.text in c.failed_rules for c in matched)
            stuck = [c for c in matched if c.verdict == CANNOT_JUDGE]
            line = (
                f"rule {rule.text!r}: {plural(len(matched), 'figure')}, {failed} failed, "
                f"{len(matched) - failed - len(stuck)} passed, {len(stuck)} cannot judge"
            )
            if stuck:
                line += " (" + _why_stuck(stuck, self.alpha) + ")"
            judged = sorted((c for c in matched if math.isfinite(c.detectable)), key=lambda c: c.detectable)
            if judged:
                typical = judged[len(judged) // 2].detectable
                worst = judged[-1]
                line += (
                    f"; detectable change (80% power): {typical * 100:.0f}% typical, "
                    f"{worst.detectable * 100:.0f}% worst ({_name(worst.key)})"
                )
            out.append(line)
        return out

    def shown(self, *, show_all: bool = False) -> tuple[MetricChange, ...]:
        """The rows a CI log needs: changed or failed figures (every figure with ``show_all``)."""
        if show_all:
            return self.changes
        return tuple(c for c in self.changes if c.failed or c.verdict in _CHANGED)

    def to_frame(self) -> pd.DataFrame:
        """Every row for export: medians, change % with CI, p-values, detectable change, verdict."""
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
                "p_adjusted": c.p_adjusted,
                "detectable_pct": c.detectable * 100,
                "verdict": c.verdict,
                "gated": c.gated,
                "failed": c.failed,
                "failed_rules": ", ".join(c.failed_rules),
            }
            for c in self.changes
        ]
        return pd.DataFrame(rows, columns=_FRAME_COLUMNS)

    def rows(self, *, show_all: bool = True) -> list[dict[str, str]]:
        """Display strings, e.g. change "+10.2% [+7.9%, +12.5%]"."""
        return [
            {
                "metric": _name(c.key),
                "baseline": f"{_num(c.baseline_median, c.unit)} (n={c.baseline_n})",
                "current": f"{_num(c.current_median, c.unit)} (n={c.current_n})",
                "change": _change_text(c),
                "p": "n/a" if math.isnan(c.p_adjusted) else f"{c.p_adjusted:.2g}",
                "detectable": _detectable(c.detectable),
                "verdict": c.verdict,
                "failed": "FAIL" if c.failed else "",
            }
            for c in self.shown(show_all=show_all)
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
    "p_adjusted",
    "detectable_pct",
    "verdict",
    "gated",
    "failed",
    "failed_rules",
]


def _why_stuck(stuck: Sequence[MetricChange], alpha: float) -> str:
    sizes = Counter((c.baseline_n, c.current_n) for c in stuck).most_common()
    parts = [f"{count} at n={n1} vs {n2}" for (n1, n2), count in sizes[:3]]
    if len(sizes) > 3:
        parts.append(f"{sum(c for _, c in sizes[3:])} at other sizes")
    testable = [c.min_p for c in stuck if c.baseline_n >= 2 and c.current_n >= 2]
    reason = (
        f"smallest possible p {min(testable):.2g}, not below the family's level at alpha={alpha:g}"
        if testable
        else "one value per side cannot be tested"
    )
    return ", ".join(parts) + f": {reason}; measure more repetitions"


def _change_text(c: Figure) -> str:
    if math.isnan(c.change_ci_low):
        return _pct(c.change)
    text = f"{_pct(c.change)} [{_pct(c.change_ci_low)}, {_pct(c.change_ci_high)}]"
    if c.change_ci_confidence < 0.95 - 1e-9:
        text += f" {c.change_ci_confidence * 100:.3g}%"
    return text


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:+.1f}%"


def _detectable(x: float) -> str:
    if math.isnan(x):
        return ""
    return "none" if math.isinf(x) else f">={x * 100:.0f}%"


def _num(x: float, unit: str) -> str:
    """A median in its best unit, 4 significant digits ("152.8 us", not "0.0001528 seconds")."""
    return human(x, unit, 4)


def _name(key: CellKey) -> str:
    return f"{key.driver}/{key.metric}" + (f" [{key.variant}]" if key.variant else "")


def _effect(rules: Sequence[Rule], min_effect: float) -> tuple[float, bool]:
    """The metric's minimum effect and whether it is absolute: its strictest relative rule wins."""
    relative = [r.threshold for r in rules if r.relative]
    if relative:
        return min(relative), False
    absolute = [r.threshold for r in rules if not r.relative]
    if absolute:
        return min(absolute), True
    return min_effect, False


def _violates(rule: Rule, e: Evidence, verdict: Verdict) -> bool:
    if verdict not in ("slower", "changed"):
        return False
    if rule.relative and math.isnan(e.change):
        return False  # a relative threshold on a zero baseline has no meaning; reported as warning
    size = abs(e.change) if rule.relative else abs(e.delta)
    return size > rule.threshold


def _direction(better: Better, delta: float) -> Verdict:
    if better == "none":
        return "changed"
    worse = (better == "lower" and delta > 0) or (better == "higher" and delta < 0)
    return "slower" if worse else "faster"


def _detectable_change(e: Evidence, level: float, threshold: float) -> float:
    if e.prediction:
        return prediction_detectable(e.sigma_log, e.baseline_n, level=level, threshold=threshold)
    return min_detectable_change(
        e.sigma_log, e.baseline_n, e.current_n, level=level, threshold=threshold, paired=e.paired
    )


def decide(
    evidence: Sequence[Evidence],
    rules: Sequence[Rule],
    *,
    alpha: float,
    min_effect: float,
    warnings: list[str],
) -> list[MetricChange]:
    """Verdicts for every metric: Holm (over what can be judged) within the gated and ungated families."""
    matching = [[r for r in rules if r.matches(e.key)] for e in evidence]
    testable = [
        i
        for i, e in enumerate(evidence)
        if not e.identical
        and e.baseline_n >= (1 if e.paired else 2)
        and e.current_n >= (1 if e.paired or e.prediction else 2)
    ]
    adjusted = [math.nan] * len(evidence)
    judgeable = [False] * len(evidence)
    levels = [0.0] * len(evidence)
    for gated in (True, False):
        family = [
            i for i in testable if bool(matching[i]) == gated and not math.isnan(evidence[i].test.p_value)
        ]
        adj, ok = tarone_holm(
            [evidence[i].test.p_value for i in family], [evidence[i].test.min_p for i in family], alpha
        )
        size = max(1, sum(ok))
        for i, a, j in zip(family, adj, ok, strict=True):
            adjusted[i], judgeable[i], levels[i] = a, j, alpha / size
    out: list[MetricChange] = []
    zero_base: list[str] = []
    for i, e in enumerate(evidence):
        threshold, absolute = _effect(matching[i], min_effect)
        verdict: Verdict
        if e.identical:
            verdict = "no significant change"
        elif not judgeable[i]:
            verdict = CANNOT_JUDGE
        else:
            effect = abs(e.delta) if absolute or math.isnan(e.change) else abs(e.change)
            significant = adjusted[i] < alpha and effect >= threshold and e.delta != 0
            verdict = _direction(e.better, e.delta) if significant else "no significant change"
        if any(r.relative for r in matching[i]) and math.isnan(e.change):
            zero_base.append(_name(e.key))
        detectable = (
            _detectable_change(e, levels[i], 0.0 if absolute else threshold)
            if judgeable[i]
            else (math.nan if e.identical else math.inf)
        )
        out.append(
            MetricChange(
                **{f.name: getattr(e, f.name) for f in fields(Figure)},
                p_value=e.test.p_value,
                verdict=verdict,
                failed_rules=tuple(r.text for r in matching[i] if _violates(r, e, verdict)),
                p_adjusted=adjusted[i],
                min_p=e.test.min_p,
                detectable=detectable,
                gated=bool(matching[i]),
            )
        )
    if zero_base:
        warnings.append(
            f"{len(zero_base)} gated figure(s) have a baseline median of 0, so a relative rule cannot "
            f"apply to them (e.g. {', '.join(zero_base[:3])}); gate them with an absolute threshold"
        )
    return out


def unmatched_rules(rules: Sequence[Rule], keys: Iterable[CellKey]) -> list[str]:
    """A rule that matches no metric at all is a typo, and must not pass silently."""
    keys = list(keys)
    return [
        f"rule {r.text!r} matches no metric in either run; check the pattern"
        for r in rules
        if not any(r.matches(k) for k in keys)
    ]
