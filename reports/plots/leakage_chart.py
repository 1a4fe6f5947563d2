"""Information leakage: per probe, the share of repetitions in which host information was visible."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..cells import Cell, CellKey, driver_order, is_leak_probe
from ._base import Plot, count_text, label, save, tex_safe

__all__ = ["leakage_heatmap"]


def leakage_heatmap(cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    # Probes are 0/1 verdicts; the other leakage.* metrics are aggregates with their own table.
    probes = [
        c for c in cells.values() if is_leak_probe(c.key.metric) and all(v in (0.0, 1.0) for v in c.values)
    ]
    if not probes:
        return []
    rows = sorted(
        {(c.key.driver, c.key.variant) for c in probes}, key=lambda dv: (driver_order(dv[0]), dv[1])
    )
    cols = sorted({c.key.metric.removeprefix("leakage.") for c in probes})
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in probes:
        grid[rows.index((c.key.driver, c.key.variant)), cols.index(c.key.metric.removeprefix("leakage."))] = (
            float(np.mean(c.values))
        )
    fig = Figure(figsize=(max(6.0, 1.0 + 0.7 * len(cols)), 1.5 + 0.45 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = grid[i, j]
            text = "n/a" if math.isnan(v) else ("leaks" if v == 1 else "hidden" if v == 0 else f"{v:.0%}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(cols)), [tex_safe(c) for c in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [label(d, v) for d, v in rows], fontsize=8)
    fig.colorbar(im, ax=ax, label="share of repetitions that leaked")
    ax.set_title("Leakage per probe: is host information visible inside?")
    return [
        Plot(
            "leakage",
            "Leakage per probe",
            save(fig, plots_dir / "leakage-heatmap.png"),
            "Each square: the share of repetitions in which the probe saw host information "
            f"(leaks = always, hidden = never, n/a = probe not applicable). "
            f"{count_text(len(c.values) for c in probes)} repetitions per square.",
        )
    ]
