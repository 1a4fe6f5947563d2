"""Density: what one more idle sandbox costs as N grows, per driver, on log scales.

Two figures from the ``density`` workload: memory per instance vs N (the host's MemAvailable drop /
N as solid lines, the parts the driver attributes to its sandboxes / N dashed), and start latency vs
N (the N-th create with N-1 running; and the time until all N are ready, started one after another
vs all at once). Both axes are logarithmic: N spans 1..100 and a guest costs ~100x a container. A
value that is zero or negative (a MemAvailable drop lost in the host's own noise) has no place on a
log axis; it is left out and the caption says how many were.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from isobench.model import Sample
from isobench.results import Results
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter

from ..cells import Cell, CellKey, driver_order
from ._base import Plot, colour, count_text, human_ticks, save, tex_safe

__all__ = ["Series", "density_plots", "density_series", "stop_notes"]

#: (driver, metric, start mode or "") -> {N: median}
Series = dict[tuple[str, str, str], dict[int, float]]

_MEMORY = (
    ("density.attributable_per_instance", "-", "attributed by the driver / N"),
    ("density.attributable_ksm_per_instance", ":", "attributed, net of KSM's saving / N"),
    ("density.memavailable_drop_per_instance", "--", "MemAvailable drop / N (noisy)"),
)
#: Lines of a figure's noisier measure are drawn lighter, so the reliable one reads first.
_FAINT = frozenset({"density.memavailable_drop_per_instance"})


def density_series(cells: Mapping[CellKey, Cell]) -> tuple[Series, list[int]]:
    """Per (driver, metric, start mode) the median at each N, and how many values stand behind each."""
    series: Series = {}
    ns: list[int] = []
    for key, c in cells.items():
        if key.workload != "density" or not c.values:
            continue
        n = c.params.get("n")
        if not isinstance(n, int | float):
            continue
        mode = str(c.params.get("start", ""))
        series.setdefault((key.driver, key.metric, mode), {})[int(n)] = float(np.median(c.values))
        ns.append(len(c.values))
    return series, ns


def stop_notes(samples: Iterable[Sample]) -> dict[str, str]:
    """Per driver, the N reached and why the ramp stopped, from the last ``density.n_reached``."""
    notes: dict[str, str] = {}
    for s in samples:
        if s.workload == "density" and s.metric == "density.n_reached" and s.value is not None:
            why = s.metadata.get("stopped", "?")
            notes[s.driver] = f"{s.driver} N={s.value:.0f} ({'all steps' if why == 'done' else why})"
    return dict(sorted(notes.items(), key=lambda kv: driver_order(kv[0])))


def _n_axis(ax: Axes, ns: Iterable[int]) -> None:
    ax.set_xscale("log")
    ticks = sorted(set(ns))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    ax.set_xlabel("N sandboxes running")
    ax.grid(True, which="major", alpha=0.3)


def _lines(
    ax: Axes, series: Series, picks: Iterable[tuple[str, str, str]], unit: str
) -> tuple[int, list[int]]:
    """Draw (metric, mode, line style) per driver; returns how many points were left out (<= 0)
    and every N drawn."""
    dropped = 0
    all_n: list[int] = []
    drivers = sorted({d for d, _, _ in series}, key=driver_order)
    for metric, mode, style in picks:
        for d in drivers:
            points = series.get((d, metric, mode))
            if not points:
                continue
            xs = sorted(n for n, v in points.items() if v > 0 and math.isfinite(v))
            dropped += len(points) - len(xs)
            if not xs:
                continue
            all_n += xs
            faint = metric in _FAINT
            ax.plot(
                xs,
                [points[n] for n in xs],
                style,
                marker="o",
                ms=3 if faint else 4,
                lw=1.0 if faint else 1.8,
                alpha=0.55 if faint else 1.0,
                color=colour(d),
                gid=f"{d}|{metric}|{mode}",
            )
    if all_n:
        ax.set_yscale("log")
        human_ticks(ax, unit, axis="y")
        _n_axis(ax, all_n)
    return dropped, all_n


def _legend(fig: Figure, series: Series, styles: Iterable[tuple[str, str]]) -> None:
    """One legend beside the panels: a colour per driver, a line style per measure."""
    drivers = sorted({d for d, _, _ in series}, key=driver_order)
    handles = [Line2D([], [], color=colour(d), lw=2, label=tex_safe(d)) for d in drivers]
    handles += [
        Line2D([], [], color="black", ls=style, lw=1.5, label=tex_safe(what)) for style, what in styles
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)


def density_plots(
    cells: Mapping[CellKey, Cell], plots_dir: Path, samples: Results | Iterable[Sample] = ()
) -> list[Plot]:
    series, ns = density_series(cells)
    if not series:
        return []
    measured = samples.measured() if isinstance(samples, Results) else samples
    notes = stop_notes(measured)
    reached = ("N reached: " + "; ".join(notes.values()) + ". ") if notes else ""
    plots: list[Plot] = []

    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    dropped, drawn = _lines(ax, series, [(m, "", s) for m, s, _ in _MEMORY], "bytes")
    if drawn:
        present = {m for _, m, _ in series}
        _legend(fig, series, [(s, w) for m, s, w in _MEMORY if m in present])
        ax.set_title("Host memory per idle sandbox vs N (log-log)", fontsize=10)
        ax.set_ylabel("bytes per sandbox")
        caption = (
            "Solid: what the driver attributes to its sandboxes (cgroup usage; qemu without guest "
            "RAM plus guest RAM backed), divided by N; dotted (runs with ksm = true): the same net of "
            "what KSM shared host-wide; dashed and faint: the host's MemAvailable drop since before "
            "the first sandbox, divided by N (all of it: runtime processes, page tables, and anything "
            "else the host did meanwhile, so only meaningful on a quiet host). A flat line is a constant cost per sandbox; a falling one, a "
            f"fixed cost shared by more sandboxes. {reached}"
        )
        if dropped:
            caption += f"{dropped} value(s) at or below zero (host noise) are not drawn. "
        plots.append(
            Plot(
                "density",
                "Memory per sandbox vs N",
                save(fig, plots_dir / "density-memory.png", layout=False),
                caption + f"{count_text(ns)} per point (median).",
            )
        )

    fig = Figure(figsize=(13, 5.2), layout="constrained")
    left = fig.add_subplot(1, 2, 1)
    right = fig.add_subplot(1, 2, 2)
    d1, drawn1 = _lines(left, series, [("density.start_latency_nth", "", "-")], "seconds")
    d2, drawn2 = _lines(
        right,
        series,
        [
            ("density.ready_all", "sequential", "-"),
            ("density.ready_all", "concurrent", "--"),
        ],
        "seconds",
    )
    if drawn1 or drawn2:
        _legend(fig, series, [("-", "N-th start; one after another"), ("--", "all at once")])
        left.set_title("Start latency of the N-th sandbox (N-1 running)", fontsize=10)
        right.set_title("Time until all N are ready", fontsize=10)
        left.set_ylabel("seconds")
        fig.suptitle("Start-up vs N (log-log)")
        caption = (
            "Left: how long the N-th create took with N-1 sandboxes already running (does start-up "
            "slow down as the host fills?). Right: time until all N were ready, started one after "
            "another (solid: the sum of the creates) and all at once from a thread pool (dashed). "
            f"{reached}{count_text(ns)} per point (median)."
        )
        if d1 + d2:
            caption += f" {d1 + d2} value(s) at zero are not drawn."
        path = save(fig, plots_dir / "density-startup.png", layout=False)
        plots.append(Plot("density", "Start-up vs N", path, caption))
    return plots
