"""Startup: where the time to a ready sandbox goes, phase by phase, and how much it varies.

A process starts in ~2 ms and a TCG guest in ~3 s; on one linear axis the first is invisible. So
the timeline has one panel per kind (processes and containers, guests), each on its own linear axis
in its own unit, where stacked phase lengths stay honest; the distributions use a log axis.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from isobench.model import Sample
from matplotlib.figure import Figure

from ..cells import Cell, CellKey, driver_order, variant_of
from ..units import human
from ._base import (
    Plot,
    bar_segment,
    count_text,
    distinct_colours,
    human_axis,
    human_ticks,
    kinds,
    label,
    legend_entries,
    save,
    short_metric,
    tex_safe,
)

__all__ = ["PhaseLayout", "lanes", "split_by_scale", "startup_distribution", "startup_timeline"]

_MAX_PANELS = 6
#: The question first: how long until the sandbox is usable.
_ORDER = ("startup.to_ready", "startup.exec", "startup.to_exit", "startup.total")


@dataclass(frozen=True)
class PhaseLayout:
    """Where startup phases go on the timeline: each driver's phases in the order it recorded them,
    each phase's median start (``offset_s``, from the first phase's start) per driver and variant, and
    which phases ran side by side."""

    orders: Mapping[str, Sequence[str]]
    offsets: Mapping[tuple[str, str, str], float]
    #: (driver, variant) -> pairs of phases that overlapped without one holding the other in most
    #: starts where both were recorded: work done at the same time (the runner making a cgroup while
    #: its helper clones), which one bar drawn end to end would show as one after the other.
    concurrent: Mapping[tuple[str, str], frozenset[frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> PhaseLayout:
        orders: dict[str, list[str]] = {}
        offsets: dict[tuple[str, str, str], list[float]] = {}
        starts: dict[tuple[str, str, str, int], dict[str, tuple[float, float]]] = {}
        for s in samples:
            if s.workload != "startup" or not s.phase:
                continue
            order = orders.setdefault(s.driver, [])
            if s.phase not in order:
                order.append(s.phase)
            off, variant = s.metadata.get("offset_s"), variant_of(s.params)
            if isinstance(off, int | float) and math.isfinite(off):
                offsets.setdefault((s.driver, variant, s.phase), []).append(float(off))
                if s.value is not None:
                    one = starts.setdefault((s.run_id, s.driver, variant, s.repetition), {})
                    one[s.phase] = (float(off), float(off) + float(s.value))
        return cls(orders, {k: float(np.median(v)) for k, v in offsets.items()}, _concurrent(starts))


def _concurrent(
    starts: Mapping[tuple[str, str, str, int], Mapping[str, tuple[float, float]]],
) -> dict[tuple[str, str], frozenset[frozenset[str]]]:
    votes: dict[tuple[str, str], dict[frozenset[str], list[bool]]] = {}
    for (_, driver, variant, _), phases in starts.items():
        mine = votes.setdefault((driver, variant), {})
        names = sorted(phases)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                (s1, e1), (s2, e2) = phases[a], phases[b]
                nested = (s2 <= s1 and e1 <= e2) or (s1 <= s2 and e2 <= e1)
                mine.setdefault(frozenset((a, b)), []).append(min(e1, e2) > max(s1, s2) and not nested)
    return {
        dv: frozenset(pair for pair, seen in pairs.items() if 2 * sum(seen) > len(seen))
        for dv, pairs in votes.items()
    }


def _spans(
    driver: str, variant: str, durations: Mapping[str, float], layout: PhaseLayout, all_phases: Sequence[str]
) -> list[tuple[str, float, float]]:
    """(phase, start, duration): at the recorded median offset where there is one (so a phase nested
    in another sits where it happened and is not counted twice), else after the previous phase."""
    seq = [p for p in layout.orders.get(driver, ()) if p in durations]
    seq += [p for p in all_phases if p in durations and p not in seq]
    left = 0.0
    spans: list[tuple[str, float, float]] = []
    for p in seq:
        start = layout.offsets.get((driver, variant, p))
        begin = left if start is None else start
        spans.append((p, begin, durations[p]))
        left = begin + durations[p]
    return spans


def lanes(spans: Sequence[tuple[str, float, float]], concurrent: Collection[frozenset[str]]) -> list[int]:
    """A lane for each span: 0, unless it ran concurrently with a span already in a lane (see
    :attr:`PhaseLayout.concurrent`), then the first lane holding none it ran beside."""
    placed: list[list[str]] = []
    out = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: (spans[i][1], -spans[i][2])):
        name = spans[i][0]
        lane = next(
            (k for k, there in enumerate(placed) if not any({name, o} in concurrent for o in there)), None
        )
        if lane is None:
            lane = len(placed)
            placed.append([])
        placed[lane].append(name)
        out[i] = lane
    return out


#: A panel's legend lists this many phases in one column; more take two.
_LEGEND_ROWS = 12

#: Bars share a panel while the longest is at most this many times the shortest: beyond it the
#: short one would be a sliver (a 4 ms native start next to a 340 ms runc one).
_SCALE_SPREAD = 12.0


def split_by_scale(
    members: Sequence[tuple[str, str]], end_of: Mapping[tuple[str, str], float]
) -> list[list[tuple[str, str]]]:
    """Members split into panels of similar length, shortest first, each in driver order."""
    clusters: list[list[tuple[str, str]]] = []
    for dv in sorted(members, key=lambda m: end_of[m]):
        if clusters and end_of[dv] <= _SCALE_SPREAD * max(end_of[clusters[-1][0]], 1e-12):
            clusters[-1].append(dv)
        else:
            clusters.append([dv])
    return [sorted(c, key=lambda dv: (driver_order(dv[0]), dv[1])) for c in clusters]


def startup_timeline(
    summary: pd.DataFrame,
    cells: Mapping[CellKey, Cell],
    plots_dir: Path,
    layout: PhaseLayout,
) -> list[Plot]:
    phased = [c for c in cells.values() if c.key.workload == "startup" and c.phase]
    if not phased:
        return []
    bars: dict[tuple[str, str], dict[str, float]] = {}
    for c in phased:
        bars.setdefault((c.key.driver, c.key.variant), {})[str(c.phase)] = float(np.median(c.values))
    all_phases: list[str] = []
    for d in sorted(layout.orders, key=driver_order):
        all_phases += [p for p in layout.orders[d] if p not in all_phases]
    all_phases += sorted({p for b in bars.values() for p in b} - set(all_phases))
    order = sorted(bars, key=lambda dv: (driver_order(dv[0]), dv[1]))
    spans_of = {dv: _spans(*dv, bars[dv], layout, all_phases) for dv in order}
    end_of = {dv: max((st + w for _, st, w in spans_of[dv]), default=0.0) for dv in order}
    groups = [
        (name, cluster)
        for name, ds in kinds(list(dict.fromkeys(d for d, _ in order)))
        for clusters in [split_by_scale([dv for dv in order if dv[0] in ds], end_of)]
        for cluster in clusters
    ]
    # Each panel has its own colours and legend: the phases of its drivers only (~10-17), so no two
    # phases of one bar need the same or a near colour, as ~30 phases of every driver in one legend did.
    drawn = [{p for dv in members for p, _, _ in spans_of[dv]} for _, members in groups]
    panel_phases = [[p for p in all_phases if p in here] for here in drawn]
    legend_cols = [1 if len(ps) <= _LEGEND_ROWS else 2 for ps in panel_phases]
    heights = [
        max(0.9 + 0.5 * len(g), 0.3 + 0.15 * -(-len(ps) // cols))
        for (_, g), ps, cols in zip(groups, panel_phases, legend_cols, strict=True)
    ]
    fig = Figure(figsize=(11, 1.0 + sum(heights)))
    gs = fig.add_gridspec(len(groups), 1, height_ratios=heights)
    unit = phased[0].unit or "seconds"
    ends_all = [max((end_of[dv] for dv in members), default=0.0) for _, members in groups]
    for gi, (name, members) in enumerate(groups):
        ax = fig.add_subplot(gs[gi, 0])
        colours = dict(zip(panel_phases[gi], distinct_colours(len(panel_phases[gi])), strict=True))
        labelled: set[str] = set()
        ends: list[float] = []
        for yi, (driver, variant) in enumerate(members):
            spans = spans_of[(driver, variant)]
            lane_of = dict(
                zip(spans, lanes(spans, layout.concurrent.get((driver, variant), ())), strict=True)
            )
            height = 0.65 / (max(lane_of.values(), default=0) + 1)
            # Longest first, so phases nested inside a longer one are drawn on top and stay visible.
            for span in sorted(spans, key=lambda sp: -sp[2]):
                p, start, width = span
                y = yi - 0.325 + (lane_of[span] + 0.5) * height
                inner = [sp for sp in spans if lane_of[sp] == lane_of[span] and sp != span]
                leaf = not any(start <= st2 and st2 + w2 <= start + width for _, st2, w2 in inner)
                # A phase holding others is hatched: where it shows between them, its time went to
                # nothing recorded inside it (a guest's kernel decompressing before it prints).
                bar_segment(
                    ax,
                    y,
                    width,
                    left=start,
                    height=height,
                    colour=colours[p],
                    label=p,
                    labelled=labelled,
                    hatch=None if leaf else "////",
                )
                if leaf and width >= 0.07 * max(ends_all[gi], 1e-12):
                    ax.text(start + width / 2, y, tex_safe(p), ha="center", va="center", fontsize=7)
            end = max((st + w for _, st, w in spans), default=0.0)
            ends.append(end)
            ax.annotate(
                human(end, unit),
                (end, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        top = max(ends, default=0.0) * 1.15 or 1.0
        ax.set_xlim(0, top)
        scale = human_axis(ax, [top], unit)
        ax.set_xlabel(f"median time since the first phase began ({scale.label})")
        ax.set_yticks(range(len(members)), [label(d, v) for d, v in members])
        ax.set_ylim(len(members) - 0.5, -0.5)
        ax.set_title(tex_safe(f"{name}: own time axis"), fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        found = legend_entries(ax)
        names = [tex_safe(p) for p in panel_phases[gi] if tex_safe(p) in found]
        ax.legend(
            [found[n] for n in names],
            names,
            title="phase",
            fontsize=7,
            title_fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncols=legend_cols[gi],
            borderaxespad=0.0,
        )
    fig.suptitle("Startup phases per driver: create to ready, the command, teardown")
    fig.tight_layout()
    ns = [len(c.values) for c in phased]
    path = save(fig, plots_dir / "startup-timeline.png", layout=False)
    return [
        Plot(
            "startup",
            "Startup phase timeline",
            path,
            "Median duration of each startup phase per driver, in the order the driver recorded them "
            "(a phase nested in another is drawn at its recorded offset, on top of the enclosing phase, which is "
            "hatched: where it shows, its time went to nothing recorded inside it; phases that ran at the same "
            "time without nesting, such as the runner's work beside its helper's, share the bar in lanes). "
            "Each panel has its own "
            "linear time axis: processes and containers apart from guests, and sandboxes more than "
            f"{_SCALE_SPREAD:.0f} times faster than the next apart from it, so no bar is a sliver. {count_text(ns)} starts per phase.",
        )
    ]


def startup_distribution(summary: pd.DataFrame, cells: Mapping[CellKey, Cell], plots_dir: Path) -> list[Plot]:
    totals = [c for c in cells.values() if c.key.workload == "startup" and not c.phase]
    if not totals:
        return []
    present = list(dict.fromkeys(c.key.metric for c in totals))
    metrics = sorted(present, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))[
        :_MAX_PANELS
    ]
    rows = max(sum(1 for c in totals if c.key.metric == m) for m in metrics)
    ncols = 1 if len(metrics) == 1 else 2
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(11, max(3.0, nrows * (0.8 + 0.4 * rows))))
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mc = sorted(
            (c for c in totals if c.key.metric == metric),
            key=lambda c: (driver_order(c.key.driver), c.key.variant),
        )
        ax.boxplot([list(c.values) for c in mc], orientation="horizontal", widths=0.6)
        ax.set_yticks(range(1, len(mc) + 1), [label(c.key.driver, c.key.variant) for c in mc], fontsize=8)
        ax.invert_yaxis()
        values = [v for c in mc for v in c.values]
        lo, hi = min(values), max(values)
        unit = mc[0].unit or "seconds"
        log = lo > 0 and hi / lo > 20
        if log:
            ax.set_xscale("log")
            human_ticks(ax, unit)
            ax.set_xlabel("log axis")
        else:
            ax.set_xlabel(human_axis(ax, values, unit).label)
        ax.set_title(tex_safe(short_metric(metric, "startup")), fontsize=9)
        ax.grid(axis="x", which="both", alpha=0.2)
    fig.suptitle("Start-time distributions")
    return [
        Plot(
            "startup",
            "Start-time distributions",
            save(fig, plots_dir / "startup-distribution.png"),
            "Every measured start per driver (box: quartiles, line: median, whiskers: 1.5 IQR); a log "
            "axis where the fastest and slowest differ more than 20-fold. to_ready: until the sandbox "
            "can run a command (bwrap's before any of its namespaces exist: it makes them in every "
            "exec); exec: running `true` in it; to_exit: both (since results schema 15), the "
            "headline's start; total: the whole life, teardown and the check run the runc, docker "
            "and bwrap drivers make inside their create included. "
            f"{count_text(len(c.values) for c in totals)} starts per box.",
        )
    ]
