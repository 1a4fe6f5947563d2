"""The four decision rules, on hand-made readings."""

from __future__ import annotations

import pytest
from isobench.leakage import rules


def test_equal_leaks_on_same_value_and_not_on_different() -> None:
    assert rules.equal("abc\n", "abc", what="x").leaks
    v = rules.equal("abc", "abd", what="x")
    assert not v.leaks
    assert v.applicable
    assert "abd" in v.evidence


def test_equal_without_host_value_is_not_applicable_and_without_inside_does_not_leak() -> None:
    assert not rules.equal("", "abc").applicable
    v = rules.equal("abc", None)
    assert v.applicable
    assert not v.leaks


def test_within_tolerance() -> None:
    assert rules.within(100.0, 100.9, 1.0, what="t").leaks
    assert not rules.within(100.0, 101.5, 1.0, what="t").leaks
    assert not rules.within(None, 1.0, 1.0, what="t").applicable


def test_canary_found_in_one_line_reports_that_line() -> None:
    v = rules.canary("isobenchabc1234", "foo\n  12 isobenchabc1234 S\nbar", where="comm")
    assert v.leaks
    assert "12 isobenchabc1234 S" in v.evidence
    assert not rules.canary("isobenchabc1234", "isobenchabc123", where="comm").leaks
    assert not rules.canary(None, "anything", where="comm").applicable


def test_presence() -> None:
    assert rules.presence(["/dev/kvm"], what="devices").leaks
    assert not rules.presence([], what="devices").leaks


def test_correlation_that_should_count() -> None:
    pattern = [0, 0, 0, 1, 1, 1] * 4
    series = [10 + 5 * p + (i % 2) * 0.3 for i, p in enumerate(pattern)]
    v = rules.correlation(pattern, series)
    assert v.leaks
    assert v.r is not None
    assert v.r > 0.95
    assert v.p is not None
    assert v.p < 0.01


def test_correlation_that_should_not_count() -> None:
    pattern = [0, 0, 0, 1, 1, 1] * 4
    # Noise unrelated to the pattern (a fixed pseudo-random sequence).
    noise = [3, 9, 1, 7, 4, 8, 2, 6, 5, 0, 9, 3, 7, 1, 8, 4, 6, 2, 0, 5, 3, 9, 1, 7]
    v = rules.correlation(pattern, noise)
    assert not v.leaks
    assert v.r is not None
    assert abs(v.r) < 0.5


def test_anti_correlation_does_not_count_because_series_are_oriented() -> None:
    pattern = [0, 1] * 10
    v = rules.correlation(pattern, [1 - p for p in pattern])
    assert not v.leaks
    assert v.r == pytest.approx(-1.0)


def test_strong_r_on_too_few_points_does_not_count() -> None:
    v = rules.correlation([0, 1, 0, 1], [0, 1, 0, 1])
    assert not v.leaks
    assert "only 4" in v.evidence


def test_constant_series_does_not_count() -> None:
    v = rules.correlation([0, 1] * 6, [5.0] * 12)
    assert not v.leaks
    assert "constant" in v.evidence
    assert v.inconclusive


def test_r_above_bar_but_p_too_high_does_not_count() -> None:
    # Over 8 points r = 0.80 has p = 0.017: too likely by chance to count.
    pattern = [0, 0, 1, 1, 0, 0, 1, 1]
    series = [0.0, 0.45, 1.0, 0.55, 0.1, 0.3, 0.9, 0.5]
    v = rules.correlation(pattern, series)
    assert v.r is not None
    assert v.r >= 0.8
    assert v.p is not None
    assert v.p >= 0.01
    assert not v.leaks


def test_reading_the_same_values_more_often_is_no_more_evidence() -> None:
    """The 8 points above (r = 0.80, p = 0.017), each read three times in a row, as a sampler faster
    than the channel moves reads them. Over the 24 readings Pearson's p is 3e-6 and the channel would
    leak; over the effective points (~8.5: neighbours are alike) p stays above 0.01."""
    from scipy import stats

    pattern = [0, 0, 1, 1, 0, 0, 1, 1]
    series = [0.0, 0.45, 1.0, 0.55, 0.1, 0.3, 0.9, 0.5]
    xs = [x for x in pattern for _ in range(3)]
    ys = [y for y in series for _ in range(3)]
    assert float(stats.pearsonr(xs, ys).pvalue) < rules.MAX_P_VALUE  # the raw count: "significant"
    v = rules.correlation(xs, ys)
    assert v.r is not None and v.r >= rules.MIN_CORRELATION
    assert v.n_eff is not None and 7 < v.n_eff < 10
    assert v.p is not None and v.p >= rules.MAX_P_VALUE
    assert not v.leaks and v.status == "inconclusive"
    assert f"n_eff={v.n_eff:.1f}" in v.evidence
