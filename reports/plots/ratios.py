"""Relative to native, oriented so that higher is always better.

A ratio of times (lower is better) and a ratio of rates (higher is better) point in opposite
directions; on one axis a reader cannot tell overhead from gain. So every ratio is turned into a
*speed* relative to native: driver / native where higher is better, native / driver where lower is
better (marked "inv." on the label), with the bootstrap interval turned the same way. Bars start at
1 (native) on a log axis, so x0.5 and x2 are equally far from it.

A figure measured in adjacent windows next to the host's reference (``PAIRED_RATIOS``: the RTT p50)
is drawn as that paired ratio, not as the ratio of cells measured minutes apart.

Not drawn here: figures that are not quantities or have their own chart (startup phases, idle
memory, leak flags, interference degradations), and figures that repeat another in another unit
(below).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..cells import NATIVE, PAIRED_RATIOS, Cell, CellKey, driver_order
from ..units import plain
from ._base import (
    Plot,
    ci_err,
    colour,
    count_text,
    fixed_params,
    ratio_axis,
    save,
    short_metric,
    short_variants,
    slug,
    tex_safe,
)

__all__ = ["REDUNDANT", "ratio_bars", "speed_rows"]

#: Workloads with a chart of their own, or whose figures have no ratio to native.
OWN_CHART = frozenset({"startup", "idle-memory", "leakage", "interference", "density", "limits"})
#: Metrics that repeat another one of the same chart: cpu.time = events / events_per_second, the
#: average event latency is its reciprocal per thread; a disk job's bandwidth is its IOPS times the
#: block size (seq jobs are read as bandwidth, random ones as IOPS) and its p50 latency at QD1 is
#: 1 / IOPS; the RTT average sits between p50 and p99.
REDUNDANT = (
    "cpu.time",
    "cpu.event_latency.avg",
    "network.tcp_rtt.avg",
    "disk.rand_read.bandwidth",
    "disk.rand_write.bandwidth",
    "disk.seq_read.iops",
    "disk.seq_write.iops",
)
_DROP_SUFFIXES = (".latency.p50", ".latency.p99")  # disk latency has its own absolute figure
_INV = " (inv.)"


def speed_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Per non-native cell: ``speed`` (>1 = better than native) with its 95% bootstrap interval."""
    if summary.empty:
        return pd.DataFrame(columns=["workload", "metric", "variant", "driver", "n", "speed", "lo", "hi"])
    df = summary[
        (summary["driver"] != NATIVE)
        & summary["ratio_to_native"].notna()
        & (summary["ratio_to_native"] > 0)
        & summary["better"].isin(["higher", "lower"])
        & (~summary["unit"].isin(["bool", "ratio"]) | summary["metric"].isin(list(PAIRED_RATIOS)))
        & ~summary["workload"].isin(OWN_CHART)
        & ~summary["metric"].isin(REDUNDANT)
        & ~(summary["workload"].eq("disk") & summary["metric"].str.endswith(_DROP_SUFFIXES))
    ].copy()
    # a paired ratio stands for its figure's ratio: drawn once, from the windows that share the host
    paired = {
        (PAIRED_RATIOS[m], v, d)
        for m, v, d in zip(df["metric"], df["variant"], df["driver"], strict=True)
        if m in PAIRED_RATIOS
    }
    # a boolean Series, not a list: an empty list would select no *columns* of an empty frame
    keep = pd.Series(
        [k not in paired for k in zip(df["metric"], df["variant"], df["driver"], strict=True)],
        index=df.index,
        dtype=bool,
    )
    df = df[keep]
    r = df["ratio_to_native"].to_numpy(dtype=float)
    lo = df["ratio_ci_low"].to_numpy(dtype=float)
    hi = df["ratio_ci_high"].to_numpy(dtype=float)
    inv = (df["better"] == "lower").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        df["speed"] = np.where(inv, 1 / r, r)
        df["lo"] = np.where(inv, 1 / hi, lo)
        df["hi"] = np.where(inv, 1 / lo, hi)
    df["inverted"] = inv
    return df


def _panels(grp: pd.DataFrame, params: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per storage path where there is one (disk), else one panel."""
    storages = {v: str(params.get(v, {}).get("storage", "")) for v in grp["variant"]}
    names = sorted(set(storages.values()))
    if len(names) <= 1:
        return [("", grp)]
    return [(f"storage: {s}", grp[grp["variant"].map(storages) == s]) for s in names]


def _row_labels(
    panel: pd.DataFrame, workload: str, params: Mapping[str, Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    rows = list(dict.fromkeys(zip(panel["metric"], panel["variant"], strict=True)))
    labels: dict[tuple[str, str], str] = {}
    inverted = dict(zip(panel["metric"], panel["inverted"], strict=False))
    for metric in dict.fromkeys(m for m, _ in rows):
        variants = [v for m, v in rows if m == metric]
        short, _ = short_variants(variants, params)
        for v in variants:
            text = short_metric(metric, workload) + (_INV if inverted.get(metric) else "")
            labels[(metric, v)] = tex_safe(f"{text} [{short[v]}]" if short[v] else text)
    return rows, labels


def ratio_bars(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    rows_all = speed_rows(summary)
    params = {k.variant: c.params for k, c in cells.items()}
    plots: list[Plot] = []
    for workload, wgrp in rows_all.groupby("workload", sort=True):
        grp = wgrp.assign(_o=wgrp["driver"].map(driver_order)).sort_values(["metric", "variant", "_o"])
        drivers = sorted(set(grp["driver"]), key=driver_order)
        panels = _panels(grp, params)
        sizes = [len(set(zip(p["metric"], p["variant"], strict=True))) for _, p in panels]
        per_row = 0.16 * len(drivers) + 0.12
        fig = Figure(figsize=(11, 1.4 + sum(per_row * s + 0.6 for s in sizes)))
        gs = fig.add_gridspec(len(panels), 1, height_ratios=[max(1, s) for s in sizes])
        vals = np.concatenate([grp[c].to_numpy(dtype=float) for c in ("speed", "lo", "hi")])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        reach = float(np.max(np.abs(np.log(vals)))) if vals.size else math.log(2)
        reach = max(reach * 1.2 + 0.25, math.log(1.5))
        for pi, (title, panel) in enumerate(panels):
            ax = fig.add_subplot(gs[pi, 0])
            rows, labels = _row_labels(panel, str(workload), params)
            width = 0.8 / len(drivers)
            for di, d in enumerate(drivers):
                sub = panel[panel["driver"] == d].set_index(["metric", "variant"])
                ys, xs, los, his = [], [], [], []
                for yi, key in enumerate(rows):
                    if key in sub.index:
                        rec = sub.loc[key]
                        ys.append(yi + (di - (len(drivers) - 1) / 2) * width)
                        xs.append(float(rec["speed"]))
                        los.append(float(rec["lo"]))
                        his.append(float(rec["hi"]))
                if not ys:
                    continue
                x = np.array(xs)
                err = ci_err(x, los, his)
                ax.barh(
                    ys,
                    x - 1,
                    left=1,
                    height=width * 0.9,
                    xerr=err,
                    capsize=2,
                    error_kw={"elinewidth": 0.8},
                    color=colour(d),
                    label=tex_safe(d) if pi == 0 else None,
                )
                for yy, xx, lo_, hi_ in zip(ys, xs, los, his, strict=True):
                    # Past the whisker, so the number never sits on it.
                    end = hi_ if xx >= 1 else lo_
                    ax.annotate(
                        f"\u00d7{plain(xx, 2)}",
                        (end if math.isfinite(end) and end > 0 else xx, yy),
                        xytext=(3 if xx >= 1 else -3, 0),
                        textcoords="offset points",
                        ha="left" if xx >= 1 else "right",
                        va="center",
                        fontsize=6.5,
                    )
            ax.axvline(1.0, color="black", linewidth=1)
            ratio_axis(ax, reach)
            ax.axvspan(math.exp(-reach), 1, color="#c44e52", alpha=0.05)
            ax.axvspan(1, math.exp(reach), color="#55a868", alpha=0.05)
            ax.set_yticks(range(len(rows)), [labels[r] for r in rows], fontsize=8)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.grid(axis="x", which="major", alpha=0.3)
            if title:
                ax.set_title(tex_safe(title), fontsize=9, loc="left", pad=14)
            ax.text(
                0.01, 1.01, "\u2190 worse than native", transform=ax.transAxes, fontsize=7, color="#c44e52"
            )
            ax.text(
                0.99, 1.01, "better than native \u2192", transform=ax.transAxes, fontsize=7, color="#2a7a3a",
                ha="right",
            )  # fmt: skip
            if pi == len(panels) - 1:
                ax.set_xlabel(
                    "speed relative to native (>1 = better: faster, more throughput, lower latency); log axis"
                )
        fig.axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="driver")
        fig.suptitle(tex_safe(f"{workload}: relative to native, higher is better"))
        caption = (
            "Each bar: a driver's median relative to the native median, oriented so that higher is "
            "better; metrics where lower is better (times, latencies; marked inv.) are drawn as "
            "native / driver. Whiskers: 95% bootstrap interval of the ratio (none at n = 1). "
            f"{count_text(grp['n'])} repetitions per bar (the driver's side)."
        )
        if grp["metric"].isin(list(PAIRED_RATIOS)).any():
            caption += (
                " A paired ratio's bar is the median over adjacent windows of the sandbox and host "
                "loopback, its whiskers the median's order-statistic interval over the pairs (at 3 "
                "pairs their range, which holds the median with 75% confidence)."
            )
        fixed = fixed_params(
            {
                short_metric(str(m), str(workload)): list(g["variant"])
                for m, g in grp.groupby("metric", sort=True)
            },
            params,
        )
        if fixed:
            caption += f" Fixed parameters: {fixed}."
        plots.append(
            Plot(
                "ratios",
                f"{workload}: relative to native",
                save(fig, plots_dir / f"ratio-{slug(str(workload))}.png"),
                caption,
            )
        )
    return plots
