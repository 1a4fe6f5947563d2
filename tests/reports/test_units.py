"""Golden values for the one formatter every table, headline and axis goes through."""

from __future__ import annotations

import math
import re

import pytest
from isobench.reports.units import axis_scale, human, human_ci, human_pct, human_ratio, plain


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (7.351e7, "bytes_per_second", "70.1 MiB/s"),
        (5.243e5, "bytes", "512 KiB"),
        (247 * 2**20, "bytes", "247 MiB"),
        (1.5 * 2**30, "bytes", "1.50 GiB"),
        (0.0021, "seconds", "2.10 ms"),
        (0.0000579, "seconds", "57.9 us"),
        (2.5e-8, "seconds", "25.0 ns"),
        (3.0, "seconds", "3.00 s"),
        (0.0, "seconds", "0 s"),
        (1.2e9, "bits_per_second", "1.20 Gbit/s"),
        (9.4e6, "bits_per_second", "9.40 Mbit/s"),
        (17400.0, "ops_per_second", "17.4 k ops/s"),
        (4477.2, "ops_per_second", "4.48 k ops/s"),
        (601.5, "ops_per_second", "602 ops/s"),
        (44.94, "score", "44.9"),
        (1.153, "ratio", "\u00d71.15"),
        (1.0, "bool", "yes"),
        (0.0, "bool", "no"),
        (512.0, "MiB", "512 MiB"),
        (12345.0, "widgets", "12.3k widgets"),
        # a whole count is written whole; a median between two counts keeps its digits
        (7.0, "primitives", "7 primitives"),
        (0.0, "primitives", "0 primitives"),
        (2.5, "primitives", "2.50 primitives"),
        (math.nan, "seconds", "\u2013"),
        (None, "bytes", "\u2013"),
    ],
)
def test_human_golden(value: float, unit: str, text: str) -> None:
    assert human(value, unit) == text


@pytest.mark.parametrize("x", [1e-12, 3.3e-7, 7.351e7, 1e15, -2.5e-9, 123456789.0])
def test_no_e_notation_ever(x: float) -> None:
    for unit in ("seconds", "bytes", "bytes_per_second", "ops_per_second", "", "x", "ratio", "score"):
        assert not re.search(r"\de[+-]?\d", human(x, unit)), (x, unit)
    assert "e" not in plain(x)


def test_interval_shares_the_median_unit() -> None:
    assert human_ci(0.0021, 0.0019, 0.0025, "seconds") == "2.10 [1.90, 2.50] ms"
    assert human_ci(2.54, 2.41, 2.76, "seconds") == "2.54 [2.41, 2.76] s"
    assert human_ci(0.0021, math.nan, math.nan, "seconds") == "2.10 ms"
    # any other unit: one count prefix for the median and both bounds
    assert human_ci(12300.0, 12100.0, 12600.0, "events/s") == "12.3 [12.1, 12.6] k events/s"
    assert human_ci(10.2, 10.0, 10.5, "probes") == "10.2 [10.0, 10.5] probes"
    assert human_ci(25.0, 20.0, 30.0, "%") == "25.0%"
    assert human(25.0, "%") == "25.0%"


def test_large_plain_numbers_keep_their_significant_digits() -> None:
    assert plain(33583.0) == "33600"
    assert plain(999.0) == "999"
    assert plain(1234.0, 4) == "1234"
    assert human_ratio(33583.0) == "\u00d733600"


def test_ratio_and_percent() -> None:
    assert human_ratio(1.153, 1.05, 1.18) == "\u00d71.15 [1.05, 1.18]"
    assert human_ratio(0.134) == "\u00d70.134"
    assert human_pct(0.102) == "+10.2%"
    assert human_pct(-0.05) == "-5.00%"
    assert human_pct(0.0) == "0%"


def test_axis_scale_follows_the_largest_value() -> None:
    s = axis_scale([1e6, 3e8], "bytes")
    assert (s.divisor, s.label) == (2.0**20, "MiB")
    s = axis_scale([0.002, 0.011, 3.0], "seconds")
    assert (s.divisor, s.label) == (1.0, "s")
    s = axis_scale([0.002, 0.011], "seconds")
    assert s.label == "ms"
