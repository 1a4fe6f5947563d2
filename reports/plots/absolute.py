"""Absolute figures where the path matters: disk per storage path and queue depth, network per driver.

One panel per metric, one group of bars per parameter combination (only the parameters that differ
are named; the fixed ones go to the caption), one bar per driver with the median's interval, values in
human units on the axis and on each bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..cells import Cell, CellKey, driver_order
from ..units import human, unit_label
from ._base import (
    Plot,
    ci_err,
    colour,
    count_text,
    fixed_params,
    human_axis,
    interval_text,
    save,
    short_metric,
    short_variants,
    tex_safe,
)

__all__ = ["ABSOLUTE", "absolute_plots"]

#: Throughput as a reader asks for it (random I/O in IOPS, sequential in bandwidth), and tail latency.
DISK_METRICS = (
    "disk.rand_read.iops",
    "disk.rand_write.iops",
    "disk.seq_read.bandwidth",
    "disk.seq_write.bandwidth",
    "disk.rand_read.latency.p99",
    "disk.rand_write.latency.p99",
    "disk.seq_read.latency.p99",
    "disk.seq_write.latency.p99",
)
NETWORK_METRICS = ("network.tcp_throughput", "network.tcp_rtt.p50", "network.tcp_rtt.p99")


@dataclass(frozen=True)
class _Absolute:
    """One workload's figure of absolute values (its report section is the workload's name)."""

    metrics: Sequence[str]
    title: str
    #: The caption's first sentence(s): what was measured, and how.
    what: str


#: The workloads whose figures show absolute values per driver, by workload.
ABSOLUTE: Mapping[str, _Absolute] = {
    "disk": _Absolute(
        DISK_METRICS,
        "Disk: throughput and p99 latency per storage path and queue depth",
        "fio on the sandbox's root storage and on a volume at /data. Random jobs are shown as "
        "IOPS, sequential ones as bandwidth (the other is the same figure times the block size).",
    ),
    "network": _Absolute(
        NETWORK_METRICS,
        "Network: TCP throughput and round-trip time, host to sandbox",
        "iperf3 (throughput) and sockperf ping-pong (full round trip) over each driver's network.",
    ),
}


def _panel(ax: Axes, rows: pd.DataFrame, labels: Mapping[str, str], drivers: Sequence[str]) -> None:
    groups = list(dict.fromkeys(rows["variant"]))
    width = 0.8 / max(1, len(drivers))
    x = np.arange(len(groups))
    unit = str(rows["unit"].iloc[0])
    for i, d in enumerate(drivers):
        sub = rows[rows["driver"] == d].set_index("variant")
        med = np.array([sub["median"].get(g, np.nan) for g in groups], dtype=float)
        lo = np.array([sub["ci_low"].get(g, np.nan) for g in groups], dtype=float)
        hi = np.array([sub["ci_high"].get(g, np.nan) for g in groups], dtype=float)
        err = ci_err(med, lo, hi)
        xs = x + (i - (len(drivers) - 1) / 2) * width
        ax.bar(xs, med, width * 0.92, yerr=err, capsize=2, label=tex_safe(d), color=colour(d))
        for xx, v in zip(xs, med, strict=True):
            if math.isfinite(v):
                ax.annotate(
                    human(v, unit, 2),
                    (xx, v),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=6,
                )
    top = float(np.nanmax(rows["ci_high"].to_numpy(dtype=float).tolist() + rows["median"].tolist()))
    ax.set_ylim(0, top * 1.35 if math.isfinite(top) and top > 0 else 1)
    scale = human_axis(ax, [top], unit, axis="y")
    ax.set_ylabel(scale.label if scale.label else unit_label(unit))
    if len(groups) > 1 or labels.get(groups[0]):
        # One parameter per line, so neighbouring groups' labels never run into each other.
        ax.set_xticks(
            x, [tex_safe(labels.get(g, g)).replace(", ", "\n") or "(none)" for g in groups], fontsize=7
        )
    else:
        ax.set_xticks([])
    ax.grid(axis="y", alpha=0.3)


def absolute_plots(
    summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path, workload: str
) -> list[Plot]:
    """``workload``'s figure (see :data:`ABSOLUTE`): a panel a metric, a bar a driver and variant."""
    spec = ABSOLUTE[workload]
    metrics, title, section = spec.metrics, spec.title, workload
    rows = summary[(summary["workload"] == workload) & summary["metric"].isin(metrics)]
    present = [m for m in metrics if m in set(rows["metric"])]
    if not present:
        return []
    params = {k.variant: c.params for k, c in cells.items() if k.workload == workload}
    drivers = sorted(set(rows["driver"]), key=driver_order)
    ncols = 1 if len(present) == 1 else 2
    nrows = -(-len(present) // ncols)
    fig = Figure(figsize=(11, 1.0 + 3.0 * nrows))
    for i, metric in enumerate(present):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mrows = rows[rows["metric"] == metric]
        labels, _ = short_variants(mrows["variant"], params)
        _panel(ax, mrows, labels, [d for d in drivers if d in set(mrows["driver"])])
        better = str(mrows["better"].iloc[0])
        ax.set_title(tex_safe(f"{short_metric(metric, workload)} ({better} is better)"), fontsize=9)
    handles, names = fig.axes[0].get_legend_handles_labels()
    top = 1 - 0.55 / (1.0 + 3.0 * nrows)
    fig.suptitle(tex_safe(title), y=0.995)
    fig.legend(
        handles,
        names,
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, top + 0.3 / (1.0 + 3.0 * nrows)),
        ncols=len(drivers),
    )
    fig.tight_layout(rect=(0, 0, 1, top))
    caption = f"{spec.what} Median per driver; whiskers: {interval_text(rows['ci_confidence'])}. "
    caption += f"{count_text(rows['n'])} repetitions per bar."
    fixed = fixed_params(
        {short_metric(str(m), workload): list(g["variant"]) for m, g in rows.groupby("metric", sort=False)},
        params,
    )
    if fixed:
        caption += f" Fixed parameters: {fixed}."
    return [Plot(section, title, save(fig, plots_dir / f"{section}-{workload}.png", layout=False), caption)]
