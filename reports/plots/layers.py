"""Layers: what each figure of the ``layers`` workload does as the stack deepens, per driver.

One figure of small multiples, one panel per figure (cold lookups of a bottom-layer file, a top-layer
file and a miss, an open, a listing of the merged directory, a cold read, the first write, one more
layer, start to ready), depth on a log2 axis and the value on a log axis, a line per driver. The
caption states the seed's claim and, next to it, what this run measured: per driver, how much a
bottom-layer lookup and a miss slowed from the shallowest to the deepest stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter

from ..cells import Cell, CellKey, driver_order
from ._base import Plot, colour, count_text, human_ticks, save, tex_safe

__all__ = ["CLAIM", "PANELS", "depth_change", "layers_plots", "layers_series"]

#: The seed's claim, quoted next to what was measured.
CLAIM = (
    "The seed says overlayfs works with just two layers, which makes lookups cheaper than AUFS's "
    "multi-layer walk. Today's overlayfs stacks up to 500 lower layers under one upper layer and "
    "walks them on a lookup, as a qcow2 chain walks its backing files on a cluster miss."
)

#: (metric, panel title, unit)
PANELS: tuple[tuple[str, str, str], ...] = (
    ("layers.stat_bottom_cold", "stat, bottom-layer file (cold)", "seconds"),
    ("layers.stat_top_cold", "stat, top-layer file (cold)", "seconds"),
    ("layers.stat_miss_cold", "stat, name in no layer (cold)", "seconds"),
    ("layers.open_bottom_cold", "open, bottom-layer file (cold)", "seconds"),
    ("layers.readdir_cold", "list the merged directory (cold)", "seconds"),
    ("layers.read_cold", "read a bottom-layer file (cold)", "bytes_per_second"),
    ("layers.first_write", "first 4 KiB write + fsync, bottom file", "seconds"),
    ("layers.add_layer", "one more layer / snapshot (host)", "seconds"),
    ("layers.start_to_ready", "sandbox start to ready (host)", "seconds"),
)

#: (driver, metric) -> {depth: median}
Series = dict[tuple[str, str], dict[int, float]]


def layers_series(cells: Mapping[CellKey, Cell]) -> tuple[Series, list[int]]:
    series: Series = {}
    ns: list[int] = []
    for key, c in cells.items():
        depth = c.params.get("depth")
        if key.workload != "layers" or not c.values or not isinstance(depth, int | float):
            continue
        series.setdefault((key.driver, key.metric), {})[int(depth)] = float(np.median(c.values))
        ns.append(len(c.values))
    return series, ns


def depth_change(series: Series, metric: str) -> dict[str, tuple[int, int, float]]:
    """Per driver: (shallowest depth, deepest depth, value at the deepest / at the shallowest)."""
    out: dict[str, tuple[int, int, float]] = {}
    for (driver, m), points in series.items():
        if m != metric or len(points) < 2:
            continue
        lo, hi = min(points), max(points)
        if points[lo] > 0:
            out[driver] = (lo, hi, points[hi] / points[lo])
    return dict(sorted(out.items(), key=lambda kv: driver_order(kv[0])))


def _measured_text(series: Series) -> str:
    parts = []
    for metric, what in (
        ("layers.stat_bottom_cold", "a bottom-layer lookup"),
        ("layers.stat_miss_cold", "a miss"),
    ):
        change = depth_change(series, metric)
        if change:
            each = ", ".join(f"{d} x{r:.2f} ({lo} to {hi})" for d, (lo, hi, r) in change.items())
            parts.append(f"{what} took {each}")
    return (
        ("Measured, cold, from the shallowest to the deepest stack: " + "; ".join(parts) + ". ")
        if parts
        else ""
    )


def layers_plots(cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    series, ns = layers_series(cells)
    if not series:
        return []
    drivers = sorted({d for d, _ in series}, key=driver_order)
    fig = Figure(figsize=(13, 10), layout="constrained")
    axes = fig.subplots(3, 3)
    depths: set[int] = set()
    for ax, (metric, title, unit) in zip(axes.flat, PANELS, strict=True):
        drawn = False
        for d in drivers:
            points = series.get((d, metric))
            if not points:
                continue
            xs = sorted(x for x, v in points.items() if v > 0 and math.isfinite(v))
            if not xs:
                continue
            depths.update(xs)
            ax.plot(
                xs,
                [points[x] for x in xs],
                "-",
                marker="o",
                ms=4,
                lw=1.8,
                color=colour(d),
                gid=f"{d}|{metric}",
            )
            drawn = True
        ax.set_title(title, fontsize=9)
        if drawn:
            ax.set_yscale("log")
            human_ticks(ax, unit, axis="y")
            ax.set_xscale("log", base=2)
            ticks = sorted(depths)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
            ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("layers (depth)", fontsize=8)
    handles = [Line2D([], [], color=colour(d), lw=2, label=tex_safe(d)) for d in drivers]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle("Layer stack / snapshot chain depth (log-log; read: higher is better, the rest lower)")
    caption = (
        f"{CLAIM} {_measured_text(series)}Containers: D overlayfs lower directories above the image "
        "under the sandbox's upper layer; guests: a qcow2 backing chain of D images under a per-guest "
        "overlay, as the data disk. Cold: the host's caches dropped before each phase (and a guest's "
        "own); per-operation times over 64 distinct names. "
        f"{count_text(ns)} per point (median)."
    )
    path = save(fig, plots_dir / "layers-depth.png", layout=False)
    return [Plot("layers", "What layer depth costs", path, caption)]
