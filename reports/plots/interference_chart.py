"""Noisy neighbours, IBS-style: how much each stressor degrades the victim, and whether it stayed
contained.

A degradation D is already relative (to the victim alone on the same driver, see
:mod:`isobench.interference`): 0 = unaffected, +0.25 = 25% worse, and it can be slightly
negative from noise. It is no quantity with a ratio to native, so it is drawn as a percentage in a
table-like heat map (drivers as rows, victim x stressor as columns, 0 in white), and the containment
verdicts as pass / FAIL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from ..cells import Cell, CellKey, driver_order
from ..units import human_pct
from ._base import Plot, count_text, label, save, tex_safe

__all__ = ["interference_chart"]

_DEGRADATION = re.compile(r"^interference\.(?P<victim>[^.]+)\.(?P<stressor>[^.]+)\.(?P<kind>d_mean|d_p99)$")
_CONTAINED = re.compile(r"^interference\.(?P<stressor>[^.]+)\.contained$")
#: Colours saturate at +-100%: a victim twice as slow is as bad as the scale says; the text shows more.
_CAP = 1.0
_VERDICT = ListedColormap(["#f2a3a3", "#b9e3b1"])  # FAIL, pass: light, so the words stay legible


def _heat(
    ax: Axes,
    grid: np.ndarray,
    rows: list[tuple[str, str]],
    cols: list[str],
    title: str,
    *,
    verdict: bool = False,
) -> AxesImage | None:
    image: AxesImage | None = None
    if verdict:
        ax.imshow(np.ma.masked_invalid(grid), cmap=_VERDICT, vmin=0, vmax=1, aspect="auto")
    else:
        image = ax.imshow(
            np.ma.masked_invalid(np.clip(grid, -_CAP, _CAP)),
            cmap="RdBu_r",
            norm=TwoSlopeNorm(vcenter=0.0, vmin=-_CAP, vmax=_CAP),
            aspect="auto",
        )
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = grid[i, j]
            if math.isnan(v):
                text, dark = "not run", False
            elif verdict:
                text, dark = ("pass" if v >= 0.5 else "FAIL"), False
            else:
                text, dark = human_pct(v, 2), abs(v) > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(cols)), [tex_safe(c) for c in cols], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [label(d, v) for d, v in rows], fontsize=8)
    ax.set_title(tex_safe(title), fontsize=9)
    return image


def interference_chart(cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    deg: dict[tuple[str, str, str, str], Cell] = {}  # (kind, driver, variant, victim/stressor)
    contained: dict[tuple[str, str, str], Cell] = {}
    for key, c in cells.items():
        if key.workload != "interference":
            continue
        m = _DEGRADATION.match(key.metric)
        if m:
            deg[(m["kind"], key.driver, key.variant, f"{m['victim']} / {m['stressor']}")] = c
        m2 = _CONTAINED.match(key.metric)
        if m2:
            contained[(key.driver, key.variant, m2["stressor"])] = c
    if not deg and not contained:
        return []
    rows = sorted(
        {(d, v) for _, d, v, _ in deg} | {(d, v) for d, v, _ in contained},
        key=lambda dv: (driver_order(dv[0]), dv[1]),
    )
    # The variant holds the victim's duration (and hardening); shown once in the caption instead.
    short_rows = [(d, v if len({vv for dd, vv in rows if dd == d}) > 1 else "") for d, v in rows]
    panels: list[tuple[str, list[str], np.ndarray, bool]] = []
    for kind, title in (
        ("d_mean", "victim throughput lost (D of the mean)"),
        ("d_p99", "victim p99 latency added (D of p99)"),
    ):
        cols = sorted({c for k, _, _, c in deg if k == kind})
        if not cols:
            continue
        grid = np.full((len(rows), len(cols)), np.nan)
        for (k, d, v, col), c in deg.items():
            if k == kind:
                grid[rows.index((d, v)), cols.index(col)] = float(np.median(c.values))
        panels.append((title, cols, grid, False))
    if contained:
        cols = sorted({s for _, _, s in contained})
        grid = np.full((len(rows), len(cols)), np.nan)
        for (d, v, s), c in contained.items():
            grid[rows.index((d, v)), cols.index(s)] = float(min(c.values))
        panels.append(("aggressor contained?", cols, grid, True))
    widths = [max(2, len(cols)) for _, cols, _, _ in panels]
    fig = Figure(figsize=(min(16.0, 2.5 + 1.25 * sum(widths)), 2.6 + 0.45 * len(rows)), layout="constrained")
    gs = fig.add_gridspec(1, len(panels), width_ratios=widths)
    image = None
    heat_axes = []
    for i, (title, cols, grid, verdict) in enumerate(panels):
        ax = fig.add_subplot(gs[0, i])
        image = _heat(ax, grid, short_rows, cols, title, verdict=verdict) or image
        if not verdict:
            heat_axes.append(ax)
        if i:
            ax.set_yticklabels([])
    if image is not None:
        bar = fig.colorbar(image, ax=heat_axes, location="bottom", shrink=0.6, aspect=40, pad=0.02)
        bar.set_ticks([-1, -0.5, 0, 0.5, 1], labels=["-100%", "-50%", "0", "+50%", "+100%"])
        bar.set_label("blue: victim did better than alone  |  red: victim did worse", fontsize=8)
    fig.suptitle("Noisy-neighbour interference: degradation of the victim per stressor (0% = unaffected)")
    ns = [len(c.values) for c in (*deg.values(), *contained.values())]
    variants = sorted({v for _, v in rows if v})
    caption = (
        "Degradation D of a victim next to a stressor, relative to the same victim alone on the same "
        "driver (not to native): +25% = a quarter of its throughput lost or a quarter more p99 "
        "latency; values near 0 are noise, and a clearly negative one means the victim ran faster next "
        "to the stressor than alone (worth a look: a cold baseline, or CPU frequency). Colours "
        "saturate at \u00b1100%. "
        "Containment: pass when the aggressor stayed within its limits and the host kept answering "
        f"(all repetitions). {count_text(ns)} cells per square (median shown)."
    )
    if variants:
        caption += " Parameters: " + "; ".join(variants) + "."
    return [
        Plot(
            "interference",
            "Interference per stressor",
            save(fig, plots_dir / "interference-heatmap.png", layout=False),
            caption,
        )
    ]
