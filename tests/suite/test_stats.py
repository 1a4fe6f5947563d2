import math

import numpy as np
import pytest
from isobench.stats import bootstrap_median_ci, ratio_ci, summarize


def test_summary_of_known_values() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5
    assert s.median == 3.0
    assert s.mad == 1.0  # |1-3|,|2-3|,0,1,97 -> median 1
    assert s.min == 1.0 and s.max == 100.0
    assert s.mean == pytest.approx(22.0)
    assert s.cov == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)
    assert s.noisy


def test_single_value_has_zero_width_interval() -> None:
    s = summarize([7.0])
    assert (s.ci_low, s.median, s.ci_high) == (7.0, 7.0, 7.0)
    assert s.stdev == 0.0 and not s.noisy


def test_bootstrap_ci_covers_true_median_at_nominal_rate() -> None:
    # Coverage check against a known distribution: lognormal(0, 0.25) has median exactly 1.0.
    rng = np.random.default_rng(1234)
    trials, covered = 200, 0
    for t in range(trials):
        data = rng.lognormal(0.0, 0.25, size=25)
        lo, hi = bootstrap_median_ci(data, resamples=2000, seed=t)
        covered += lo <= 1.0 <= hi
    # Percentile bootstrap of a median is slightly conservative/liberal with n=25; 95% nominal.
    assert 0.88 <= covered / trials <= 0.99


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


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])
