"""The statistics pinned to known answers: golden order-statistic intervals, exact coverage, and
coverage simulations (seeded, fast) that fail if an interval estimates the wrong quantity."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from isobench.stats import (
    Ratio,
    bootstrap_median_ci,
    median_ci,
    order_statistic_indices,
    ratio_ci,
    summarize,
)

#: Real samples recorded on the development host (see "source" in the file): skewed start-up times
#: with outliers, and sysbench latencies quantised to 10 us (ties).
RECORDED: dict[str, list[float]] = json.loads(
    (Path(__file__).parent / "data" / "recorded_samples.json").read_text(encoding="utf-8")
)["samples"]


def test_summary_of_known_values() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5
    assert s.median == 3.0
    assert s.mad == 1.0  # |1-3|,|2-3|,0,1,97 -> median 1
    assert s.min == 1.0 and s.max == 100.0
    assert s.mean == pytest.approx(22.0)
    assert s.cov == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)
    assert s.noisy
    # n=5: no pair of order statistics reaches 95%; the range has 1 - 2/32.
    assert (s.ci_low, s.ci_high) == (1.0, 100.0)
    assert s.ci_confidence == pytest.approx(0.9375)
    assert s.ci_is_range


def test_single_value_has_no_interval() -> None:
    s = summarize([7.0])
    assert s.median == 7.0
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high) and math.isnan(s.ci_confidence)
    assert s.stdev == 0.0 and not s.noisy and not s.ci_is_range
    assert all(math.isnan(x) for x in bootstrap_median_ci([7.0]))


@pytest.mark.parametrize(
    ("n", "confidence"),
    [(2, 0.5), (3, 0.75), (4, 0.875), (5, 0.9375)],
)
def test_small_n_is_the_range_with_its_real_confidence(n: int, confidence: float) -> None:
    values = [10.0 + i * i for i in range(n)]
    lo, hi, achieved = median_ci(values)
    assert (lo, hi) == (min(values), max(values))
    assert achieved == pytest.approx(confidence)


# Published table of the distribution-free 95% interval of the median (e.g. Conover, Practical
# Nonparametric Statistics, Table A3; Gibbons & Chakraborti): the lower rank l for n = 6..20.
_LOWER_RANK_95 = {
    6: 1,
    7: 1,
    8: 1,
    9: 2,
    10: 2,
    11: 2,
    12: 3,
    13: 3,
    14: 3,
    15: 4,
    16: 4,
    17: 5,
    18: 5,
    19: 5,
    20: 6,
}


@pytest.mark.parametrize(("n", "lower"), sorted(_LOWER_RANK_95.items()))
def test_golden_order_statistic_indices(n: int, lower: int) -> None:
    lo, hi, achieved = order_statistic_indices(n)
    assert (lo, hi) == (lower, n + 1 - lower)
    # The achieved confidence is the exact binomial coverage, at least 95%, and one rank narrower
    # would fall below it.
    exact = sum(math.comb(n, k) for k in range(lower, n + 1 - lower)) / 2**n
    assert achieved == pytest.approx(exact, abs=1e-12)
    assert achieved >= 0.95
    narrower = sum(math.comb(n, k) for k in range(lower + 1, n - lower)) / 2**n
    assert narrower < 0.95


def test_golden_achieved_confidence_values() -> None:
    assert order_statistic_indices(10)[2] == pytest.approx(0.978515625)
    assert order_statistic_indices(17)[2] == pytest.approx(0.950958251953125)
    assert order_statistic_indices(20)[2] == pytest.approx(0.9586105346679688)
    assert order_statistic_indices(30, 0.90)[:2] == (11, 20)


def test_interval_endpoints_are_the_order_statistics() -> None:
    values = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    lo, hi, _ = median_ci(values)
    assert (lo, hi) == (2.0, 9.0)  # ranks 2 and 9 at n=10
    s = summarize(values)
    assert (s.ci_low, s.ci_high) == (2.0, 9.0) and not s.ci_is_range
    assert s.relative_half_width == pytest.approx(3.5 / 5.5)
    assert math.isnan(summarize([3.0]).relative_half_width)


# -- coverage simulations ---------------------------------------------------------------------
# Each check draws from a population whose median is known and counts how often the interval covers
# it. With T trials the estimate's standard error is sqrt(p(1-p)/T) ~ 0.011 at T=400; tolerances are
# about three of those.


@pytest.mark.parametrize("n", [3, 6, 10, 20])
def test_exact_interval_covers_at_least_its_stated_confidence(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    trials = 400
    data = rng.lognormal(0.0, 0.5, size=(trials, n))  # median exactly 1
    covered = 0
    for row in data:
        lo, hi, achieved = median_ci(row)
        covered += lo <= 1.0 <= hi
    assert covered / trials >= achieved - 0.035
    assert covered / trials <= achieved + 0.035  # exact, not merely conservative, for continuous data


def test_exact_interval_covers_recorded_real_samples() -> None:
    """Resample real recorded timings (skewed, with outliers, and quantised latency with ties) as a
    population whose median is known: the interval must still cover at least its confidence."""
    rng = np.random.default_rng(5)
    for name, population in RECORDED.items():
        pop = np.asarray(population)
        true_median = float(np.median(pop))
        for n in (5, 9, 15):
            trials, covered, stated = 300, 0, order_statistic_indices(n)[2]
            for _ in range(trials):
                lo, hi, _ = median_ci(rng.choice(pop, size=n, replace=True))
                covered += lo <= true_median <= hi
            assert covered / trials >= stated - 0.04, (name, n, covered / trials, stated)


def test_bootstrap_interval_targets_the_median_not_the_mean() -> None:
    """lognormal(0, 1): median 1, mean e^0.5 = 1.65. A bootstrap of the mean would cover 1 almost
    never; the percentile bootstrap of the median covers it close to 95% at n=25."""
    rng = np.random.default_rng(1234)
    trials, covered = 300, 0
    for t in range(trials):
        lo, hi = bootstrap_median_ci(rng.lognormal(0.0, 1.0, size=25), resamples=1000, seed=t)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_endpoints_are_data_values_for_odd_n() -> None:
    # Every resampled median of an odd-sized sample is one of its values; a mean almost never is.
    data = [1.0, 2.0, 3.0, 4.0, 100.0, 7.0, 9.0]
    lo, hi = bootstrap_median_ci(data, resamples=2000, seed=3)
    assert lo in data and hi in data


def test_ratio_interval_covers_the_ratio_of_medians() -> None:
    """Skewed current (lognormal: median 1, mean 1.65) against a symmetric baseline (median 1): the
    true ratio of medians is 1, the ratio of means 1.65; coverage of 1 near 95% at n=30."""
    rng = np.random.default_rng(99)
    trials, covered = 200, 0
    for t in range(trials):
        r = ratio_ci(rng.lognormal(0.0, 1.0, 30), rng.normal(1.0, 0.05, 30), resamples=1000, seed=t)
        covered += r.ci_low <= 1.0 <= r.ci_high
    assert 0.88 <= covered / trials <= 0.99


# -- ratios -------------------------------------------------------------------------------------


def test_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(7)
    small = summarize(rng.normal(10, 1, 10))
    large = summarize(rng.normal(10, 1, 400))
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 3


def test_ratio_of_identical_distributions_is_one_and_not_significant() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(100, 2, 30)
    b = rng.normal(100, 2, 30)
    r = ratio_ci(a, b)
    assert r.ci_low <= 1.0 <= r.ci_high
    assert not r.significant


def test_ratio_detects_a_clear_slowdown() -> None:
    rng = np.random.default_rng(4)
    r = ratio_ci(rng.normal(120, 2, 30), rng.normal(100, 2, 30))
    assert r.value == pytest.approx(1.2, rel=0.02)
    assert r.significant and r.ci_low > 1.1


def test_ratio_with_zero_baseline_is_nan() -> None:
    r = ratio_ci([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(r.value)


def test_one_value_on_a_side_gives_no_ratio_interval_and_no_significance() -> None:
    r = ratio_ci([2.0], [1.0])
    assert r.value == 2.0 and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert not r.significant
    assert not ratio_ci([2.0, 2.1, 2.2], [1.0]).significant


@pytest.mark.parametrize(
    "ratio",
    [Ratio(2.0, 2.0, 2.0), Ratio(2.0, math.nan, math.nan), Ratio(2.0, 1.5, math.nan), Ratio(2.0, 2.5, 1.5)],
)
def test_significance_needs_a_real_interval(ratio: Ratio) -> None:
    assert not ratio.significant


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])
    with pytest.raises(ValueError, match="no values"):
        median_ci([])
