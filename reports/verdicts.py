"""A figure's verdict against native: better, worse, the same, or too uncertain to say.

Both sides of a ratio are judged as ``isobench compare`` judges two runs: a difference must be
significant and at least the minimum effect. A ratio of two samples (a sandbox's repetitions
against native's) needs its bootstrap interval to exclude 1 *and* the exact rank test to agree; a
ratio of adjacent-window pairs needs the pairs' own interval at :data:`PAIRED_CONFIDENCE`.
"""

from __future__ import annotations

import math
from typing import Literal

from isobench.exact import rank_sum_test
from isobench.model import Better

from .compare import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT

__all__ = ["MIN_EFFECT", "PAIRED_CONFIDENCE", "RANK_ALPHA", "Verdict", "rank_checked", "verdict"]

#: A difference from native smaller than this (a fraction) is "same", however narrow its interval.
MIN_EFFECT = DEFAULT_MIN_EFFECT

Verdict = Literal["better", "worse", "same", "unsure", "baseline", "none"]

#: A ratio of adjacent-window pairs gets a colour only when the pairs' interval holds the median
#: with at least this confidence: 5 pairs (their range, 94%), not the 3 of a quick run (75%); the
#: pairs of every repetition count, so a repeated network cell gets there.
PAIRED_CONFIDENCE = 0.9

#: A ratio of two samples (a sandbox's repetitions against native's) gets a colour only when the
#: exact two-sided rank test of the two agrees at this level, as ``isobench compare`` judges: the
#: bootstrap interval alone is too sure at a few repetitions. Three against three never reach it
#: (the smallest p is 0.1), and complete separation there, which the bootstrap calls a difference,
#: happens by chance one time in ten.
RANK_ALPHA = DEFAULT_ALPHA


def verdict(
    ratio: float, lo: float, hi: float, better: Better, *, n: int, n_native: int, exact: bool = False
) -> Verdict:
    """Better or worse than native, by the metric's direction; *same* when the interval includes
    native or the difference is below the minimum effect `isobench compare` uses (asv's rule: both
    significant and large enough), *unsure* when there is no interval (a single repetition)."""
    if math.isnan(ratio) or better == "none":
        return "none"
    if exact:
        if ratio == 1.0:
            return "same"
        up = ratio > 1.0
    else:
        if min(n, n_native) < 2 or math.isnan(lo) or math.isnan(hi):
            return "unsure"
        if lo <= 1.0 <= hi or abs(ratio - 1.0) < MIN_EFFECT:
            return "same"
        up = lo > 1.0
    return "better" if up == (better == "higher") else "worse"


def rank_checked(verdict_: Verdict, values: tuple[float, ...], native: tuple[float, ...]) -> Verdict:
    """A bootstrap verdict kept only where the exact rank test of the two samples agrees (p below
    :data:`RANK_ALPHA`); *unsure* where no arrangement of so few values could reach it, *same* where
    this one does not."""
    test = rank_sum_test(values, native)
    if test.min_p >= RANK_ALPHA:
        return "unsure"
    return verdict_ if test.p_value < RANK_ALPHA else "same"
