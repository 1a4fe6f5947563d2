"""Honest statistics for benchmark samples: robust centre, spread, and bootstrap intervals.

Timings are skewed and sometimes multi-modal, so the centre is the median and intervals come from the
bootstrap, not from a normal approximation. Ratios to native are bootstrapped as ratios of medians,
resampling each side independently (the two sides are separate runs of separate sandboxes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: What every function here accepts: any sequence of numbers.
Values = Sequence[float] | npt.NDArray[np.float64]

__all__ = ["COV_WARN", "Ratio", "Summary", "bootstrap_median_ci", "ratio_ci", "summarize"]

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
        """The interval excludes 1.0: the difference from the baseline is not noise."""
        return not (self.ci_low <= 1.0 <= self.ci_high)


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
    """Percentile-bootstrap interval of the median. One value gives a zero-width interval."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no values")
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    return _percentile_interval(_bootstrap_medians(arr, resamples, _rng(seed)), confidence)


def summarize(
    values: Values,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | None = 0,
) -> Summary:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("no values")
    median = float(np.median(arr))
    mean = float(np.mean(arr))
    stdev = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    lo, hi = bootstrap_median_ci(arr, confidence=confidence, resamples=resamples, seed=seed)
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

    Returns NaN bounds when the baseline median can be zero in resampling (ratio undefined).
    """
    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("no values")
    point_den = float(np.median(b))
    if point_den == 0:
        return Ratio(math.nan, math.nan, math.nan)
    point = float(np.median(a)) / point_den
    rng = _rng(seed)
    num = _bootstrap_medians(a, resamples, rng)
    den = _bootstrap_medians(b, resamples, rng)
    if np.any(den == 0):
        return Ratio(point, math.nan, math.nan)
    lo, hi = _percentile_interval(num / den, confidence)
    return Ratio(point, lo, hi)
