"""Leak scores with their intervals, and which configurations a run can rank apart.

A leak score's interval (``leakage.score`` metadata, schema 5) spans every status its probes'
evidence allows: probes that could not run or decide, and correlation channels whose r sits within
its sampling error of the rule's threshold (:attr:`isobench.leakage.rules.Verdict.plausible`). Two
configurations are ranked only when their intervals do not overlap; otherwise the report says it
cannot rank them. A quick run's shorter series give wider intervals: it may be less precise than a
full run, but it never ranks two configurations the other way round unless both intervals say so.

Older results: schema 4 recorded only the range over the probes left out (``bounds``), which is
used as the interval; schemas 1-3 recorded none, so their scores are shown without one and ranked
by value alone, as they were then.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from isobench.results import Results

from .cells import variant_of
from .units import plain

if TYPE_CHECKING:
    from .headline import Figure

__all__ = [
    "Interval",
    "leak_figures",
    "leak_intervals",
    "overlap",
    "rank_groups",
    "ranking_sentences",
]

SCORE = "leakage.score"


@dataclass(frozen=True)
class Interval:
    """One configuration's leak score (median over repetitions) and its interval (NaN: none recorded)."""

    name: str
    value: float
    low: float = math.nan
    high: float = math.nan
    #: Scored probes whose evidence sits within its sampling error of the threshold, by name.
    uncertain: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def span(self) -> tuple[float, float]:
        """The interval, or the value alone when the run recorded none."""
        return (self.low, self.high) if self.known else (self.value, self.value)

    def text(self) -> str:
        """``[36, 47]`` (two or three significant digits), "" without an interval."""
        if not self.known:
            return ""
        return f"[{_short(self.low)}, {_short(self.high)}]"


def _short(v: float) -> str:
    return plain(v, 2 if abs(v) < 10 else 3)


def overlap(a: Interval, b: Interval) -> bool:
    """Whether two scores' intervals share a point: then this run cannot rank them apart."""
    alo, ahi = a.span()
    blo, bhi = b.span()
    return alo <= bhi and blo <= ahi


def leak_intervals(results: Results) -> dict[tuple[str, str], Interval]:
    """Per (driver, params variant): the median score and the widest interval over repetitions
    (each repetition's own interval: a probe that flipped between them widens it)."""
    values: dict[tuple[str, str], list[float]] = {}
    ends: dict[tuple[str, str], list[float]] = {}
    uncertain: dict[tuple[str, str], set[str]] = {}
    for s in results.samples:
        if s.metric != SCORE or s.value is None or s.warmup:
            continue
        key = (s.driver, variant_of(s.params))
        values.setdefault(key, []).append(float(s.value))
        meta = s.metadata or {}
        span = meta.get("interval") or meta.get("bounds")
        if isinstance(span, list | tuple) and len(span) == 2:
            ends.setdefault(key, []).extend([float(span[0]), float(span[1]), float(s.value)])
        uncertain.setdefault(key, set()).update(meta.get("uncertain") or {})
    out = {}
    for key, vals in values.items():
        # A repetition without an interval (schema <= 3) leaves the cell without one.
        e = ends.get(key, [])
        whole = len(e) == 3 * len(vals)
        out[key] = Interval(
            key[0],
            statistics.median(vals),
            min(e) if whole else math.nan,
            max(e) if whole else math.nan,
            tuple(sorted(uncertain.get(key, ()))),
        )
    return out


def rank_groups(scores: Iterable[Interval]) -> list[list[Interval]]:
    """The scores in order, grouped where their intervals chain by overlap: every score of a group
    is ranked below every score of the next; within a group the run cannot rank them."""
    groups: list[list[Interval]] = []
    reach = -math.inf
    for s in sorted(scores, key=lambda x: (x.span()[0], x.value, x.name)):
        lo, hi = s.span()
        if groups and lo <= reach:
            groups[-1].append(s)
            reach = max(reach, hi)
        else:
            groups.append([s])
            reach = hi
    for g in groups:
        g.sort(key=lambda x: (x.value, x.name))
    return groups


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def ranking_sentences(scores: Sequence[Interval], human: Callable[[float], str]) -> list[str]:
    """The leak scores in words: each with its interval, then what this run can rank and what not.

    ``human`` formats a score (``42.2%``)."""
    if not scores:
        return []
    groups = rank_groups(scores)
    listed = ", ".join(
        f"{s.name} {human(s.value)}" + (f" {s.text()}" if s.known else "") for g in groups for s in g
    )
    with_interval = all(s.known for s in scores)
    out = [
        "Leak score (lower is better"
        + ("; in brackets the range its uncertain probes allow" if with_interval else "")
        + f"): {listed}."
    ]
    if len(scores) < 2:
        return out
    if not with_interval:
        out.append("This run recorded no interval for the leak score: the order is by value alone.")
        return out
    if len(groups) == 1:
        out.append(f"Cannot rank {_names([s.name for s in groups[0]])} apart: their intervals overlap.")
        return out
    out.append(
        "Ranked (fewer leaks first) where the intervals do not overlap: "
        + " < ".join(s[0].name if len(s) == 1 else "{" + ", ".join(x.name for x in s) + "}" for s in groups)
        + "."
    )
    tied = [_names([s.name for s in g]) for g in groups if len(g) > 1]
    if tied:
        out.append(f"Cannot rank {', nor '.join(tied)} apart: their intervals overlap.")
    return out


def leak_figures(
    figures: Mapping[str, Figure], variants: Mapping[str, str], results: Results | None, native: str
) -> dict[str, Figure]:
    """The headline's leak figures with their intervals (``variants``: the params variant each
    driver's figure was picked from); against native, *unsure* where the intervals overlap."""
    if results is None:
        return dict(figures)
    found = leak_intervals(results)
    ivs = {d: found[(d, v)] for d, v in variants.items() if (d, v) in found}
    base = ivs.get(native)
    out: dict[str, Figure] = {}
    for d, fig in figures.items():
        iv = ivs.get(d)
        if iv is None or not iv.known:
            out[d] = fig
            continue
        verdict = fig.verdict
        if d != native and base is not None and base.known and overlap(iv, base):
            verdict = "unsure"
        tip = f"{fig.tip}; interval {iv.text()} over the probes its evidence leaves open"
        if iv.uncertain:
            tip += f" (near their threshold: {', '.join(iv.uncertain)})"
        out[d] = replace(fig, ci_low=iv.low, ci_high=iv.high, detail=iv.text(), verdict=verdict, tip=tip)
    return out
