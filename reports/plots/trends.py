"""Trends over runs (asv-style): per driver the median of each run as a line, its 95% interval as a
band, and a ring where a run's interval does not overlap the previous run's."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..cells import driver_order
from ..history import Point, Trend, detect_step
from ..units import human_pct
from ._base import DPI, colour, count_text, human_axis, human_ticks, tex_safe

__all__ = ["changed", "draw_group", "line_labels"]


def line_labels(points: Sequence[Point]) -> dict[tuple[str, str], str]:
    """The driver, plus its variant where one driver has several lines (e.g. leak score by hardening)."""
    per_driver: dict[str, set[str]] = {}
    for p in points:
        per_driver.setdefault(p.driver, set()).add(p.variant)
    return {
        (p.driver, p.variant): p.driver if len(per_driver[p.driver]) == 1 else f"{p.driver} ({p.variant})"
        for p in points
    }


def changed(prev: Point, cur: Point) -> bool:
    """The two runs' intervals do not overlap (and both have one): beyond either run's noise."""
    bounds = (prev.ci_low, prev.ci_high, cur.ci_low, cur.ci_high)
    if not all(math.isfinite(b) for b in bounds) or prev.n < 2 or cur.n < 2:
        return False
    return cur.ci_low > prev.ci_high or cur.ci_high < prev.ci_low


def draw_group(
    group: str, trends: Sequence[tuple[Trend, Sequence[Point]]], labels: Sequence[str], path: Path
) -> str:
    """One PNG with a panel per figure of ``group``; returns its caption."""
    ncols = 1 if len(trends) == 1 else 2
    nrows = -(-len(trends) // ncols)
    fig = Figure(figsize=(11 if ncols == 2 else 8, 0.9 + 3.3 * nrows))
    x_all = np.arange(len(labels))
    rings = 0
    steps: list[str] = []
    ns: list[int] = []
    for i, (trend, points) in enumerate(trends):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        names = line_labels(points)
        lines = sorted({(p.driver, p.variant) for p in points}, key=lambda dv: (driver_order(dv[0]), dv[1]))
        for driver, variant in lines:
            pts = sorted(
                (p for p in points if (p.driver, p.variant) == (driver, variant)), key=lambda p: p.run
            )
            x = np.array([p.run for p in pts])
            med = np.array([p.median for p in pts])
            lo = np.array([p.ci_low for p in pts])
            hi = np.array([p.ci_high for p in pts])
            c = colour(driver)
            ax.plot(x, med, marker="o", markersize=4, color=c, label=tex_safe(names[(driver, variant)]))
            ax.fill_between(
                x,
                np.where(np.isfinite(lo), lo, med),
                np.where(np.isfinite(hi), hi, med),
                color=c,
                alpha=0.18,
                linewidth=0,
            )
            step = detect_step([p.median for p in pts])
            if step is not None:
                steps.append(
                    f"{names[(driver, variant)]} {trend.title}: {human_pct(step.ratio - 1, 2)} from run {pts[step.at].run + 1}"
                )
                ax.axvline(pts[step.at].run - 0.5, color=c, linestyle="--", linewidth=1.2, gid="step")
                ax.annotate(
                    f"step {human_pct(step.ratio - 1, 2)}",
                    (pts[step.at].run - 0.5, step.after),
                    xytext=(3, 6),
                    textcoords="offset points",
                    fontsize=7,
                    color=c,
                )
            for prev, cur in itertools.pairwise(pts):
                if changed(prev, cur):
                    rings += 1
                    ax.plot(
                        [cur.run],
                        [cur.median],
                        marker="o",
                        markersize=11,
                        markerfacecolor="none",
                        markeredgecolor="#c00000",
                        markeredgewidth=1.5,
                        linestyle="none",
                        gid="changed",
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
        ax.set_xticks(x_all, labels, fontsize=7)
        ax.set_xlim(-0.4, len(labels) - 0.6)
        better = points[0].better
        ax.set_title(tex_safe(f"{trend.title} ({better} is better)"), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(tex_safe(f"{group} over runs"))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    caption = (
        f"{group}: per driver the median of each run (line) and its 95% bootstrap interval (band), runs "
        f"in time order ({len(labels)} runs, {count_text(ns)} repetitions per point)."
    )
    if rings:
        caption += f" {rings} ringed point(s): interval disjoint from the previous run's."
    if steps:
        caption += (
            " Steps (dashed line; a level shift that persists over two runs or more): "
            + "; ".join(steps)
            + "."
        )
    return caption
