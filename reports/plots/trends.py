"""Trends over runs (asv-style): per driver the median of each run as a line, its interval as a
band, and a ring where a run's interval does not overlap the previous run's."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..cells import NATIVE, driver_order
from ..history import Point, Trend, detect_step
from ..units import human_pct
from ._base import colour, count_text, human_axis, human_ticks, interval_text, ring, save, tex_safe

__all__ = ["GroupDrawing", "changed", "draw_group", "line_labels", "trend_word"]


def line_labels(points: Sequence[Point]) -> dict[tuple[str, str], str]:
    """The driver, plus its variant where one driver has several lines (e.g. leak score by hardening)."""
    per_driver: dict[str, set[str]] = {}
    for p in points:
        per_driver.setdefault(p.driver, set()).add(p.variant)
    return {
        (p.driver, p.variant): p.driver if len(per_driver[p.driver]) == 1 else f"{p.driver} ({p.variant})"
        for p in points
    }


def comparable(prev: Point, cur: Point) -> bool:
    """Both runs have an interval to set against each other (n >= 2, or a leak score's range)."""
    bounds = (prev.ci_low, prev.ci_high, cur.ci_low, cur.ci_high)
    if not all(math.isfinite(b) for b in bounds):
        return False
    return (prev.n >= 2 and cur.n >= 2) or (prev.evidence_interval and cur.evidence_interval)


def changed(prev: Point, cur: Point) -> bool:
    """The two runs' intervals do not overlap (and both have one): beyond either run's noise."""
    return comparable(prev, cur) and (cur.ci_low > prev.ci_high or cur.ci_high < prev.ci_low)


def _percent_of(base: float, v: float) -> float:
    return 100.0 * (v / base - 1.0)


def _rel_values(points: Sequence[Point]) -> list[tuple[float, float]]:
    """(line median over runs, run median) for every point, for the relative panel's scale."""
    out: list[tuple[float, float]] = []
    for key in {(p.driver, p.variant) for p in points}:
        meds = [p.median for p in points if (p.driver, p.variant) == key]
        base = float(np.median(meds))
        out += [(base, m) for m in meds if base]
    return out


def _series(
    ax: Axes,
    pts: Sequence[Point],
    scale: Callable[[float], float],
    style: tuple[str, str],
    name: str,
    alpha: float = 0.18,
) -> None:
    """One line with its band, and rings where a run's interval leaves the previous run's."""
    c, dash = style
    x = np.array([p.run for p in pts])
    med = np.array([scale(p.median) for p in pts])
    lo = np.array([scale(p.ci_low) if math.isfinite(p.ci_low) else scale(p.median) for p in pts])
    hi = np.array([scale(p.ci_high) if math.isfinite(p.ci_high) else scale(p.median) for p in pts])
    ax.plot(x, med, marker="o", markersize=4, color=c, linestyle=dash, label=tex_safe(name))
    if alpha:
        ax.fill_between(x, lo, hi, color=c, alpha=alpha, linewidth=0)
    for prev, cur in itertools.pairwise(pts):
        if changed(prev, cur):
            ring(ax, cur.run, scale(cur.median), marker="o", size=11, colour="#c00000", gid="changed")


def trend_word(better: str, up: bool) -> str:
    """'better' or 'worse' for a move up or down of a figure where ``better`` is higher or lower."""
    if better not in ("higher", "lower"):
        return "changed"
    return "better" if up == (better == "higher") else "worse"


@dataclass(frozen=True)
class GroupDrawing:
    caption: str
    #: Beyond-the-noise changes of the latest run and persistent steps, as sentences.
    findings: tuple[str, ...]
    #: The latest run's lines that continue one of the run before: how many could be judged
    #: (both runs with an interval), and how many of those were not.
    judged: int = 0
    unjudged: int = 0


def _latest_move(pts: Sequence[Point], last_run: int) -> float | None:
    """A line's latest change (latest median / the one before) where it is beyond the noise
    (``changed``) and the line reaches the last run, else None."""
    pts = sorted(pts, key=lambda p: p.run)
    if len(pts) < 2 or pts[-1].run != last_run or not pts[-2].median or not changed(pts[-2], pts[-1]):
        return None
    return pts[-1].median / pts[-2].median


def draw_group(
    group: str, trends: Sequence[tuple[Trend, Sequence[Point]]], labels: Sequence[str], path: Path
) -> GroupDrawing:
    """One PNG, a row per figure of ``group``: the values (left) and each line relative to its own
    median over the runs (right), where a drift of a few percent is visible whatever the scale.
    Returns the caption and what changed."""
    nrows = len(trends)
    fig = Figure(figsize=(12, 0.8 + 3.1 * nrows))
    x_all = np.arange(len(labels))
    rings = judged = unjudged = 0
    steps: list[str] = []
    latest: list[str] = []
    ns: list[int] = []
    last_run = len(labels) - 1
    for i, (trend, points) in enumerate(trends):
        ax = fig.add_subplot(nrows, 2, 2 * i + 1)
        rel = fig.add_subplot(nrows, 2, 2 * i + 2)
        names = line_labels(points)
        lines = sorted({(p.driver, p.variant) for p in points}, key=lambda dv: (driver_order(dv[0]), dv[1]))
        native = {
            v: _latest_move([p for p in points if (p.driver, p.variant) == (d, v)], last_run)
            for d, v in lines
            if d == NATIVE
        }
        for driver, variant in lines:
            pts = sorted(
                (p for p in points if (p.driver, p.variant) == (driver, variant)), key=lambda p: p.run
            )
            # Several lines of one driver (e.g. hardening on and off) share its colour, not its dash.
            dash = ("-", "--", ":", "-.")[sorted(v for d, v in lines if d == driver).index(variant) % 4]
            style = (colour(driver), dash)
            name = names[(driver, variant)]
            _series(ax, pts, lambda v: v, style, name)
            base = float(np.median([p.median for p in pts]))
            if base:
                _series(rel, pts, functools.partial(_percent_of, base), style, name, alpha=0.0)
            rings += sum(changed(a, b) for a, b in itertools.pairwise(pts))
            continued = len(pts) > 1 and pts[-1].run == last_run
            if continued:
                if comparable(pts[-2], pts[-1]):
                    judged += 1
                else:
                    unjudged += 1
            if continued and changed(pts[-2], pts[-1]):
                move = human_pct(pts[-1].median / pts[-2].median - 1, 2) if pts[-2].median else "?"
                up = pts[-1].median > pts[-2].median
                word = trend_word(pts[-1].better, up)
                # native's line of the same variant (e.g. threads), else its only one
                native_move = native.get(variant, next(iter(native.values())) if len(native) == 1 else None)
                if (
                    driver != NATIVE
                    and native_move is not None
                    and pts[-2].median
                    and up == (native_move > 1)
                ):
                    # the host's own figure moved the same way: the machine changed, not the isolation
                    word += f"; native moved {human_pct(native_move - 1, 2)} too"
                latest.append(f"{name} {trend.title}: {move} vs the run before ({word})")
            step = detect_step([p.median for p in pts])
            if step is not None:
                at = pts[step.at].run
                word = trend_word(pts[0].better, step.ratio > 1)
                steps.append(
                    f"{name} {trend.title}: {human_pct(step.ratio - 1, 2)} from run {at + 1} ({word})"
                )
                for target in (ax, rel):
                    target.axvline(at - 0.5, color=style[0], linestyle="--", linewidth=1.2, gid="step")
                rel.annotate(
                    f"step {human_pct(step.ratio - 1, 2)}",
                    (at - 0.5, 100.0 * (step.after / base - 1.0) if base else 0.0),
                    xytext=(3, 6),
                    textcoords="offset points",
                    fontsize=7,
                    color=style[0],
                )
            ns += [p.n for p in pts]
        unit = points[0].unit
        values = [v for p in points for v in (p.median, p.ci_low, p.ci_high) if math.isfinite(v) and v > 0]
        if values and max(values) / min(values) > 30:
            ax.set_yscale("log")
            human_ticks(ax, unit, axis="y")
            ax.set_ylabel("log axis")
        else:
            top = max(values, default=1.0)
            ax.set_ylim(0, top * 1.15)
            ax.set_ylabel(human_axis(ax, [top * 1.15], unit, axis="y").label)
        rel.axhline(0.0, color="black", linewidth=0.8)
        # Scaled to the medians: the intervals are on the left panel.
        moves = [abs(_percent_of(b, v)) for b, v in _rel_values(points)]
        reach = max(10.0, 1.4 * max(moves, default=0.0))
        rel.set_ylim(-reach, reach)
        rel.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))
        rel.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:+g}%" if v else "0"))
        rel.set_ylabel("vs. the line's median over runs")
        better = points[0].better
        ax.set_title(tex_safe(f"{trend.title} ({better} is better)"), fontsize=9)
        rel.set_title(tex_safe(f"{trend.title}: change over runs"), fontsize=9)
        for a in (ax, rel):
            a.set_xticks(x_all, labels, fontsize=7)
            a.set_xlim(-0.4, len(labels) - 0.6)
            a.grid(alpha=0.3)
        rel.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(tex_safe(f"{group} over runs"))
    save(fig, path)
    caption = (
        f"{group}: per driver the median of each run (line) and its interval (band: "
        f"{interval_text(p.ci_confidence for _, pts in trends for p in pts)}), runs "
        f"in time order ({len(labels)} runs, {count_text(ns)} repetitions per point); right: the same "
        "lines relative to each line's median over the runs, so a drift of a few percent shows (no "
        "bands there: overlapping intervals would hide the lines; read them on the left)."
    )
    if rings:
        caption += f" {rings} ringed point(s): interval disjoint from the previous run's."
    if steps:
        caption += (
            " Steps (dashed line; a level shift that persists over two runs or more): "
            + "; ".join(steps)
            + "."
        )
    return GroupDrawing(caption, tuple(latest) + tuple(f"step: {s}" for s in steps), judged, unjudged)
