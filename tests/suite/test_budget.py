"""The budget's allocation rule and precision bookkeeping, on known numbers."""

import math
from dataclasses import replace

import numpy as np
import pytest
from isobench.budget import (
    AB_JUDGED_N,
    JUDGED_N,
    FigurePrecision,
    GroupState,
    change_precision,
    choose_round,
    driving_half_width,
    figure_precision,
    needed_repetitions,
)
from isobench.exact import paired_change
from isobench.model import Sample
from isobench.stats import summarize


def _g(
    key: str, n: int, worst: float | None, cost: float, max_n: int = 40, failed: bool = False
) -> GroupState:
    return GroupState(key=(key, "w"), n=n, max_n=max_n, worst=worst, cost=cost, failed=failed)


def test_needed_repetitions_follows_the_square_root_law() -> None:
    # half-width 10% at n=6, target 5%: n must grow 4x to 24, so 18 more
    assert needed_repetitions(_g("a", 6, 0.10, 1.0), 0.05) == 18
    assert needed_repetitions(_g("a", 6, 0.051, 1.0), 0.05) == 1  # just above: at least one more
    assert needed_repetitions(_g("a", 6, 0.04, 1.0), 0.05) == 0  # met
    assert needed_repetitions(_g("a", 6, 0.10, 1.0, max_n=8), 0.05) == 2  # the cap bounds it
    assert needed_repetitions(_g("a", 3, math.inf, 1.0), 0.05) == JUDGED_N - 3  # not judged yet
    assert needed_repetitions(_g("a", 1, math.inf, 1.0, max_n=3), 0.05) == 2  # up to its cap
    assert needed_repetitions(_g("a", 3, math.inf, 1.0, max_n=3), 0.05) == 0  # capped below judging
    assert needed_repetitions(_g("a", 6, None, 1.0), 0.05) == 0  # nothing counts (leakage)
    assert needed_repetitions(_g("a", 6, 0.5, 1.0, failed=True), 0.05) == 0
    assert needed_repetitions(_g("a", 7, math.inf, 1.0, max_n=10), 0.05) == 3  # zero median: to the cap


def test_cells_that_can_finish_go_first_cheapest_to_finish_first() -> None:
    cheap = _g("cheap", 6, 0.10, 1.0)  # needs 18 x 1 s
    pricey = _g("pricey", 6, 0.10, 50.0)  # needs 18 x 50 s
    met = _g("met", 6, 0.01, 0.1)
    assert choose_round([pricey, cheap, met], 0.05, remaining=20.0) == [("cheap", "w")]
    # with room for both whole needs, both
    assert set(choose_round([pricey, cheap, met], 0.05, remaining=1000.0)) == {
        ("cheap", "w"),
        ("pricey", "w"),
    }


def test_what_is_left_goes_to_precision_per_second() -> None:
    # neither can finish within 60 s; the one that gains more per second gets the repetition
    slow_gain = _g("a", 20, 0.08, 30.0)  # needs 52 x 30 s
    fast_gain = _g("b", 6, 0.30, 30.0)  # cannot finish either, but one more gains far more
    # the one that gains more per second is given all the budget pays for (two of 30 s, one per
    # round); the other gets none
    assert choose_round([slow_gain, fast_gain], 0.05, remaining=60.0) == [("b", "w")]
    # with more room, both
    assert set(choose_round([slow_gain, fast_gain], 0.05, remaining=2000.0)) == {("a", "w"), ("b", "w")}


def test_nothing_is_chosen_that_cannot_finish_in_time() -> None:
    assert choose_round([_g("a", 6, 0.2, 10.0)], 0.05, remaining=9.9) == []
    assert choose_round([_g("a", 6, 0.2, math.inf)], 0.05, remaining=1e9) == []  # cost unknown


def _samples(metric: str, values: list[float], **params: object) -> list[Sample]:
    return [
        Sample("r", "host", "startup", metric, v, "seconds", i, params=dict(params))
        for i, v in enumerate(values)
    ]


def test_figure_precision_is_the_ci_half_width_over_the_median() -> None:
    values = [1.00, 1.02, 0.98, 1.05, 0.97, 1.01, 0.99]
    (fig,) = figure_precision(_samples("startup.total", values), ("startup.*",))
    s = summarize(values)
    assert fig.n == 7
    assert fig.half_width == pytest.approx((s.ci_high - s.ci_low) / 2 / s.median)
    assert fig.met(0.05) and not fig.met(fig.half_width / 2)


def test_figures_below_judged_n_or_not_counted_or_zero() -> None:
    samples = (
        _samples("startup.total", [1.0, 1.1, 1.0, 1.05, 1.0])  # n=5: cannot be judged
        + _samples("startup.phase.ready", [0.0] * 6)  # always zero: exactly known
        + _samples("leakage.score", [1.0, 2.0, 3.0])  # not counted
    )
    figs = {f.metric: f for f in figure_precision(samples, ("startup.*",))}
    assert set(figs) == {"startup.total", "startup.phase.ready"}
    assert figs["startup.total"].half_width == math.inf
    assert figs["startup.phase.ready"].half_width == 0.0


def test_the_ab_label_is_not_part_of_the_figure() -> None:
    samples = _samples("cpu.events_per_second", [10.0, 10.2, 9.9], ab="A", threads=1)
    (fig,) = figure_precision(samples, ("cpu.events_per_second",))
    assert fig.variant == "threads=1"


def test_a_cheap_cell_is_not_held_to_one_repetition_per_round_by_an_expensive_one() -> None:
    cheap = _g("cheap", 6, 0.0875, 1.0)  # needs ceil(6 * 1.75**2) - 6 = 13 more x 1 s: can finish
    pricey = _g("pricey", 6, 0.30, 50.0)  # cannot finish in 100 s; gets one from the spare
    keys = choose_round([cheap, pricey], 0.05, remaining=100.0)
    # about two rounds of 51 s are left: the cheap cell's 13 go in ~7 per round
    assert keys.count(("pricey", "w")) == 1
    assert keys.count(("cheap", "w")) == 7


def test_a_group_that_cannot_reach_the_target_within_its_cap_only_gets_the_spare() -> None:
    from isobench.budget import reachable

    hopeless = _g("hopeless", 10, 0.50, 1.0, max_n=100)  # would need n=1000
    finishable = _g("finishable", 6, 0.06, 10.0)  # needs ceil(6 * 1.44) - 6 = 3 more x 10 s
    assert not reachable(hopeless, 0.05) and reachable(finishable, 0.05)
    assert not reachable(_g("zero", 6, math.inf, 1.0), 0.05)
    # 35 s: the finishable group's 30 s are committed first; the hopeless one gets the other 5 s,
    # i.e. 5 repetitions spread over the ~3 rounds left (35 s / 11 s a round): 2 in this one
    keys = choose_round([hopeless, finishable], 0.05, remaining=35.0)
    assert keys.count(("finishable", "w")) == 1 and keys.count(("hopeless", "w")) == 2
    # 30 s: nothing is left over for it
    assert choose_round([hopeless, finishable], 0.05, remaining=30.0).count(("hopeless", "w")) == 0


def test_a_cheap_cell_that_cannot_reach_the_target_still_gets_many_repetitions() -> None:
    """Start-up phases of microseconds rarely reach 5%; their cells cost milliseconds, so the spare
    budget should buy them many repetitions per round, not one per round paced by a slow cell."""
    phases = _g("host-startup", 9, 0.70, 0.05, max_n=100)  # hopeless within 100, but cheap
    slow = _g("vm-cpu", 6, 0.30, 30.0)  # hopeless too, expensive
    keys = choose_round([phases, slow], 0.05, remaining=120.0)
    assert keys.count(("host-startup", "w")) > 10
    assert keys.count(("vm-cpu", "w")) == 1


def _fig(metric: str, half_width: float, n: int = 10) -> FigurePrecision:
    return FigurePrecision(metric, "", n, 1.0, half_width)


def test_a_figure_that_cannot_reach_the_target_does_not_hide_those_that_can() -> None:
    """The 2026-12-03 17:51 default run: runc's start-up cell at n=7 had its total at +-5.3% (one
    more repetition finishes it) and its create phase at +-76% (no n within 100 does); judged by
    the create phase alone the cell only got the spare, and the spare went to cheaper cells."""
    wait = _fig("startup.phase.create", 0.76)  # needs n = 10 * 15.2**2 = 2311: hopeless
    total = _fig("startup.total", 0.06)  # needs n = ceil(10 * 1.44) = 15: 5 more
    exec_ = _fig("startup.exec", 0.12)  # needs n = 58: 48 more, within the cap of 100
    met = _fig("startup.to_ready", 0.03)
    assert driving_half_width([wait, total, exec_, met], 10, 100, 0.05) == 0.12
    assert driving_half_width([wait, total, met], 10, 100, 0.05) == 0.06
    # with a cap the exec figure cannot reach, it no longer drives either
    assert driving_half_width([wait, total, exec_], 10, 40, 0.05) == 0.06
    # nothing left that can finish: the worst of all, and the cell only gets the spare as before
    assert driving_half_width([wait, met], 10, 100, 0.05) == 0.76
    assert driving_half_width([met], 10, 100, 0.05) == 0.03  # all met
    assert driving_half_width([_fig("a", math.inf), met], 10, 100, 0.05) == math.inf
    # below the judging n every figure gets the benefit of the doubt
    assert driving_half_width([wait, total], 3, 100, 0.05) == 0.76
    assert driving_half_width([], 10, 100, 0.05) is None

    # so the runc cell is finished (5 x 0.15 s) before the spare goes to a cheap hopeless cell
    runc = _g("runc", 10, driving_half_width([wait, total], 10, 100, 0.05), 0.15, max_n=100)
    cheap = _g("container", 20, 0.76, 0.01, max_n=100)
    assert needed_repetitions(runc, 0.05) == 5
    keys = choose_round([cheap, runc], 0.05, remaining=0.75)
    assert ("runc", "w") in keys and ("container", "w") not in keys
    # judged by its worst figure, it got nothing: the cheap cell gains more per second
    judged_by_worst = replace(runc, worst=0.76)
    assert ("runc", "w") not in choose_round([cheap, judged_by_worst], 0.05, remaining=0.75)


def test_an_ab_group_needs_enough_rounds_for_the_signed_rank_test() -> None:
    from isobench.budget import AB_JUDGED_N
    from isobench.exact import signed_rank_test

    met = GroupState(key=("a", "w"), n=JUDGED_N, max_n=40, worst=0.01, cost=1.0, min_n=AB_JUDGED_N)
    assert needed_repetitions(met, 0.05) == AB_JUDGED_N - JUDGED_N
    assert needed_repetitions(replace(met, n=AB_JUDGED_N), 0.05) == 0
    assert needed_repetitions(replace(met, max_n=8), 0.05) == 2  # a capped workload stops at its cap
    # Why 10: the most extreme outcome of n rounds, every B above its A.
    assert signed_rank_test([1.0] * JUDGED_N).p_value > 0.05 / 2
    assert signed_rank_test([1.0] * AB_JUDGED_N).p_value < 0.05 / 25


def _rounds(metric: str, values: list[float], rounds: list[int], **params: object) -> list[Sample]:
    return [
        Sample("r", "host", "startup", metric, v, "seconds", i, params=dict(params), metadata={"round": r})
        for i, (v, r) in enumerate(zip(values, rounds, strict=True))
    ]


def test_an_ab_change_is_known_by_its_paired_interval_not_by_the_sides() -> None:
    # Both sides drift together over 12 rounds (+-40%), B is 10% slower in every round: each side's
    # median is poorly known, the change exactly.
    drift = [1.0, 1.4, 0.7, 1.2, 0.6, 1.3, 0.9, 1.1, 0.8, 1.35, 0.65, 1.05]
    rounds = list(range(12))
    a = _rounds("startup.total", drift, rounds, ab="A")
    b = _rounds(
        "startup.total", [1.1 * x * (1 + 0.001 * (i % 3)) for i, x in enumerate(drift)], rounds, ab="B"
    )
    (side,) = figure_precision(a, ("startup.*",))
    (change,) = change_precision(a, b, ("startup.*",))
    assert side.half_width > 0.15
    assert change.n == 12 and change.median == pytest.approx(0.101, abs=0.002)
    assert change.half_width < 0.002
    expected = paired_change(drift, [s.value for s in b])
    assert change.half_width == pytest.approx(expected.half_width)
    assert change.variant == ""  # the A/B label is not part of the figure


def test_an_ab_change_pairs_rounds_and_counts_only_those_both_sides_measured() -> None:
    rng = np.random.default_rng(5)
    a_vals = list(1.0 + 0.05 * rng.standard_normal(14))
    b_vals = list(1.0 + 0.05 * rng.standard_normal(14))
    a = _rounds("cpu.events_per_second", a_vals, list(range(14)))
    b = _rounds("cpu.events_per_second", b_vals, list(range(2, 16)))  # rounds 2..15
    (change,) = change_precision(a, b, ("cpu.*",))
    assert change.n == 12
    expected = paired_change(a_vals[2:], b_vals[:12])  # rounds 2..13
    assert change.half_width == pytest.approx(expected.half_width)
    assert change.median == pytest.approx(expected.change)


def test_an_ab_change_below_the_rounds_its_test_needs_is_not_judged() -> None:
    n = AB_JUDGED_N - 1
    a = _rounds("startup.total", [1.0] * n, list(range(n)))
    b = _rounds("startup.total", [1.1] * n, list(range(n)))
    (change,) = change_precision(a, b, ("startup.*",))
    assert change.half_width == math.inf and not change.met(0.05)
    (only_a,) = change_precision(a, [], ("startup.*",))  # a figure one side never gave
    assert only_a.n == 0 and only_a.half_width == math.inf


def test_an_ab_change_of_a_figure_that_can_be_zero_is_relative_to_a() -> None:
    a = _rounds("startup.phase.ready", [0.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0], list(range(10)))
    b = _rounds("startup.phase.ready", [0.2, 2.2, 1.2, 2.2, 1.2, 2.2, 1.2, 2.2, 1.2, 2.2], list(range(10)))
    (change,) = change_precision(a, b, ("startup.*",))
    assert change.median == pytest.approx(0.2 / 1.5)  # +0.2 on a median of 1.5
    assert change.half_width == pytest.approx(0.0, abs=1e-12)


def test_an_ab_change_of_a_figure_that_is_always_zero_is_known_exactly() -> None:
    # A phase that takes no time on either side (startup.phase.ready): nothing to buy rounds for.
    zeros = _rounds("startup.phase.ready", [0.0] * 12, list(range(12)))
    (change,) = change_precision(zeros, zeros, ("startup.*",))
    assert change.half_width == 0.0 and change.met(0.05)
    moved = _rounds("startup.phase.ready", [0.0] * 11 + [1e-6], list(range(12)))
    (change,) = change_precision(zeros, moved, ("startup.*",))
    assert change.half_width == math.inf  # zero on A, not on B: no relative change to know
