"""Operating characteristics of the regression gate on synthetic data: how often an A/A comparison
raises a false alarm and how often a real shift is caught, for a given n, CoV and threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from isobench.model import Better

from .compare import DEFAULT_ALPHA, assess

__all__ = ["GateRates", "gate_rates"]


@dataclass(frozen=True)
class GateRates:
    n: int
    cov: float
    shift: float
    threshold: float
    trials: int
    fail_rate: float  # share of comparisons where the gate failed
    cannot_judge_rate: float = 0.0  # share where n was too small for the test at alpha


def gate_rates(
    *,
    n: int,
    cov: float,
    shift: float,
    threshold: float,
    trials: int = 2000,
    alpha: float = DEFAULT_ALPHA,
    better: Better = "lower",
    seed: int = 0,
) -> GateRates:
    """Fail rate of a ``metric:threshold`` rule (one gated metric) when the current run is ``shift``
    (0.1 = 10% worse) off the baseline. Timings are drawn log-normal (right-skewed, as real start-up
    times are) with coefficient of variation ``cov``; ``shift=0`` gives the A/A false-alarm rate."""
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(math.log1p(cov**2))
    factor = 1.0 + shift if better == "lower" else 1.0 / (1.0 + shift)
    fails = stuck = 0
    for _ in range(trials):
        base = rng.lognormal(0.0, sigma, n)
        cur = rng.lognormal(0.0, sigma, n) * factor
        a = assess(base, cur, better, alpha=alpha, min_effect=threshold)
        fails += a.failed
        stuck += a.verdict == "cannot judge"
    return GateRates(n, cov, shift, threshold, trials, fails / trials, stuck / trials)
