"""What every figure shares: the Plot record, the report's figure sections, colours, labels, units.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global backend or figure state).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from isobench.drivers.base import registered_capabilities
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, Locator, MaxNLocator
from numpy.typing import ArrayLike

from ..cells import Cell, driver_order
from ..units import Scale, axis_scale, human, plain

__all__ = [
    "DPI",
    "OPTIONAL_SECTIONS",
    "SECTIONS",
    "Plot",
    "bar_segment",
    "ci_err",
    "colour",
    "count_text",
    "distinct_colours",
    "fixed_params",
    "human_axis",
    "interval_text",
    "label",
    "legend_entries",
    "ring",
    "save",
    "short_metric",
    "short_variants",
    "slug",
    "tex_safe",
]

#: Report sections that have figures, in report order, with their headings.
SECTIONS: dict[str, str] = {
    "startup": "Startup",
    "memory": "Memory overhead",
    "ratios": "Relative to native (higher is better)",
    "disk": "Disk I/O per storage path",
    "network": "Network",
    "leakage": "Information leakage",
    "interference": "Noisy-neighbour interference",
    "density": "Density: sandboxes per host",
    "layers": "Layers and snapshots: what depth costs",
}
#: Sections of opt-in workloads: a run without them is not missing anything.
OPTIONAL_SECTIONS = frozenset({"density", "layers"})

DPI = 100

_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974")
#: The drivers with a colour of their own, in the order they get one (docker appended, so the
#: others keep theirs).
_KNOWN = ("host", "container", "runc", "bwrap", "vm", "qemu", "docker")


@dataclass(frozen=True)
class Plot:
    section: str
    title: str
    path: Path
    caption: str


def tex_safe(text: str) -> str:
    # Labels come from sample data; a "$" would start matplotlib mathtext and can fail to parse.
    return text.replace("$", r"\$")


def colour(driver: str) -> str:
    """One fixed colour per driver in every figure (and over runs), so a legend is learnt once."""
    if driver in _KNOWN:
        return _PALETTE[_KNOWN.index(driver)]
    return _PALETTE[len(_KNOWN) + sum(map(ord, driver)) % (len(_PALETTE) - len(_KNOWN))]


def distinct_colours(n: int) -> list[Any]:
    """One colour per phase: several drivers together record ~24 phase names, more than a
    qualitative palette holds, and a reused colour would make two phases read as one."""
    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:  # tab20's dark shades first: its pairs (dark, light) are one hue, kept far apart
        return [matplotlib.colormaps["tab20"](2 * i % 20 + 2 * i // 20) for i in range(n)]
    # Golden-ratio steps through the map: phases recorded one after another land far apart in hue.
    return [matplotlib.colormaps["turbo"](0.05 + 0.9 * ((i * 0.618034) % 1.0)) for i in range(n)]


def slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-")[:80] or "x"


def save(fig: Figure, path: Path, *, layout: bool = True) -> Path:
    """Write ``fig`` as a PNG; ``layout=False`` for a figure that was laid out already (a legend
    beside it, a colour bar under some panels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    return path


def label(driver: str, variant: str = "") -> str:
    return tex_safe(f"{driver} ({variant})" if variant else driver)


def sorted_drivers(drivers: Iterable[str]) -> list[str]:
    return sorted(set(drivers), key=driver_order)


def short_metric(metric: str, workload: str) -> str:
    """The metric without its workload prefix: ``disk.rand_read.iops`` -> ``rand_read.iops``."""
    return metric.removeprefix(f"{workload}.") or metric


def short_variants(
    variants: Iterable[str], params: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], str]:
    """Labels that keep only the parameters that differ between ``variants``, and the constant ones
    as one sentence for a caption: ``({"v1": "storage=root", ...}, "bs=4k, direct=true")``."""
    vs = list(dict.fromkeys(variants))
    keys = sorted({k for v in vs for k in params.get(v, {})})
    varying: list[str] = []
    seen: set[tuple[int, ...]] = set()
    for k in keys:
        values = [repr(params.get(v, {}).get(k)) for v in vs]
        if len(set(values)) < 2:
            continue
        # A key that splits the variants exactly as an earlier one (file and size_bytes, threads
        # and variant) says nothing new on a label.
        partition = tuple(values.index(x) for x in values)
        if partition not in seen:
            seen.add(partition)
            varying.append(k)
    constant = [k for k in keys if len({repr(params.get(v, {}).get(k)) for v in vs}) < 2]
    first = params.get(vs[0], {}) if vs else {}
    out = {v: ", ".join(f"{k}={_value(params.get(v, {}).get(k))}" for k in varying) for v in vs}
    return out, ", ".join(f"{k}={_value(first.get(k))}" for k in constant)


def fixed_params(
    variants_by_metric: Mapping[str, Iterable[str]], params: Mapping[str, Mapping[str, Any]]
) -> str:
    """The parameters a figure holds fixed, for its caption: those shared by every metric once,
    then what is fixed for one metric only (``direct=true; rand_read.iops: bs=4k``)."""
    per_metric: dict[str, dict[str, str]] = {}
    for metric, variants in variants_by_metric.items():
        vs = list(dict.fromkeys(variants))
        keys = sorted({k for v in vs for k in params.get(v, {})})
        per_metric[metric] = {
            k: _value(params.get(vs[0], {}).get(k))
            for k in keys
            if len({repr(params.get(v, {}).get(k)) for v in vs}) == 1
        }
    if not per_metric:
        return ""
    maps = list(per_metric.values())
    common = {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}
    parts = [", ".join(f"{k}={v}" for k, v in common.items())] if common else []
    for metric, fixed in per_metric.items():
        rest = {k: v for k, v in fixed.items() if k not in common}
        if rest:
            parts.append(f"{metric}: " + ", ".join(f"{k}={v}" for k, v in rest.items()))
    return "; ".join(parts)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "-"
    return str(v)


def interval_text(confidences: Iterable[float]) -> str:
    """What a median's whisker or band is, in words, with the confidence it really has: the exact
    order-statistic interval reaches 95% from n = 6; below, it is the range (n = 3: 75%)."""
    real = sorted({round(float(c), 3) for c in confidences if math.isfinite(float(c))})
    if not real:
        return "no interval (one value each)"
    if real[0] >= 0.95:
        return "the median's exact interval (at least 95% confidence)"
    return (
        f"the median's exact interval; at few values the range, with only {real[0]:.0%} confidence "
        "(none at n = 1)"
    )


def count_text(ns: Iterable[int]) -> str:
    """``n = 3`` or ``n = 1-5`` for a caption: how many measurements stand behind each mark."""
    vals = sorted({int(n) for n in ns})
    if not vals:
        return "n = 0"
    return f"n = {vals[0]}" if len(vals) == 1 else f"n = {vals[0]}\u2013{vals[-1]}"


def human_axis(ax: Axes, values: Iterable[float], unit: str, *, axis: str = "x") -> Scale:
    """Label an axis in one human unit chosen by its largest value (never 1e8 or raw bytes); the
    data stay raw and only the tick labels are divided."""
    scale = axis_scale(values, unit)
    fmt = FuncFormatter(lambda v, _pos: _tidy(plain(v / scale.divisor, 3)) if math.isfinite(v) else "")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(_ScaledLocator(scale.divisor))
    target.set_major_formatter(fmt)
    return scale


class _ScaledLocator(MaxNLocator):
    """Round ticks in the shown unit (100 KiB, 200 KiB), not round numbers of raw bytes."""

    def __init__(self, divisor: float) -> None:
        super().__init__(nbins="auto", steps=[1, 2, 2.5, 5, 10])
        self._divisor = divisor

    def tick_values(self, vmin: float, vmax: float) -> Any:
        return np.asarray(super().tick_values(vmin / self._divisor, vmax / self._divisor)) * self._divisor


def _tidy(text: str) -> str:
    """``1.0 ms`` -> ``1 ms``, ``2.50`` -> ``2.5`` on a tick, where the round value is the point."""
    return re.sub(r"^(-?\d+)(?:\.0*|(\.\d*?[1-9])0+)(?=\D|$)", r"\1\2", text)


class _HumanLogLocator(Locator):
    """Log ticks at 1, 10, 100 of each unit prefix (1 MiB, 10 MiB, 100 MiB; not 0.95 MiB), with 2
    and 5 in between when the axis spans less than three decades (else one label is all it gets)."""

    def __init__(self, prefix_step: float) -> None:
        self._step = prefix_step

    def __call__(self) -> Any:
        lo, hi = self.axis.get_view_interval() if self.axis else (1.0, 10.0)
        return self.tick_values(lo, hi)

    def tick_values(self, vmin: float, vmax: float) -> Any:
        lo, hi = sorted((max(vmin, 1e-300), max(vmax, 1e-300)))
        subs = (1, 2, 5) if math.log10(hi / lo) <= 2.5 else (1,)
        first = math.floor(math.log(lo, self._step)) - 1
        last = math.ceil(math.log(hi, self._step)) + 1
        ticks = {self._step**k * d * m for k in range(first, last + 1) for d in (1, 10, 100) for m in subs}
        return np.array(sorted(t for t in ticks if lo <= t <= hi))


def human_ticks(ax: Axes, unit: str, *, axis: str = "x") -> None:
    """Every tick in its own unit (1 ms, 10 ms, 1 s): for log axes spanning several prefixes."""
    fmt = FuncFormatter(lambda v, _pos: _tidy(human(v, unit, 2)) if v > 0 and math.isfinite(v) else "")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(_HumanLogLocator(1024.0 if unit in ("bytes", "bytes_per_second") else 1000.0))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


#: Ratio ticks in pairs equally far from 1 on a log axis (x0.5 and x2, x0.8 and x1.25).
_RATIO_TICKS = (
    1e-3,
    2e-3,
    5e-3,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    0.8,
    1.0,
    1.25,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
)


def _ratio_tick(v: float) -> str:
    if v <= 0 or not math.isfinite(v):
        return ""
    text = plain(v, 3)
    return "\u00d7" + (text.rstrip("0").rstrip(".") if "." in text else text)


def ratio_axis(ax: Axes, reach: float, axis: str = "x") -> None:
    """A log axis of ratios from 1/e**reach to e**reach, ticks written x0.5, x1, x2 (never 10^0)."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    lo, hi = math.exp(-reach), math.exp(reach)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    # Outward from 1, keeping ticks at least a ninth of the axis apart so labels never collide.
    gap = 2 * reach / 9
    ticks = [1.0]
    for side in (
        [t for t in _RATIO_TICKS if 1 < t <= hi],
        [t for t in reversed(_RATIO_TICKS) if lo <= t < 1],
    ):
        last = 1.0
        for t in side:
            if abs(math.log(t) - math.log(last)) >= gap:
                ticks.append(t)
                last = t
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: _ratio_tick(v)))
    target.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def ci_err(mid: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> Any:
    """Error-bar lengths (2 x n) for an interval around ``mid``; none drawn (NaN) where the interval
    is unknown or has no width (n = 1), so a lone cap never poses as a measured interval."""
    m = np.asarray(mid, dtype=float)
    below = np.clip(m - np.asarray(lo, dtype=float), 0, None)
    above = np.clip(np.asarray(hi, dtype=float) - m, 0, None)
    none = ~(np.isfinite(below) & np.isfinite(above)) | ((below == 0) & (above == 0))
    return np.vstack([np.where(none, np.nan, below), np.where(none, np.nan, above)])


def bar_segment(
    ax: Axes,
    y: float,
    width: float,
    *,
    left: float,
    height: float,
    colour: Any,
    label: str,
    labelled: set[str],
    **kw: Any,
) -> None:
    """One segment of a horizontal stacked bar, white-edged so neighbours stay apart; its label goes
    into the legend the first time only (``labelled`` remembers which have)."""
    shown = None if label in labelled else tex_safe(label)
    ax.barh(y, width, left=left, height=height, color=colour, edgecolor="white", label=shown, **kw)
    labelled.add(label)


def ring(ax: Axes, x: float, y: float, *, marker: str, size: float, colour: str, **kw: Any) -> None:
    """A hollow marker: it points at a value without hiding the bar or line under it."""
    ax.plot(
        [x],
        [y],
        marker=marker,
        markersize=size,
        markerfacecolor="none",
        markeredgecolor=colour,
        markeredgewidth=1.5,
        linestyle="none",
        **kw,
    )


def legend_entries(where: Figure | Axes) -> dict[str, Artist]:
    """Every labelled artist of every panel of a figure (or of one panel), once per label, in drawing
    order."""
    found: dict[str, Artist] = {}
    for ax in where.axes if isinstance(where, Figure) else [where]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(lab, h)
    return found


def cell_median(c: Cell) -> float:
    return float(np.median(c.values))


def _guest(driver: str) -> bool:
    """It boots a guest kernel: its startup and memory live on another scale than processes'."""
    caps = registered_capabilities(driver)
    return caps is not None and caps.guest


def kinds(drivers: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Drivers split into processes/containers and guests, the two scales of startup and memory."""
    procs = [d for d in drivers if not _guest(d)]
    guests = [d for d in drivers if _guest(d)]
    return [(name, ds) for name, ds in (("processes and containers", procs), ("guests", guests)) if ds]
