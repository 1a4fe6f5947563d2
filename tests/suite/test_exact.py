"""Exact rank tests and Holm, checked against full enumeration (ties included) and golden values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from isobench.exact import (
    holm,
    min_detectable_change,
    paired_shift_ci,
    rank_sum_test,
    signed_rank_test,
    tarone_holm,
)
from scipy.stats import mannwhitneyu, rankdata, wilcoxon


def _enumerate_rank_sum(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Every split of the pooled values into sizes len(x), len(y): the two-sided p and the min p."""
    pooled = np.concatenate([x, y])
    ranks = rankdata(pooled)
    n1 = x.size
    mean = n1 * (pooled.size + 1) / 2
    devs = np.array(
        [abs(ranks[list(c)].sum() - mean) for c in itertools.combinations(range(pooled.size), n1)]
    )
    observed = abs(ranks[:n1].sum() - mean)
    return float(np.mean(devs >= observed - 1e-9)), float(np.mean(devs >= devs.max() - 1e-9))


def test_five_vs_five_enumerates_all_252_splits() -> None:
    t = rank_sum_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert t.p_value == pytest.approx(2 / 252) and t.min_p == pytest.approx(2 / 252) and t.exact
    # One overlapping pair: the two most extreme splits and the next two.
    assert rank_sum_test([1, 2, 3, 4, 6], [5, 7, 8, 9, 10]).p_value == pytest.approx(4 / 252)


def test_ties_get_the_exact_permutation_p_not_the_normal_approximation() -> None:
    # Quantised latencies: 4 of 5 tied on each side. Counting the 252 splits gives 10/252 = 0.0397;
    # scipy's method="auto" falls back to the normal approximation and says 0.021.
    base, cur = [1.0, 1.0, 1.0, 1.0, 2.0], [2.0, 2.0, 2.0, 2.0, 3.0]
    t = rank_sum_test(cur, base)
    assert t.p_value == pytest.approx(10 / 252)
    assert t.min_p == pytest.approx(10 / 252)  # with these ties nothing more extreme is possible
    assert mannwhitneyu(cur, base, method="auto").pvalue == pytest.approx(0.0209, abs=1e-3)


@pytest.mark.parametrize("seed", range(12))
def test_rank_sum_matches_full_enumeration_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(v) for v in rng.integers(2, 7, 2))
    x = np.round(rng.normal(0, 1, n1))
    y = np.round(rng.normal(0.7, 1, n2))
    t = rank_sum_test(x, y)
    p, min_p = _enumerate_rank_sum(x, y)
    assert t.p_value == pytest.approx(p, abs=1e-12)
    assert t.min_p == pytest.approx(min_p, abs=1e-12)


def test_rank_sum_matches_scipy_exact_without_ties() -> None:
    rng = np.random.default_rng(8)
    for _ in range(5):
        x, y = rng.normal(0, 1, 9), rng.normal(1, 1, 8)
        assert rank_sum_test(x, y).p_value == pytest.approx(mannwhitneyu(x, y, method="exact").pvalue)


def test_all_tied_and_small_samples_cannot_reach_significance() -> None:
    assert rank_sum_test([3.0, 3.0, 3.0], [3.0, 3.0]).min_p == 1.0
    assert rank_sum_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).min_p == pytest.approx(0.1)


def test_large_samples_use_the_tie_corrected_normal_approximation() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 60), rng.normal(0.5, 1, 60)
    t = rank_sum_test(x, y)
    assert not t.exact
    assert t.p_value == pytest.approx(mannwhitneyu(x, y, method="asymptotic").pvalue, rel=1e-6)
    assert t.min_p < 1e-20
    # 50 vs 50 of a 0/1 probe with a single 1: no split can be significant, and the test knows it.
    probe = rank_sum_test([0.0] * 49 + [1.0], [0.0] * 50)
    assert probe.min_p > 0.05 and probe.p_value == probe.min_p  # the observed split is the extreme one


def test_signed_rank_matches_scipy_and_enumeration() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1, 10)
    assert signed_rank_test(d).p_value == pytest.approx(wilcoxon(d, method="exact").pvalue)
    # With tied magnitudes and a zero: enumerate all 2^n sign flips of the midranks.
    d = np.array([1.0, 1.0, -2.0, 2.0, 3.0, 0.0, 1.0])
    nz = d[d != 0]
    r = rankdata(np.abs(nz))
    mean = r.sum() / 2
    devs = np.array(
        [abs(r[np.array(s, bool)].sum() - mean) for s in itertools.product([0, 1], repeat=nz.size)]
    )
    observed = abs(r[nz > 0].sum() - mean)
    t = signed_rank_test(d)
    assert t.p_value == pytest.approx(float(np.mean(devs >= observed - 1e-9)))
    assert signed_rank_test([1.0] * 5).min_p == pytest.approx(2 / 32)


def test_holm_golden_values() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []
    assert holm([0.2]) == [0.2]


def test_tarone_leaves_out_metrics_that_cannot_reach_the_level() -> None:
    # min p 0.1 (3 vs 3) can never be below 0.05: those two stay out, Holm runs over two.
    adj, ok = tarone_holm([0.1, 0.1, 0.001, 0.5], [0.1, 0.1, 1e-4, 0.0079], 0.05)
    assert ok == [False, False, True, True]
    assert math.isnan(adj[0]) and math.isnan(adj[1])
    assert adj[2:] == pytest.approx([0.002, 0.5])
    # 100 metrics at 5 vs 5 (min p 2/252): at a family-wise 5% none can be judged.
    adj, ok = tarone_holm([2 / 252] * 100, [2 / 252] * 100, 0.05)
    assert not any(ok)


def test_paired_interval_golden() -> None:
    est, lo, hi, conf = paired_shift_ci(np.arange(1.0, 11.0))
    # n=10: critical value 8 of the signed-rank null, so W(9) and W(47) of the 55 Walsh averages.
    assert (est, lo, hi) == (5.5, 3.0, 8.0)
    assert conf == pytest.approx(1 - 2 * 25 / 1024)
    est, lo, hi, conf = paired_shift_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (lo, hi, conf) == (1.0, 5.0, pytest.approx(1 - 2 / 32))
    assert all(math.isnan(v) for v in paired_shift_ci([2.0])[1:])


def test_detectable_change_grows_with_noise_and_shrinks_with_n() -> None:
    a = min_detectable_change(0.03, 10, 10, level=0.05)
    assert 0.02 < a < 0.06
    assert min_detectable_change(0.06, 10, 10, level=0.05) > a
    assert min_detectable_change(0.03, 40, 40, level=0.05) < a
    # The gate also needs the observed change beyond its threshold.
    assert min_detectable_change(0.0, 10, 10, level=0.05, threshold=0.1) == pytest.approx(0.1)
    assert math.isinf(min_detectable_change(0.03, 10, 10, level=0.0))


@pytest.mark.parametrize("n", [6, 12])
def test_paired_interval_covers_at_least_its_stated_confidence(n: int) -> None:
    # Symmetric per-round log ratios centred on log(1.1): the interval must cover it at least as
    # often as it says (300 trials: standard error ~0.013, tolerance three of them).
    rng = np.random.default_rng(40 + n)
    trials, covered, stated = 300, 0, math.nan
    for _ in range(trials):
        _, lo, hi, stated = paired_shift_ci(math.log(1.1) + rng.standard_t(4, n) * 0.03)
        covered += lo <= math.log(1.1) <= hi
    assert covered / trials >= stated - 0.04


# -- one run against reference runs (compare --history) ---------------------------------------


def test_prediction_test_golden_value() -> None:
    from isobench.exact import prediction_test

    # logs 1..5: mean 3, sd sqrt(2.5); one more run at 3 + t(0.975, 4) x sd x sqrt(1 + 1/5) sits
    # exactly on the 95% prediction bound, so p = 0.05.
    ref = np.exp([1.0, 2.0, 3.0, 4.0, 5.0])
    x = math.exp(3.0 + 2.7764451052 * math.sqrt(2.5) * math.sqrt(1.2))
    assert prediction_test(ref, x).p_value == pytest.approx(0.05, abs=1e-6)
    assert prediction_test(ref, math.exp(3.0)).p_value == pytest.approx(1.0)
    assert prediction_test(ref, x).min_p == 0.0 and not prediction_test(ref, x).exact
    assert math.isnan(prediction_test(ref[:2], x).p_value)  # two runs: no usable spread


def test_prediction_test_holds_its_level_and_its_stated_power() -> None:
    from isobench.exact import prediction_detectable, prediction_test

    rng = np.random.default_rng(5)
    sims, n, sigma = 4000, 6, 0.05
    alarms = sum(
        prediction_test(np.exp(rng.normal(0, sigma, n)), math.exp(rng.normal(0, sigma))).p_value < 0.05
        for _ in range(sims)
    )
    assert 0.04 <= alarms / sims <= 0.06
    # The detectable change is stated for the true noise; a shift that size is flagged ~80%.
    shift = math.log1p(prediction_detectable(sigma, n, level=0.05))
    caught = sum(
        prediction_test(np.exp(rng.normal(0, sigma, n)), math.exp(rng.normal(shift, sigma))).p_value < 0.05
        for _ in range(sims)
    )
    assert 0.7 <= caught / sims <= 0.9
