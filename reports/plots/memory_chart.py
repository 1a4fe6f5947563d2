"""What an idle sandbox costs the host in memory: disjoint parts stacked up to the measured total.

The parts come from :func:`isobench.reports.memory.idle_overhead` (one real repetition, the one
whose total is the median), never from figures that overlap or are not usage (a cgroup's limit, the
host's MemAvailable seen from inside a container). A guest costs ~500x what a container costs, so
containers and guests get a panel each, each on its own linear axis: a log axis would distort the
stacked lengths, and one linear axis would hide the containers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from isobench.model import Sample
from isobench.results import Results
from matplotlib.figure import Figure

from ..cells import NATIVE, driver_order
from ..memory import GUEST_PARTS, idle_overhead
from ..units import human, plain
from ._base import Plot, bar_segment, colour, human_axis, legend_entries, ring, save, tex_safe

log = logging.getLogger(__name__)

__all__ = ["MemoryBar", "draw_memory", "memory_bars", "memory_chart"]

_GUEST_LABELS = frozenset(lbl for _, lbl in GUEST_PARTS)
UNATTRIBUTED = "rest of the measured total"
_PART_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#bbbbbb")


@dataclass(frozen=True)
class MemoryBar:
    driver: str
    guest: bool
    #: Disjoint parts (label, bytes) that sum to exactly ``total``.
    parts: tuple[tuple[str, float], ...]
    total: float
    memavailable_delta: float | None
    n: int
    method: str


def memory_bars(results: Results | Iterable[Sample]) -> tuple[list[MemoryBar], list[str]]:
    """The bars the chart draws, and the drivers that ran idle-memory without a host-side figure."""
    samples = list(results.measured() if isinstance(results, Results) else results)
    bars: list[MemoryBar] = []
    for driver, o in idle_overhead(samples).items():
        parts = list(o.parts)
        attributed = sum(v for _, v in parts)
        if attributed > o.total * (1 + 1e-9):
            # Parts from different instants can exceed the total; a stack longer than the measured
            # figure would be the lie this chart exists to avoid.
            log.warning("%s: idle-memory parts exceed the total; drawing the total alone", driver)
            parts = [("measured total (parts did not add up)", o.total)]
        elif o.total - attributed > o.total * 1e-6:
            parts.append((UNATTRIBUTED, o.total - attributed))
        bars.append(
            MemoryBar(
                driver=driver,
                guest=any(lbl in _GUEST_LABELS for lbl, _ in o.parts),
                parts=tuple(parts),
                total=o.total,
                memavailable_delta=o.memavailable_delta,
                n=len(o.totals),
                method=o.method,
            )
        )
    ran = {s.driver for s in samples if s.workload == "idle-memory"}
    measured = {b.driver for b in bars}
    unmeasured = sorted(ran - measured - {NATIVE}, key=driver_order)
    return bars, unmeasured


def draw_memory(bars: list[MemoryBar], unmeasured: list[str]) -> Figure:
    """Each artist carries a gid ("part", "total", "memavailable") so tests read the chart's own data."""
    panels = [
        ("containers and processes", [b for b in bars if not b.guest], unmeasured),
        ("guests", [b for b in bars if b.guest], []),
    ]
    panels = [p for p in panels if p[1] or p[2]]
    heights = [max(1, len(b) + len(u)) for _, b, u in panels]
    fig = Figure(figsize=(11, 1.2 + 0.55 * sum(heights) + 0.9 * len(panels)))
    grid = fig.add_gridspec(len(panels), 1, height_ratios=heights)
    labels = list(dict.fromkeys(lbl for b in bars for lbl, _ in b.parts))
    part_colour = {lbl: _PART_COLOURS[i % len(_PART_COLOURS)] for i, lbl in enumerate(labels)}
    if UNATTRIBUTED in part_colour:
        part_colour[UNATTRIBUTED] = _PART_COLOURS[-1]
    shown: set[str] = set()
    for row, (title, pbars, missing) in enumerate(panels):
        ax = fig.add_subplot(grid[row, 0])
        names = [b.driver for b in pbars] + missing
        y = np.arange(len(names))
        reach = [max(b.total, b.memavailable_delta or 0.0) for b in pbars] or [1.0]
        top = max(reach)
        for yi, b in enumerate(pbars):
            left = 0.0
            for lbl, v in b.parts:
                bar_segment(
                    ax,
                    yi,
                    v,
                    left=left,
                    height=0.6,
                    colour=part_colour[lbl],
                    label=lbl,
                    labelled=shown,
                    gid="part",
                )
                left += v
            ax.plot(
                [b.total],
                [yi],
                marker="|",
                markersize=22,
                markeredgewidth=2.5,
                color="black",
                linestyle="none",
                label=None if "total" in shown else "measured host-side total",
                gid="total",
            )
            shown.add("total")
            if b.memavailable_delta is not None:
                ring(
                    ax,
                    b.memavailable_delta,
                    yi,
                    marker="D",
                    size=8,
                    colour="#c44e52",
                    label=None if "avail" in shown else "host MemAvailable drop (cross-check, not stacked)",
                    gid="memavailable",
                )
                shown.add("avail")
            end = max(b.total, b.memavailable_delta or 0.0)
            ax.annotate(
                "total " + human(b.total, "bytes"),
                (end, yi),
                xytext=(8, 0 if b.memavailable_delta is None else 5),
                textcoords="offset points",
                va="center",
                fontsize=9,
                fontweight="bold",
            )
            if b.memavailable_delta is not None:
                ax.annotate(
                    "MemAvailable drop " + human(b.memavailable_delta, "bytes"),
                    (end, yi),
                    xytext=(8, -7),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="#c44e52",
                )
        for yi in range(len(pbars), len(names)):
            ax.annotate(
                "not measured (no host-side figure for this driver)",
                (0, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color="#666666",
                style="italic",
            )
        ax.set_yticks(y, [tex_safe(n) for n in names])
        for tick, n in zip(ax.get_yticklabels(), names, strict=True):
            tick.set_color(colour(n))
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlim(0, top * 1.4)
        scale = human_axis(ax, [top * 1.4], "bytes")
        ax.set_xlabel(f"host memory ({scale.label}), linear axis of this panel")
        ax.set_title(tex_safe(title), fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    entries = legend_entries(fig)
    fig.axes[0].legend(
        list(entries.values()), list(entries), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0)
    )
    fig.suptitle("Idle memory overhead on the host, per sandbox")
    return fig


def _caption(bars: list[MemoryBar], unmeasured: list[str]) -> str:
    ns = sorted({b.n for b in bars})
    n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}\u2013{ns[-1]}"
    text = (
        "What one idle sandbox costs the host, from the repetition whose total is the median "
        f"({n_text} repetitions per driver). Guests: the hypervisor process's memory excluding the "
        "guest-RAM mapping, plus the guest RAM the host has backed (smaps); containers: the cgroup's "
        "memory usage. The bar ends at the measured host-side total (black tick); the red diamond is "
        "the drop of the host's MemAvailable over the guest's life, a cross-check that also counts "
        "page cache and kernel memory, so it is not stacked. Containers and guests are on separate "
        "linear axes."
    )
    guests = [b.total for b in bars if b.guest]
    others = [b.total for b in bars if not b.guest and b.total > 0]
    if guests and others:
        g, c = float(np.median(guests)), float(np.median(others))
        text += (
            f" An idle guest costs {human(g, 'bytes')}, about {plain(g / c, 2)} times what an idle "
            f"container costs ({human(c, 'bytes')}; medians over the drivers of each kind)."
        )
    if unmeasured:
        text += f" Not measured (no host-side figure): {', '.join(unmeasured)}."
    return text


def memory_chart(results: Results | Iterable[Sample], plots_dir: Path) -> list[Plot]:
    bars, unmeasured = memory_bars(results)
    if not bars:
        return []
    fig = draw_memory(bars, unmeasured)
    return [
        Plot(
            "memory",
            "Idle memory overhead",
            save(fig, plots_dir / "memory-overhead.png"),
            _caption(bars, unmeasured),
        )
    ]
