"""Exact tests for the regression gate: rank tests whose null distribution is enumerated, not
approximated, and family-wise control over many metrics.

Why exact: benchmark metrics are quantised (sysbench latency in 10 us steps, fio and sockperf
percentiles, 0/1 probes), so ties are common, and scipy's ``mannwhitneyu(method="auto")`` falls back
to the normal approximation as soon as one value is tied, which at n=5 misstates p in either
direction (1,1,1,1,2 vs 2,2,2,2,3: 0.021 instead of the exact 0.040). Here the permutation
distribution of the rank statistic, with midranks for ties, is counted by dynamic programming over
"which subset of the pooled values is side one" -- the same answer as enumerating all C(n1+n2, n1)
splits (252 at 5 vs 5) -- up to EXACT_MAX pooled values, where the normal approximation takes over.

Each test also returns the smallest p-value its data could give at all (``min_p``): with 3 vs 3 it is
0.1, so at alpha=0.05 no outcome could be significant and the honest verdict is "cannot judge".
Holm's step-down is applied only over metrics that could be judged (Tarone's observation: a test that
cannot reach the level cannot produce a false alarm, so it need not widen the family).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t

__all__ = [
    "EXACT_MAX",
    "ExactTest",
    "holm",
    "min_detectable_change",
    "paired_shift_ci",
    "prediction_detectable",
    "prediction_test",
    "rank_sum_test",
    "signed_rank_test",
    "tarone_holm",
]

#: Pooled sizes up to this are enumerated; beyond it the tie-corrected normal approximation is
#: accurate (and the enumeration would cost seconds per metric).
EXACT_MAX = 80
_STD_NORMAL = NormalDist()

Values = Sequence[float] | npt.NDArray[np.float64]


@dataclass(frozen=True)
class ExactTest:
    p_value: float  # two-sided
    min_p: float  # the smallest two-sided p any arrangement of these values could give
    exact: bool  # False when the normal approximation was used (large n)


def _two_sided(dist: npt.NDArray[np.float64], observed: int, centre2: int) -> tuple[float, float]:
    """Two-sided p and min attainable p from counts over integer sums (index = sum).

    Sums are in half-rank units, so ``centre2`` is twice the null mean and deviations compare exactly.
    """
    support = np.nonzero(dist > 0)[0]
    dev = np.abs(2 * support - centre2)
    probs = dist[support]
    total = probs.sum()
    obs_dev = abs(2 * observed - centre2)
    p = float(probs[dev >= obs_dev].sum() / total)
    min_p = float(probs[dev >= dev.max()].sum() / total)
    return min(1.0, p), min(1.0, min_p)


def rank_sum_test(x: Values, y: Values) -> ExactTest:
    """Exact two-sided Wilcoxon-Mann-Whitney test of ``x`` vs ``y`` with midranks for ties."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return ExactTest(math.nan, 1.0, True)
    pooled = np.concatenate([a, b])
    # Twice the midranks are integers: sums compare exactly.
    r2 = np.rint(2 * rankdata(pooled)).astype(np.int64)
    observed = int(r2[:n1].sum())
    n = n1 + n2
    centre2 = 2 * n1 * (n + 1)  # twice the null mean of the half-rank sum
    if n > EXACT_MAX:
        return _rank_sum_normal(r2, n1, observed)
    no_ties = np.unique(r2).size == n
    dist = _rank_sum_null(n1, n) if no_ties else _subset_sums(tuple(int(w) for w in r2), n1)
    p, min_p = _two_sided(dist, observed, centre2)
    return ExactTest(p, min_p, True)


def _subset_sums(weights: tuple[int, ...], size: int) -> npt.NDArray[np.float64]:
    """How many ``size``-subsets of ``weights`` have each sum (index = sum)."""
    total = sum(weights)
    # ways[k, s]: subsets of the items seen so far with k members and sum s.
    ways = np.zeros((size + 1, total + 1), dtype=float)
    ways[0, 0] = 1.0
    for w in weights:
        ways[1:, w:] += ways[:-1, : total + 1 - w].copy()
    result: npt.NDArray[np.float64] = ways[size]
    return result


@functools.lru_cache(maxsize=256)
def _rank_sum_null(n1: int, n: int) -> npt.NDArray[np.float64]:
    # Without ties the null distribution depends only on the sizes: count it once per pair.
    dist = _subset_sums(tuple(range(2, 2 * n + 1, 2)), n1)
    dist.setflags(write=False)
    return dist


def _rank_sum_normal(r2: npt.NDArray[np.int64], n1: int, observed: int) -> ExactTest:
    n = r2.size
    r = r2 / 2.0
    mean = n1 * (n + 1) / 2.0
    var = n1 * (n - n1) / (n * (n - 1)) * float(np.sum((r - r.mean()) ** 2))
    if var == 0:
        return ExactTest(1.0, 1.0, False)
    sd = math.sqrt(var)

    def p_of(rank_sum: float) -> float:
        z = (abs(rank_sum - mean) - 0.5) / sd
        return float(min(1.0, 2 * norm.sf(max(z, 0.0))))

    # The most extreme split puts the n1 largest (or smallest) ranks on one side: with many ties
    # (a 0/1 probe that is almost always 0) even that may not reach a gate's level.
    ordered = np.sort(r)
    extreme = max(abs(ordered[-n1:].sum() - mean), abs(ordered[:n1].sum() - mean))
    return ExactTest(p_of(observed / 2.0), p_of(mean + extreme), False)


def signed_rank_test(d: Values) -> ExactTest:
    """Exact two-sided Wilcoxon signed-rank test that the paired differences ``d`` centre on 0.

    Zero differences are dropped (Wilcoxon's convention); tied magnitudes get midranks and the null
    distribution is the exact sign-flip distribution of those midranks (all 2^n flips).
    """
    arr = np.asarray(d, dtype=float)
    arr = arr[arr != 0]
    n = arr.size
    if n == 0:
        return ExactTest(1.0, 1.0, True)
    r2 = np.rint(2 * rankdata(np.abs(arr))).astype(np.int64)
    observed = int(r2[arr > 0].sum())
    total = int(r2.sum())
    # Null: each item's sign is + with probability 1/2 independently; centre is total/2.
    ways = np.zeros(total + 1, dtype=float)
    ways[0] = 1.0
    for w in r2:
        ways[w:] += ways[: total + 1 - w].copy()
    p, min_p = _two_sided(ways, observed, total)
    return ExactTest(p, min_p, True)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone): reject where adjusted p < alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


#: Fewest reference runs for :func:`prediction_test` (two leave one degree of freedom: useless).
PREDICTION_MIN_RUNS = 3


def prediction_test(reference: Values, x: float) -> ExactTest:
    """Is the single run value ``x`` outside what the ``reference`` runs do? Two-sided p of the
    Student-t prediction interval on log values: t = (log x - mean) / (s sqrt(1 + 1/n)), n - 1
    degrees of freedom, with s the plain standard deviation of the reference's logs (inflated, not
    hidden, by an outlying run: a conservative choice for heavy-tailed run-to-run shifts).

    The test for one current run against the run-to-run spread its baseline is known to have
    (``isobench compare --history``): a rank test cannot give one value against n better than
    p = 2/(n+1), and the sample-level test of one run per side ignores run-to-run variation. Not
    exact: it assumes the log run medians are normal; ``min_p`` is 0 (a continuous statistic)."""
    ref = np.log(np.asarray(reference, dtype=float))
    n = ref.size
    if n < PREDICTION_MIN_RUNS or x <= 0 or not np.all(np.isfinite(ref)):
        return ExactTest(math.nan, 1.0, False)
    s = float(np.std(ref, ddof=1))
    if s == 0.0:
        return ExactTest(1.0 if math.log(x) == ref[0] else 0.0, 0.0, False)
    t = (math.log(x) - float(np.mean(ref))) / (s * math.sqrt(1.0 + 1.0 / n))
    return ExactTest(float(min(1.0, 2.0 * student_t.sf(abs(t), n - 1))), 0.0, False)


def prediction_detectable(
    sigma_log: float, n: int, *, level: float, threshold: float = 0.0, power: float = 0.8
) -> float:
    """Smallest true relative change of one run that :func:`prediction_test` at ``level`` (and a gate
    at ``threshold``) flags with probability ``power``, for ``n`` reference runs whose logs have
    standard deviation ``sigma_log``."""
    if level <= 0 or n < PREDICTION_MIN_RUNS or not math.isfinite(sigma_log):
        return math.inf
    se = sigma_log * math.sqrt(1.0 + 1.0 / n)
    z_power = _STD_NORMAL.inv_cdf(power)
    needed = max(
        (float(student_t.ppf(1.0 - level / 2.0, n - 1)) + z_power) * se,
        math.log1p(threshold) + z_power * se,
    )
    return math.expm1(needed)


def tarone_holm(
    p_values: Sequence[float], min_ps: Sequence[float], alpha: float
) -> tuple[list[float], list[bool]]:
    """Holm over the metrics that can be judged: (adjusted p, judgeable flag) per metric.

    Tarone: take the smallest K such that at most K metrics can reach p < alpha/K; only those enter
    the family (the others cannot reject, so they cannot raise a false alarm), and Holm runs over
    them. Which metrics enter depends only on the sizes and tie pattern, never on the outcome, so the
    family-wise error stays <= alpha. Metrics left out get NaN and ``False``.
    """
    m = len(p_values)
    if m == 0:
        return [], []
    ordered = sorted(min_ps)
    k = 1
    while k <= m and bisect.bisect_left(ordered, alpha / k) > k:
        k += 1
    judgeable = [mp < alpha / k for mp in min_ps]
    family = [i for i in range(m) if judgeable[i]]
    adjusted_family = holm([p_values[i] for i in family])
    adjusted = [math.nan] * m
    for i, adj in zip(family, adjusted_family, strict=True):
        adjusted[i] = adj
    return adjusted, judgeable


def min_detectable_change(
    sigma_log: float,
    n1: int,
    n2: int,
    *,
    level: float,
    threshold: float = 0.0,
    power: float = 0.8,
    paired: bool = False,
) -> float:
    """Smallest true relative change this comparison would flag with probability ``power``.

    ``sigma_log`` is the noise of log(values) (robust: 1.4826 x MAD). The rank test at ``level``
    needs a log shift of about (z_{1-level/2} + z_power) x its standard error (Mann-Whitney is 95%
    as efficient as the t-test on normal data), and the gate also needs the observed change to exceed
    ``threshold`` (the observed median change has standard error sqrt(pi/2) x sigma x sqrt(1/n1+1/n2)).
    An approximation: it states the order of magnitude a verdict can see, not a guarantee.
    """
    if level <= 0 or n1 < 1 or n2 < 1:
        return math.inf
    z_power = _STD_NORMAL.inv_cdf(power)
    spread = math.sqrt(1.0 / n1) if paired else math.sqrt(1.0 / n1 + 1.0 / n2)
    se_test = sigma_log * spread * math.sqrt(math.pi / 3.0)
    se_median = sigma_log * spread * math.sqrt(math.pi / 2.0)
    needed = max(
        (_STD_NORMAL.inv_cdf(1.0 - level / 2.0) + z_power) * se_test,
        math.log1p(threshold) + z_power * se_median,
    )
    return math.expm1(needed)


@functools.lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> npt.NDArray[np.float64]:
    """P(W <= w) of the signed-rank statistic without ties at size ``n``: it depends on n alone, so a
    budgeted A/B run that asks for it after every round (isobench.budget) counts it once."""
    total = n * (n + 1) // 2
    ways = np.zeros(total + 1, dtype=float)
    ways[0] = 1.0
    for w in range(1, n + 1):
        ways[w:] += ways[: total + 1 - w].copy()
    cdf: npt.NDArray[np.float64] = np.cumsum(ways) / 2.0**n
    cdf.setflags(write=False)
    return cdf


def paired_shift_ci(d: Values, *, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Hodges-Lehmann estimate of the centre of paired differences ``d`` with the exact signed-rank
    interval: (estimate, low, high, achieved confidence). The interval is [W(k), W(M+1-k)] over the
    M = n(n+1)/2 sorted Walsh averages; like the median's, its confidence is what the discrete null
    distribution allows (the widest, all Walsh averages, has 1 - 2^(1-n): 93.8% at n=5)."""
    arr = np.asarray(d, dtype=float)
    n = arr.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((arr[i] + arr[j]) / 2.0)
    estimate = float(np.median(walsh))
    if n == 1:
        return estimate, math.nan, math.nan, math.nan
    total = n * (n + 1) // 2
    cdf = _signed_rank_cdf(n)
    # k: the first rank (from 1, at most M/2) whose tail 2 P(W <= k) exceeds 1 - confidence
    k = int(np.searchsorted(cdf, (1.0 - confidence) / 2.0, side="right"))
    k = max(1, min(k, total // 2))
    achieved = 1.0 - 2.0 * float(cdf[k - 1])
    return estimate, float(walsh[k - 1]), float(walsh[total - k]), achieved


@dataclass(frozen=True)
class PairedChange:
    """The change of B against A over paired values (rounds of an A/B run), relative to A."""

    #: Hodges-Lehmann estimate and the exact signed-rank interval, as fractions (0.05: 5% more).
    change: float
    low: float
    high: float
    confidence: float
    #: The differences the test runs on: log(B/A) when every value is positive, else B - A.
    d: npt.NDArray[np.float64]
    #: Whether ``d`` is on the log scale (else it is in the figure's unit, relative to ``scale``).
    log_scale: bool
    #: |median of A|, the unit of a change of values that are not all positive (nan when 0).
    scale: float

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to A: the precision an A/B run targets per change."""
        return (self.high - self.low) / 2.0


def paired_change(a: Values, b: Values, *, confidence: float = 0.95) -> PairedChange:
    """How ``b`` changed against ``a`` (paired element-wise): on the log scale when every value is
    positive (a ratio, what a time or a rate is), else as a difference relative to |median(a)|."""
    va = np.asarray(a, dtype=float)
    vb = np.asarray(b, dtype=float)
    log_scale = va.size > 0 and bool(np.all(va > 0) and np.all(vb > 0))
    if log_scale:
        d = np.log(vb / va)
        est, lo, hi, achieved = paired_shift_ci(d, confidence=confidence)
        return PairedChange(math.expm1(est), math.expm1(lo), math.expm1(hi), achieved, d, True, math.nan)
    d = vb - va
    est, lo, hi, achieved = paired_shift_ci(d, confidence=confidence)
    ma = abs(float(np.median(va))) if va.size else math.nan
    scale = ma if ma != 0 else math.nan
    return PairedChange(est / scale, lo / scale, hi / scale, achieved, d, False, scale)
