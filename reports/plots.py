"""PNG figures with matplotlib's Agg canvas (no pyplot: no global backend or figure state).

Every function takes the summary table and the cells, writes zero or more PNGs into ``plots_dir``
and returns what it wrote; data that is absent gives no figure, so the report can say so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .cells import NATIVE, Cell, CellKey, driver_order, is_leak_probe

log = logging.getLogger(__name__)

__all__ = ["SECTIONS", "Plot", "all_plots"]

#: Report sections that have figures, in report order, with their headings.
SECTIONS: dict[str, str] = {
    "startup": "Startup",
    "ratios": "Ratio to native",
    "disk": "Disk I/O per storage path",
    "network": "Network per network path",
    "leakage": "Information leakage",
    "interference": "Noisy-neighbour interference",
    "memory": "Memory overhead",
}

_DPI = 100


def _distinct_colours(n: int) -> list[Any]:
    """One colour per phase: several drivers together record ~24 phase names, more than a
    qualitative palette holds, and a reused colour would make two phases read as one."""
    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    # Golden-ratio steps through the map: phases recorded one after another (adjacent in a bar)
    # land far apart in hue.
    return [matplotlib.colormaps["turbo"](0.05 + 0.9 * ((i * 0.618034) % 1.0)) for i in range(n)]


_MAX_PANELS = 12


@dataclass(frozen=True)
class Plot:
    section: str
    title: str
    path: Path
    caption: str


def _tex_safe(text: str) -> str:
    # Labels come from sample data; a "$" would start matplotlib mathtext and can fail to parse.
    return text.replace("$", r"\$")


def _colour(driver: str, drivers: Sequence[str]) -> str:
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    return palette[list(drivers).index(driver) % len(palette)] if driver in drivers else palette[-1]


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-")[:80] or "x"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, format="png")
    return path


def _drivers(df: pd.DataFrame) -> list[str]:
    return sorted(df["driver"].unique(), key=driver_order)


def _label(driver: str, variant: str) -> str:
    return _tex_safe(f"{driver} ({variant})" if variant else driver)


def _grouped_bars(ax: Axes, df: pd.DataFrame, group_col: str, drivers: Sequence[str]) -> None:
    """Bars of medians with their interval as whiskers: one group per value of ``group_col``, one bar per driver."""
    groups = list(dict.fromkeys(df[group_col]))
    width = 0.8 / max(1, len(drivers))
    x = np.arange(len(groups))
    for i, d in enumerate(drivers):
        sub = df[df["driver"] == d].set_index(group_col)
        med = np.array([sub["median"].get(g, np.nan) for g in groups], dtype=float)
        lo = np.array([sub["ci_low"].get(g, np.nan) for g in groups], dtype=float)
        hi = np.array([sub["ci_high"].get(g, np.nan) for g in groups], dtype=float)
        err = np.vstack([np.clip(med - lo, 0, None), np.clip(hi - med, 0, None)])
        ax.bar(
            x + (i - (len(drivers) - 1) / 2) * width,
            med,
            width,
            yerr=err,
            capsize=3,
            label=_tex_safe(d),
            color=_colour(d, drivers),
        )
    ax.set_xticks(x, [_tex_safe(str(g)) or "(none)" for g in groups], rotation=20, ha="right", fontsize=8)


def _panel_grid(n: int, *, width: float = 11.0, row_height: float = 3.2) -> tuple[Figure, list[Axes]]:
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width, max(3.0, row_height * nrows)))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


# -- startup -----------------------------------------------------------------------------------


def startup_timeline(
    summary: pd.DataFrame,
    cells: Mapping[CellKey, Cell],
    plots_dir: Path,
    phase_orders: Mapping[str, Sequence[str]],
    offsets: Mapping[tuple[str, str, str], float],
) -> list[Plot]:
    """Stacked phase bars per driver on one shared time axis.

    Phases are stacked in the order the driver recorded them. Where the samples carry
    ``metadata["offset_s"]`` (start of the phase relative to the sandbox's first phase) the bar is
    drawn at its median offset instead, so phases nested inside another (e.g. "rootfs" within
    "create") sit where they happened instead of being counted twice.
    """
    phased = [c for c in cells.values() if c.key.workload == "startup" and c.phase]
    if not phased:
        return []
    bars: dict[tuple[str, str], dict[str, float]] = {}
    for c in phased:
        bars.setdefault((c.key.driver, c.key.variant), {})[str(c.phase)] = float(np.median(c.values))
    all_phases: list[str] = []
    for d in sorted(phase_orders, key=driver_order):
        all_phases += [p for p in phase_orders[d] if p not in all_phases]
    all_phases += sorted({p for b in bars.values() for p in b} - set(all_phases))
    colours = dict(zip(all_phases, _distinct_colours(len(all_phases)), strict=True))
    order = sorted(bars, key=lambda dv: (driver_order(dv[0]), dv[1]))
    fig = Figure(figsize=(11, 1.4 + 0.6 * len(order)))
    ax = fig.add_subplot(1, 1, 1)
    ends: list[float] = []
    labelled: set[str] = set()
    for yi, (driver, variant) in enumerate(order):
        durations = bars[(driver, variant)]
        seq = [p for p in phase_orders.get(driver, ()) if p in durations]
        seq += [p for p in all_phases if p in durations and p not in seq]
        left = 0.0
        spans: list[tuple[str, float, float]] = []
        for p in seq:
            start = offsets.get((driver, variant, p))
            spans.append((p, left if start is None else start, durations[p]))
            left = (left if start is None else start) + durations[p]
        # Longest first, so phases nested inside a longer one are drawn on top and stay visible.
        for p, start, width in sorted(spans, key=lambda sp: -sp[2]):
            ax.barh(
                yi,
                width,
                left=start,
                color=colours[p],
                edgecolor="white",
                label=None if p in labelled else _tex_safe(p),
            )
            labelled.add(p)
        end = max((st + w for _, st, w in spans), default=0.0)
        ends.append(end)
        ax.annotate(
            f"{end:.4g} s", (end, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_yticks(range(len(order)), [_label(d, v) for d, v in order])
    ax.invert_yaxis()
    unit = phased[0].unit or "s"
    ax.set_xlabel(f"median time per phase ({_tex_safe(unit)}), one shared axis for all drivers")
    top = max(ends, default=0.0)
    ax.set_xlim(0, top * 1.15 if top > 0 else 1)
    handles, labels = ax.get_legend_handles_labels()
    keep = sorted(
        range(len(labels)),
        key=lambda i: (
            all_phases.index(labels[i].replace(r"\$", "$"))
            if labels[i].replace(r"\$", "$") in all_phases
            else len(all_phases)
        ),
    )
    ax.legend(
        [handles[i] for i in keep],
        [labels[i] for i in keep],
        title="phase",
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    ax.set_title("Startup phase timeline")
    return [
        Plot(
            "startup",
            "Startup phase timeline",
            _save(fig, plots_dir / "startup-timeline.png"),
            "Median duration of each startup phase per driver, in the order the driver recorded "
            "them, on one shared time axis (container and VM bars are directly comparable).",
        )
    ]


def startup_distribution(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    totals = [c for c in cells.values() if c.key.workload == "startup" and not c.phase]
    if not totals:
        return []
    metrics = list(dict.fromkeys(c.key.metric for c in totals))[:_MAX_PANELS]
    fig, axes = _panel_grid(
        len(metrics), row_height=0.5 + 0.5 * max(sum(1 for c in totals if c.key.metric == m) for m in metrics)
    )
    for ax, metric in zip(axes, metrics, strict=True):
        mc = sorted(
            (c for c in totals if c.key.metric == metric),
            key=lambda c: (driver_order(c.key.driver), c.key.variant),
        )
        ax.boxplot([list(c.values) for c in mc], orientation="horizontal", widths=0.6)
        ax.set_yticks(range(1, len(mc) + 1), [_label(c.key.driver, c.key.variant) for c in mc])
        ax.invert_yaxis()
        lo = min(min(c.values) for c in mc)
        hi = max(max(c.values) for c in mc)
        if lo > 0 and hi / lo > 50:
            ax.set_xscale("log")
        ax.set_xlabel(_tex_safe(f"{metric} ({mc[0].unit})"))
        ax.set_title(_tex_safe(f"Distribution of {metric}"), fontsize=10)
    return [
        Plot(
            "startup",
            "Start-time distributions",
            _save(fig, plots_dir / "startup-distribution.png"),
            "Box plots of every measured start (box: quartiles, line: median, whiskers: 1.5 IQR).",
        )
    ]


# -- ratios ------------------------------------------------------------------------------------


def ratio_bars(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    # Leak probes are 0/1 flags with their own table and heat map; a ratio of flags means nothing.
    df = summary[
        (summary["driver"] != NATIVE)
        & summary["ratio_to_native"].notna()
        & ~summary["metric"].str.startswith("leakage.")
    ]
    plots: list[Plot] = []
    drivers = _drivers(summary) if not summary.empty else []
    for workload, wgrp in df.groupby("workload", sort=True):
        grp = wgrp.assign(_o=wgrp["driver"].map(driver_order))
        grp = grp.sort_values(["metric", "variant", "_o"]).head(40)
        labels = [
            _tex_safe(f"{m}" + (f" [{v}]" if v else "") + f" — {d}")
            for m, v, d in zip(grp["metric"], grp["variant"], grp["driver"], strict=True)
        ]
        fig = Figure(figsize=(11, 1.0 + 0.32 * len(grp)))
        ax = fig.add_subplot(1, 1, 1)
        val = grp["ratio_to_native"].to_numpy(dtype=float)
        lo = grp["ratio_ci_low"].to_numpy(dtype=float)
        hi = grp["ratio_ci_high"].to_numpy(dtype=float)
        err = np.vstack(
            [np.nan_to_num(np.clip(val - lo, 0, None)), np.nan_to_num(np.clip(hi - val, 0, None))]
        )
        y = np.arange(len(grp))
        ax.barh(y, val, xerr=err, capsize=3, color=[_colour(d, drivers) for d in grp["driver"]])
        ax.axvline(1.0, color="black", linewidth=1)
        positive = val[np.isfinite(val) & (val > 0)]
        if positive.size and (positive.max() / positive.min() > 20 or positive.max() > 20):
            ax.set_xscale("log")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"median / median of {NATIVE} (1 = native; whiskers: 95% bootstrap CI)")
        ax.set_title(_tex_safe(f"{workload}: ratio to native"))
        plots.append(
            Plot(
                "ratios",
                f"{workload}: ratio to native",
                _save(fig, plots_dir / f"ratio-{_slug(str(workload))}.png"),
                "Ratio of each driver's median to the native median; for metrics where "
                "lower is better a ratio above 1 is overhead, where higher is better a "
                "ratio below 1 is.",
            )
        )
    return plots


# -- disk / network / interference -------------------------------------------------------------


def _per_param_figures(
    summary: pd.DataFrame,
    cells: Mapping[CellKey, Cell],
    plots_dir: Path,
    *,
    param: str,
    section: str,
    select: Callable[[Cell], bool],
    caption: str,
) -> list[Plot]:
    chosen = [c for c in cells.values() if param in c.params and select(c)]
    if not chosen:
        return []
    keys = {c.key for c in chosen}
    rows = summary[
        [
            CellKey(str(w), str(m), str(v), str(d)) in keys
            for w, m, v, d in zip(
                summary["workload"], summary["metric"], summary["variant"], summary["driver"], strict=True
            )
        ]
    ].copy()
    # Groups are whole variants, so other params (block size, direction...) never merge cells.
    rows["group"] = rows["variant"]
    drivers = _drivers(summary)
    plots: list[Plot] = []
    for workload, wgrp in rows.groupby("workload", sort=True):
        metrics = list(dict.fromkeys(wgrp["metric"]))
        for start in range(0, len(metrics), _MAX_PANELS):
            chunk = metrics[start : start + _MAX_PANELS]
            fig, axes = _panel_grid(len(chunk))
            for ax, metric in zip(axes, chunk, strict=True):
                mgrp = wgrp[wgrp["metric"] == metric]
                present = [d for d in drivers if d in set(mgrp["driver"])]
                _grouped_bars(ax, mgrp, "group", present)
                unit = str(mgrp["unit"].iloc[0])
                better = str(mgrp["better"].iloc[0])
                ax.set_ylabel(_tex_safe(unit))
                ax.set_title(_tex_safe(f"{metric} ({better} is better)"), fontsize=10)
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            suffix = f"-{start // _MAX_PANELS + 1}" if len(metrics) > _MAX_PANELS else ""
            title = f"{workload} by {param}"
            plots.append(
                Plot(
                    section,
                    title,
                    _save(fig, plots_dir / f"{section}-{_slug(str(workload))}{suffix}.png"),
                    caption,
                )
            )
    return plots


def disk_plots(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    return _per_param_figures(
        summary,
        cells,
        plots_dir,
        param="storage",
        section="disk",
        select=lambda c: True,
        caption="Median per storage path and driver; whiskers: its exact interval (>= 95%, or the range).",
    )


def network_plots(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    return _per_param_figures(
        summary,
        cells,
        plots_dir,
        param="path",
        section="network",
        select=lambda c: True,
        caption="Median per network path and driver; whiskers: its exact interval (>= 95%, or the range).",
    )


def interference_plots(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    return _per_param_figures(
        summary,
        cells,
        plots_dir,
        param="stressor",
        section="interference",
        select=lambda c: c.key.metric.startswith("interference."),
        caption="Degradation of the victim per stressor and driver (median, exact interval >= 95% or the range).",
    )


# -- leakage -----------------------------------------------------------------------------------


def leakage_heatmap(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
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
            if not math.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if grid[i, j] > 0.6 else "black",
                )
    ax.set_xticks(range(len(cols)), [_tex_safe(c) for c in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_label(d, v) for d, v in rows], fontsize=8)
    fig.colorbar(im, ax=ax, label="fraction of repetitions that leaked")
    ax.set_title("Leakage per probe (1 = host information visible)")
    return [
        Plot(
            "leakage",
            "Leakage per probe",
            _save(fig, plots_dir / "leakage-heatmap.png"),
            "Each cell: share of repetitions in which the probe saw host information.",
        )
    ]


# -- memory ------------------------------------------------------------------------------------

_BYTES = {
    "b": 1.0,
    "bytes": 1.0,
    "kib": 1024.0,
    "kb": 1000.0,
    "mib": 1024.0**2,
    "mb": 1e6,
    "gib": 1024.0**3,
    "gb": 1e9,
}


def memory_breakdown(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    mem = [c for c in cells.values() if c.key.metric.startswith("idle-memory.")]
    if not mem:
        return []
    convertible = all(c.unit.lower() in _BYTES for c in mem)
    unit = "MiB" if convertible else mem[0].unit

    def mib(c: Cell) -> float:
        med = float(np.median(c.values))
        return med * _BYTES[c.unit.lower()] / 1024.0**2 if convertible else med

    def is_total(c: Cell) -> bool:
        return c.key.metric.endswith(".total") or c.key.metric == "idle-memory.total"

    bars = sorted({(c.key.driver, c.key.variant) for c in mem}, key=lambda dv: (driver_order(dv[0]), dv[1]))
    parts = sorted({c.key.metric.removeprefix("idle-memory.") for c in mem if not is_total(c)})
    fig = Figure(figsize=(11, 1.5 + 0.6 * len(bars)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(bars))
    left = np.zeros(len(bars))
    by = {(c.key.driver, c.key.variant, c.key.metric.removeprefix("idle-memory.")): c for c in mem}
    for part in parts:
        w = np.array([mib(by[(d, v, part)]) if (d, v, part) in by else 0.0 for d, v in bars])
        ax.barh(y, w, left=left, label=_tex_safe(part), edgecolor="white")
        left += w
    for i, (d, v) in enumerate(bars):
        tot = next((c for c in mem if is_total(c) and (c.key.driver, c.key.variant) == (d, v)), None)
        if tot is not None:
            ax.plot(
                [mib(tot)],
                [i],
                marker="D",
                color="black",
                label="total" if i == 0 else None,
                linestyle="none",
            )
    ax.set_yticks(y, [_label(d, v) for d, v in bars])
    ax.invert_yaxis()
    ax.set_xlabel(_tex_safe(f"median ({unit})"))
    if parts or any(is_total(c) for c in mem):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Idle memory overhead breakdown")
    return [
        Plot(
            "memory",
            "Idle memory overhead",
            _save(fig, plots_dir / "memory-breakdown.png"),
            "Median of each idle-memory component, stacked per driver; diamonds mark the "
            "measured total where one was recorded.",
        )
    ]


def all_plots(
    summary: pd.DataFrame,
    cells: Mapping[CellKey, Cell],
    plots_dir: Path,
    phase_orders: Mapping[str, Sequence[str]],
    offsets: Mapping[tuple[str, str, str], float],
) -> tuple[list[Plot], list[str]]:
    """Every figure the data allows; returns (plots, errors). One broken figure never costs the
    rest of the report: its error is returned for the report's warnings."""
    makers: list[tuple[str, Callable[[], list[Plot]]]] = [
        ("startup timeline", lambda: startup_timeline(summary, cells, plots_dir, phase_orders, offsets)),
        ("startup distribution", lambda: startup_distribution(summary, cells, plots_dir)),
        ("ratio to native", lambda: ratio_bars(summary, cells, plots_dir)),
        ("disk", lambda: disk_plots(summary, cells, plots_dir)),
        ("network", lambda: network_plots(summary, cells, plots_dir)),
        ("leakage", lambda: leakage_heatmap(summary, cells, plots_dir)),
        ("interference", lambda: interference_plots(summary, cells, plots_dir)),
        ("memory", lambda: memory_breakdown(summary, cells, plots_dir)),
    ]
    plots: list[Plot] = []
    errors: list[str] = []
    for name, make in makers:
        try:
            plots.extend(make())
        except Exception as err:  # a plotting bug must not hide the tables and other figures
            log.exception("plot %s failed", name)
            errors.append(f"plot {name!r} failed: {type(err).__name__}: {err}")
    return plots, errors
