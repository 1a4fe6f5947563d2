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
    # Drivers as columns, probes as rows: ~35 probes fit a page down, not across.
    cols = sorted(
        {(c.key.driver, c.key.variant) for c in probes}, key=lambda dv: (driver_order(dv[0]), dv[1])
    )
    rows = sorted({c.key.metric.removeprefix("leakage.") for c in probes})
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in probes:
        grid[rows.index(c.key.metric.removeprefix("leakage.")), cols.index((c.key.driver, c.key.variant))] = (
            float(np.mean(c.values))
        )
    fig = Figure(figsize=(min(11.0, 3.0 + 1.1 * len(cols)), 1.8 + 0.26 * len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", vmin=0, vmax=1.4, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = grid[i, j]
            text = "n/a" if math.isnan(v) else ("leaks" if v == 1 else "hidden" if v == 0 else f"{v:.0%}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.xaxis.tick_top()
    ax.set_xticks(range(len(cols)), [label(d, v).replace(" (", "\n(") for d, v in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), [tex_safe(r) for r in rows], fontsize=8)
    ax.set_title("Leakage per probe: is host information visible inside?", pad=30)
    return [
        Plot(
            "leakage",
            "Leakage per probe",
            save(fig, plots_dir / "leakage-heatmap.png"),
            "Each square: the share of repetitions in which the probe saw host information "
            "(leaks = always, hidden = never, a percentage = some repetitions, n/a = probe not "
            "applicable). "
            f"{count_text(len(c.values) for c in probes)} repetitions per square.",
        )
    ]
