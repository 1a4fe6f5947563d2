"""Honest statistics for benchmark samples: robust centre, spread, and intervals that say what
confidence they really have.

Timings are skewed and sometimes multi-modal, so the centre is the median. Its interval is the exact
order-statistic (binomial) interval: [x(l), x(n+1-l)] covers the true median with probability
P(l <= Binomial(n, 1/2) <= n-l) for any continuous distribution (at least that with ties), so the
confidence it achieves is known exactly, at every n. The widest l whose coverage reaches the target is
used; below n=6 no pair of order statistics reaches 95%, so the interval is the sample range and
``ci_confidence`` says what it really is (n=3: 75%, n=5: 93.8%); one value has no interval (NaN).
A coverage simulation (tests/suite/test_stats.py) shows why not the percentile bootstrap: at n=6..30 it
covers the median of log-normal timings only 92-94% of the time for a nominal 95%.

Ratios to native are bootstrapped as ratios of medians, resampling each side independently (the two
sides are separate runs of separate sandboxes); a side with one value gives no interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: What every function here accepts: any sequence of numbers.
Values = Sequence[float] | npt.NDArray[np.float64]

__all__ = [
    "COV_WARN",
    "Ratio",
    "Summary",
    "bootstrap_median_ci",
    "median_ci",
    "order_statistic_indices",
    "ratio_ci",
    "summarize",
]

#: Coefficient of variation above which a figure is flagged as noisy.
COV_WARN = 0.05
DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    mad: float
    mean: float
    stdev: float
    cov: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    #: The confidence [ci_low, ci_high] really has: >= the requested one from n=6 on (95%), less
    #: below (n=3: 0.75, the range); NaN when there is no interval (n=1).
    ci_confidence: float = math.nan

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width over |median|: the precision a budget targets. NaN without an
        interval (n=1) or with a zero median; check ``ci_confidence`` too (below 95% at n <= 5)."""
        if math.isnan(self.ci_low) or self.median == 0:
            return math.nan
        return (self.ci_high - self.ci_low) / 2.0 / abs(self.median)

    @property
    def ci_is_range(self) -> bool:
        """The interval is the sample range (too few values for a narrower one at the confidence)."""
        return self.n > 1 and self.ci_low == self.min and self.ci_high == self.max

    @property
    def noisy(self) -> bool:
        return self.n > 1 and self.cov > COV_WARN


@dataclass(frozen=True)
class Ratio:
    """``value`` = median(sample) / median(baseline), with a bootstrap interval."""

    value: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """The interval excludes 1.0: the difference from the baseline is not noise. Never from a NaN
        or zero-width interval (one value on a side says nothing about noise)."""
        if not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return False
        if self.ci_high <= self.ci_low:
            return False
        return not (self.ci_low <= 1.0 <= self.ci_high)


@functools.lru_cache(maxsize=512)
def order_statistic_indices(n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[int, int, float]:
    """1-based ranks (l, u) of the exact median interval [x(l), x(u)] and the confidence it achieves.

    The narrowest symmetric pair whose coverage P(l <= B < u), B ~ Binomial(n, 1/2), is at least
    ``confidence``; when even the range falls short (n <= 5 at 95%) the range and its real coverage.
    n=1 has no interval: (1, 1, nan).
    """
    if n < 1:
        raise ValueError("no values")
    if n == 1:
        return 1, 1, math.nan
    best = (1, n, _coverage(n, 1))
    for lo in range(2, n // 2 + 1):
        cov = _coverage(n, lo)
        if cov < confidence:
            break
        best = (lo, n + 1 - lo, cov)
    return best


def _coverage(n: int, lo: int) -> float:
    # P(lo <= B <= n - lo) for B ~ Binomial(n, 1/2), exactly (integers, then one division).
    tail = sum(math.comb(n, k) for k in range(lo))
    return 1.0 - 2.0 * tail / 2.0**n


def median_ci(values: Values, *, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float, float]:
    """Exact order-statistic interval of the median: (low, high, achieved confidence). NaNs for n=1."""
    arr = np.sort(np.asarray(values, dtype=float))
    if arr.size == 0:
        raise ValueError("no values")
    lo, hi, achieved = order_statistic_indices(int(arr.size), confidence)
    if arr.size == 1:
        return math.nan, math.nan, math.nan
    return float(arr[lo - 1]), float(arr[hi - 1]), achieved


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed)


def _percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _bootstrap_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return np.asarray(np.median(values[idx], axis=1), dtype=float)


def bootstrap_median_ci(
    values: Values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median. One value gives no interval (NaN bounds).

    Kept for comparison: it undercovers at small n (see the module docstring); summaries use
    :func:`median_ci`."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no values")
    if arr.size == 1:
        return math.nan, math.nan
    return _percentile_interval(_bootstrap_medians(arr, resamples, _rng(seed)), confidence)


def summarize(
    values: Values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> Summary:
    """n, median with its exact interval (and the confidence it achieves), spread and CoV.
    ``resamples`` and ``seed`` are accepted for compatibility; the interval needs no resampling."""
    del resamples, seed
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no values")
    median = float(np.median(arr))
    mean = float(np.mean(arr))
    stdev = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    lo, hi, achieved = median_ci(arr, confidence=confidence)
    return Summary(
        n=int(arr.size),
        median=median,
        mad=float(np.median(np.abs(arr - median))),
        mean=mean,
        stdev=stdev,
        cov=stdev / abs(mean) if mean != 0 else (0.0 if stdev == 0 else math.inf),
        min=float(arr.min()),
        max=float(arr.max()),
        ci_low=lo,
        ci_high=hi,
        ci_confidence=achieved,
    )


def ratio_ci(
    values: Values,
    baseline: Values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> Ratio:
    """Ratio of medians ``values / baseline`` with a bootstrap interval.

    Returns NaN bounds when the baseline median can be zero in resampling (ratio undefined), and
    when a side has a single value (a bootstrap of one value is a point, not an interval).
    """
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("no values")
    point_den = float(np.median(b))
    if point_den == 0:
        return Ratio(math.nan, math.nan, math.nan)
    point = float(np.median(a)) / point_den
    if a.size < 2 or b.size < 2:
        return Ratio(point, math.nan, math.nan)
    rng = _rng(seed)
    num = _bootstrap_medians(a, resamples, rng)
    den = _bootstrap_medians(b, resamples, rng)
    if np.any(den == 0):
        return Ratio(point, math.nan, math.nan)
    lo, hi = _percentile_interval(num / den, confidence)
    return Ratio(point, lo, hi)
