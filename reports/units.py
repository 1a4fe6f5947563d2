"""Human units for every figure a person reads: one place that turns raw SI values into text.

Results keep raw SI values (seconds, bytes, bytes per second, ...) in JSON and CSV; tables, the
headline, plots' axes and the terminal show them through this module, so no reader ever meets
``7.351e+07 bytes_per_second``. Each value picks its own prefix (hyperfine's ``format.rs`` does the
same for times), with three significant digits and never e-notation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Scale",
    "axis_scale",
    "human",
    "human_ci",
    "human_pct",
    "human_ratio",
    "plain",
    "plural",
    "unit_label",
]

#: Shown for a missing value (en dash) and before a ratio (multiplication sign).
NA = "\u2013"
TIMES = "\u00d7"


@dataclass(frozen=True)
class Scale:
    """Divide raw values by ``divisor`` and label them ``label``."""

    divisor: float
    label: str


_TIME = (Scale(1e-9, "ns"), Scale(1e-6, "us"), Scale(1e-3, "ms"), Scale(1.0, "s"))
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _binary(suffix: str) -> tuple[Scale, ...]:
    return tuple(Scale(1024.0**i, f"{p}{suffix}") for i, p in enumerate(_BINARY))


_SCALES: dict[str, tuple[Scale, ...]] = {
    "seconds": _TIME,
    "s": _TIME,
    "bytes": _binary(""),
    "bytes_per_second": _binary("/s"),
    "bits_per_second": tuple(Scale(1000.0**i, f"{p}bit/s") for i, p in enumerate(("", "k", "M", "G", "T"))),
    "ops_per_second": tuple(
        Scale(1000.0**i, f"{p}ops/s".strip()) for i, p in enumerate(("", "k ", "M ", "G "))
    ),
    "iops": tuple(Scale(1000.0**i, f"{p}IOPS".strip()) for i, p in enumerate(("", "k ", "M ", "G "))),
    "events_per_second": tuple(
        Scale(1000.0**i, f"{p}events/s".strip()) for i, p in enumerate(("", "k ", "M "))
    ),
    "MiB": tuple(Scale(1024.0**i, u) for i, u in enumerate(("MiB", "GiB", "TiB"))),
}


def plain(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits in fixed notation: 0.000123, 12.3, 12300 (33583 is
    33600: large numbers are rounded, not written out)."""
    if math.isnan(x):
        return NA
    if math.isinf(x):
        return "\u221e" if x > 0 else "-\u221e"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits:
        # no more significant digits than asked for: 33583 -> 33600, never 3.36e+04
        return f"{round(x, digits - 1 - magnitude):.0f}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:.{decimals}f}"


def plural(n: int, noun: str) -> str:
    """``n`` and the noun, in the plural unless ``n`` is one: "1 cell", "3 cells"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pick(scales: tuple[Scale, ...], magnitude: float) -> Scale:
    chosen = scales[0]
    for s in scales:
        if magnitude >= s.divisor * 0.9995:
            chosen = s
    return chosen


def _count_scale(magnitude: float) -> Scale:
    return _pick((Scale(1.0, ""), Scale(1e3, "k"), Scale(1e6, "M"), Scale(1e9, "G")), magnitude)


def unit_label(unit: str) -> str:
    """A short display name for a raw unit (``bytes_per_second`` -> ``B/s``)."""
    scales = _SCALES.get(unit)
    if scales:
        return scales[0].label
    return {"ratio": TIMES, "score": "score", "bool": "yes/no"}.get(unit, unit)


def human(value: float | None, unit: str, digits: int = 3) -> str:
    """One value in its best unit: ``human(7.351e7, "bytes_per_second") == "70.1 MiB/s"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    v = float(value)
    if math.isinf(v):
        return plain(v)
    if unit == "bool":
        return "yes" if v >= 0.5 else "no"
    if unit == "ratio":
        return f"{TIMES}{plain(v, digits)}"
    scales = _SCALES.get(unit)
    if scales:
        # zero has no magnitude: show it in the unit's base (0 s, not 0 ns)
        s = _pick(scales, abs(v)) if v else next((x for x in scales if x.divisor == 1.0), scales[0])
        return f"{plain(v / s.divisor, digits)} {s.label}"
    if unit == "score":
        return plain(v, digits)
    if unit == "%":
        return f"{plain(v, digits)}%"
    s = _count_scale(abs(v))
    # a whole count is written whole: "7 primitives", not "7.00 primitives"
    text = str(int(v)) if v.is_integer() and not s.label else f"{plain(v / s.divisor, digits)}{s.label}"
    return f"{text} {unit}" if unit else text


def human_ci(median: float, lo: float, hi: float, unit: str, digits: int = 3) -> str:
    """``median [lo, hi] unit``, all three in the median's unit so they read together."""
    if median is None or math.isnan(median):
        return NA
    scales = _SCALES.get(unit)
    if unit in ("bool", "ratio", "score", "%") or math.isnan(lo) or math.isnan(hi):
        return human(median, unit, digits)
    if scales:
        s = _pick(scales, abs(median))
        label = f" {s.label}"
    else:
        # counts in any other unit: one k/M prefix for all three (12.3 [12.1, 12.6] k events/s)
        s = _count_scale(abs(median))
        label = f" {s.label} {unit}".rstrip() if s.label else (f" {unit}" if unit else "")
    f = s.divisor
    return f"{plain(median / f, digits)} [{plain(lo / f, digits)}, {plain(hi / f, digits)}]{label}"


def human_ratio(value: float, lo: float = math.nan, hi: float = math.nan, digits: int = 3) -> str:
    """A ratio to native as ``x1.15 [1.05, 1.18]`` (with a multiplication sign) (no interval when its bounds are unknown)."""
    if value is None or math.isnan(value):
        return NA
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{TIMES}{plain(value, digits)}"
    return f"{TIMES}{plain(value, digits)} [{plain(lo, digits)}, {plain(hi, digits)}]"


def human_pct(fraction: float, digits: int = 3, *, signed: bool = True) -> str:
    """A fraction as a percentage: 0.102 -> ``+10.2%``."""
    if fraction is None or math.isnan(fraction):
        return NA
    text = plain(fraction * 100, digits)
    if signed and fraction > 0:
        text = "+" + text
    return f"{text}%"


def axis_scale(values: Iterable[float], unit: str) -> Scale:
    """One scale for a whole axis, chosen by the largest finite value on it."""
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    top = max(finite, default=0.0)
    scales = _SCALES.get(unit)
    if scales:
        return _pick(scales, top)
    if unit == "ratio":
        return Scale(1.0, TIMES)
    s = _count_scale(top)
    label = f"{s.label} {unit}".strip() if unit not in ("", "score", "bool") else (s.label or unit)
    return Scale(s.divisor, label)
