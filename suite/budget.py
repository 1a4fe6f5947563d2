"""Budgeted, adaptive repetitions: how many times each cell runs is decided while running.

The anchor is the Phoronix Test Suite (``pts_test_run_manager::increase_run_count_check``): after
the configured runs, it adds another run of a test while the standard deviation is at least 2.5% of
the mean, up to 4x the runs for short tests. That rule looks at one test at a time, in isolation, and
at the spread of the *samples*, so it keeps adding runs to a test whose samples are inherently
spread (a bimodal start-up time never gets its stdev under 2.5%, however many runs it gets) and it
has no idea what the runs cost or what else needs them. isobench instead:

- targets the precision of what it reports: the half-width of the median's confidence interval
  relative to the median (``isobench.stats.summarize``), which shrinks with n even when the samples
  are spread, so "more runs" always buys something and stops when the figure is known well enough;
- allocates one wall-time budget across all cells: every (driver, workload) first gets a minimum n
  (3, or a capped workload's quick cap), then each further round holds the cells that still miss the
  target, cheapest-to-finish first: a cell's remaining need is estimated from the 1/sqrt(n) law
  (``n * (w / target)**2`` repetitions for relative half-width ``w``) and priced at its measured cell
  cost, so the budget buys as many figures at target as it can (a cell is judged by the worst of
  its figures that can still reach the target within the cap, so one that cannot does not hide the
  others); what it cannot bring to target gets what is left, by precision gained per second;
- does not let the first pass starve the cheap figures: before its last round (the costly one-shot
  cells), groups whose whole need costs little get it, within ``CHEAP_SHARE`` of the budget;
- keeps the repetitions interleaved: extra repetitions run in rounds (each in a fresh random order),
  never back to back, so drift still spreads over drivers;
- never starts a cell it predicts cannot finish inside the budget (prediction: the slowest measured
  cell of that unit, else of that workload on any driver); the default budget's first pass may run
  past it, up to ``FIRST_PASS_GRACE`` budgets more, so a default run measures every cell on a host
  up to twice as slow as the one it was sized on, and a hung driver still cannot hold it for hours;
- records, per figure, the precision reached and whether it met the target (``run["budget"]``).

Which figures count (a workload's ``precision_figures``, glob patterns over metric names): every
start-up figure, and each other workload's headline figures (cpu events/s, memory bandwidth, the
syscall costs, the overlay timings, idle memory, disk IOPS, TCP throughput and RTT p50). Leakage
verdicts (0/1 per probe, and their count and score) and interference's aggregated ratios do not: they
are aggregates within one cell, not noisy estimates that more repetitions would sharpen.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from isobench.exact import paired_change
from isobench.model import Sample
from isobench.schedule import Cell, Unit
from isobench.stats import summarize

if TYPE_CHECKING:
    from isobench.workloads.base import Workload

__all__ = [
    "AB_JUDGED_N",
    "AB_MAX_N",
    "ADAPTIVE_MAX_N",
    "CHEAP_SHARE",
    "DEFAULT_BUDGET_S",
    "DEFAULT_PRECISION",
    "FIRST_N",
    "FIRST_PASS_GRACE",
    "JUDGED_N",
    "BudgetClock",
    "FigurePrecision",
    "GroupState",
    "Ledger",
    "budget_limits",
    "budget_record",
    "change_precision",
    "cheap_groups",
    "choose_round",
    "driving_half_width",
    "figure_precision",
    "mmss",
    "needed_repetitions",
    "reachable",
]

#: The default run's budget for the matrix (set-up checks before it and the report after it are not
#: counted): with those, a default run ends within about 21 minutes on the reference 2-core TCG host.
#: A first pass of the default matrix (7 drivers x 13 workloads at quick sizes) took 1030 s there on
#: a quiet host, so 15 minutes could not even finish it and 18 left a little for extra rounds; the
#: RTT's adjacent-window pairs (on by default since) added ~63 s, and four default runs in a row
#: with 18 minutes then left 5-11 density and limits cells unmeasured (their first passes needed
#: ~1170 s at up to 33-36% steal). 20 minutes held such a first pass, but not one of ~1300 s (a
#: default run on 2026-12-02 left 9 units unmeasured), so the default budget's first pass may overrun
#: it (``FIRST_PASS_GRACE``); a budget the user gives stays a hard cap.
DEFAULT_BUDGET_S = 20 * 60.0
#: How far past the default budget its first pass (every cell at its minimum n) may run, in budgets:
#: the default run's first pass took 1030-1300 s on the reference host, whose speed varies by more
#: than its steal shows; one more budget measures every cell on a host twice as slow, while a driver
#: whose every cell hangs to its deadline (600 s) stops being started once the grace is spent.
FIRST_PASS_GRACE = 1.0
#: Target: the 95% CI's half-width at most this fraction of the median.
DEFAULT_PRECISION = 0.05
#: Every unit's first pass: enough for a median and a range, not yet for a 95% interval.
FIRST_N = 3
#: Before the first pass's last round (the costly one-shot cells), groups whose whole remaining need
#: costs little are brought to the target with at most this share of the budget: a default run's
#: first pass can take the whole budget, which left start-up figures that cost 4-20 ms a start at
#: n=3-9 (intervals of +-100%) for want of a second or two.
CHEAP_SHARE = 0.01
#: A figure is judged against the target from this n on: the smallest n whose exact interval of
#: the median reaches 95% (isobench.stats: [x(1), x(6)] at n=6, 96.9%); below it the interval is
#: the range at a lower confidence (93.8% at n=5), so the figure counts as not met yet.
JUDGED_N = 6
#: An A/B run's groups get at least this many rounds: their gate is the exact signed-rank test over
#: rounds, whose smallest two-sided p is 2/2^n, so 6 rounds (0.031) cannot judge even two gated
#: figures at alpha 0.05 however precise each median is, and 10 (0.002) can judge up to 25.
AB_JUDGED_N = 10
#: Repetitions an uncapped cell may get at most by default (a cell far from its target stops here);
#: ``isobench run --max-n`` / ``[run] max_n`` raise it when the budget should buy more (a gate).
ADAPTIVE_MAX_N = 100
#: The cap of an A/B run when none is set. Its rounds buy the precision of the *change* B/A, which
#: its gate tests; a change known to +-5% is what catches a 10% regression about 9 times in 10 (see
#: ``change_precision``). Measured on the reference host, 100 rounds left the change of host and
#: container start-up known to only +-5-6% (a 10% start-up regression was missed in 3 of 20 A/B
#: runs), while 400 rounds of both cost 76 s; a costly cell stops at the budget long before.
AB_MAX_N = 400


@dataclass(frozen=True)
class FigurePrecision:
    """How well one figure (metric and params variant of one unit) is known."""

    metric: str
    variant: str
    n: int
    median: float
    #: CI half-width / |median|; inf when it cannot be judged (n below JUDGED_N, or a zero median
    #: with a non-zero interval).
    half_width: float

    def met(self, target: float) -> bool:
        return self.half_width <= target

    def to_dict(self, target: float) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "variant": self.variant,
            "n": self.n,
            "median": self.median,
            "half_width": self.half_width if math.isfinite(self.half_width) else None,
            "met": self.met(target),
        }


def counts_for_precision(metric: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(metric, p) for p in patterns)


def _variant(params: Mapping[str, Any]) -> str:
    # Named as the report names it (the CLI has the reports loaded anyway); the A/B label is the
    # unit's, not the figure's.
    from isobench.reports.cells import variant_of

    return variant_of({k: v for k, v in params.items() if k != "ab"})


def figure_precision(samples: Iterable[Sample], patterns: Sequence[str]) -> list[FigurePrecision]:
    """The precision of every counted figure among ``samples`` (one unit's measured samples)."""
    values: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        if s.value is None or s.warmup or not counts_for_precision(s.metric, patterns):
            continue
        values.setdefault((s.metric, _variant(s.params)), []).append(float(s.value))
    out: list[FigurePrecision] = []
    for (metric, variant), vals in sorted(values.items()):
        summary = summarize(vals)
        rel = summary.relative_half_width
        if len(vals) < JUDGED_N:
            rel = math.inf
        elif math.isnan(rel):  # a zero median: exactly known when the interval is [0, 0] too
            rel = 0.0 if summary.ci_low == summary.ci_high == 0 else math.inf
        out.append(FigurePrecision(metric, variant, len(vals), summary.median, rel))
    return out


def _per_round(
    samples: Iterable[Sample], patterns: Sequence[str]
) -> dict[tuple[str, str], dict[int, list[float]]]:
    out: dict[tuple[str, str], dict[int, list[float]]] = {}
    for s in samples:
        if s.value is None or s.warmup or not counts_for_precision(s.metric, patterns):
            continue
        rnd = int(s.metadata.get("round", s.repetition))
        out.setdefault((s.metric, _variant(s.params)), {}).setdefault(rnd, []).append(float(s.value))
    return out


def change_precision(
    base: Iterable[Sample], other: Iterable[Sample], patterns: Sequence[str]
) -> list[FigurePrecision]:
    """How well the change of ``other`` against ``base`` is known for every counted figure, paired
    by round, as ``isobench compare RUN --ab`` estimates and gates it: the half-width of the exact
    signed-rank interval around the Hodges-Lehmann change of the per-round ratio, relative to A
    (``median`` of the result is that change: 0.05 = 5% more).

    An A/B run spends its budget on this, not on either side's median: the gate tests the change,
    and the rounds' shared drift cancels in it (so it may need fewer rounds than a side) while the
    two sides' independent noise adds (so it may need more). With an interval of half-width h the
    test sees a true change c at about (c / h) * 1.96 standard errors, so at h = 5% a 10% change is
    found with power ~97% alone and ~90% under Holm over six gated figures (z 2.64). Below
    AB_JUDGED_N rounds a change counts as not judged (inf), as the test cannot judge it either."""
    a = _per_round(base, patterns)
    b = _per_round(other, patterns)
    out: list[FigurePrecision] = []
    for key in sorted(a.keys() | b.keys()):
        rounds = sorted(a.get(key, {}).keys() & b.get(key, {}).keys())
        if len(rounds) < 2:
            out.append(FigurePrecision(key[0], key[1], len(rounds), math.nan, math.inf))
            continue
        va = [statistics.median(a[key][r]) for r in rounds]
        vb = [statistics.median(b[key][r]) for r in rounds]
        pc = paired_change(va, vb)
        rel = pc.half_width
        if math.isnan(rel):  # relative to a zero median: known exactly only if nothing changed
            rel = 0.0 if va == vb else math.inf
        if len(rounds) < AB_JUDGED_N:
            rel = math.inf
        out.append(FigurePrecision(key[0], key[1], len(rounds), pc.change, rel))
    return out


@dataclass(frozen=True)
class GroupState:
    """What the allocator knows about one (driver, workload) and its A/B configurations."""

    key: tuple[str, str]
    #: Measured repetitions so far (the fewest of its configurations).
    n: int
    max_n: int
    #: The relative half-width its need is judged by (``driving_half_width``): the worst of its
    #: counted figures that can still reach the target, else the worst of all; None when no figure
    #: counts.
    worst: float | None
    #: Predicted seconds of one more repetition (every configuration of it).
    cost: float
    failed: bool = False
    figures: tuple[FigurePrecision, ...] = field(default=(), compare=False)
    #: Repetitions before the group is judged against the target at all (AB_JUDGED_N in an A/B run).
    min_n: int = JUDGED_N


def _n_to_reach(n: int, half_width: float, target: float) -> int:
    """The n at which a figure now at ``half_width`` after ``n`` repetitions is expected to reach
    ``target``: half-widths shrink as 1/sqrt(n)."""
    return math.ceil(n * (half_width / target) ** 2)


def driving_half_width(
    figures: Sequence[FigurePrecision], n: int, max_n: int, target: float, min_n: int = JUDGED_N
) -> float | None:
    """The relative half-width a group's need is judged by: the worst of its counted figures that
    miss the target yet can reach it within ``max_n`` repetitions (the 1/sqrt(n) law), or, when none
    can, the worst of all. A figure no affordable n brings to target (a start-up's sub-millisecond
    wait at +-80%) must not hide the figures of the same cell that a few more repetitions finish:
    the budget's aim is the number of figures at target. Below the judging n every figure is given
    the benefit of the doubt (the worst counts). None when no figure counts."""
    if not figures:
        return None
    worst = max(f.half_width for f in figures)
    if n < min(min_n, max_n):
        return worst
    finishable = [
        f.half_width
        for f in figures
        if target < f.half_width < math.inf and _n_to_reach(n, f.half_width, target) <= max_n
    ]
    return max(finishable) if finishable else worst


def needed_repetitions(g: GroupState, target: float) -> int:
    """Extra repetitions ``g`` needs to reach ``target``, from the 1/sqrt(n) law, within its cap."""
    if g.failed or g.worst is None or g.n >= g.max_n:
        return 0
    if g.n < g.min_n:
        return min(g.min_n, g.max_n) - g.n
    if g.worst <= target:
        return 0
    if not math.isfinite(g.worst):
        return g.max_n - g.n
    want = _n_to_reach(g.n, g.worst, target)
    return max(1, min(want, g.max_n) - g.n)


def reachable(g: GroupState, target: float) -> bool:
    """Whether ``g`` is expected to reach ``target`` within its cap (a group not judged yet is
    given the benefit of the doubt until it is)."""
    if g.n < min(g.min_n, g.max_n):
        return True
    if g.worst is None or not math.isfinite(g.worst):
        return False
    return _n_to_reach(g.n, g.worst, target) <= g.max_n


def _gain_per_second(g: GroupState, target: float) -> float:
    worst = g.worst if g.worst is not None and math.isfinite(g.worst) else 1.0
    after = worst * math.sqrt(g.n / (g.n + 1)) if g.n > 0 else 0.0
    return (worst - max(after, target)) / max(g.cost, 1e-6)


def cheap_groups(groups: Sequence[GroupState], target: float, allowance: float) -> list[GroupState]:
    """The groups whose whole remaining need (to the target, or to their cap when they cannot
    reach it) costs at most ``allowance`` seconds."""
    return [g for g in groups if 0 < needed_repetitions(g, target) * g.cost <= allowance]


def choose_round(groups: Sequence[GroupState], target: float, remaining: float) -> list[tuple[str, str]]:
    """The next round: the keys of the groups it holds, a key once per repetition it gets.

    First the groups that can still reach the target within their cap, cheapest to finish first,
    while their whole remaining need fits the budget; then, with what those do not claim, groups
    that cannot reach it (or do not fit whole), by precision gained per second, each as many
    repetitions (up to its cap) as the rest of the budget pays for. Nothing is chosen whose one
    repetition does not fit. Each group's repetitions are spread over the rounds the budget still
    holds (``remaining`` / this round's cost).
    """
    wanting = [g for g in groups if needed_repetitions(g, target) > 0 and g.cost <= remaining]
    finish = sorted(
        (g for g in wanting if reachable(g, target)),
        key=lambda g: (needed_repetitions(g, target) * g.cost, g.key),
    )
    # (group, repetitions it is given from here on): whole needs first, then what is left
    plan: list[tuple[GroupState, int]] = []
    committed = 0.0
    for g in finish:
        whole = needed_repetitions(g, target) * g.cost
        if committed + whole <= remaining:
            plan.append((g, needed_repetitions(g, target)))
            committed += whole
    spare = remaining - committed
    planned = {g.key for g, _ in plan}
    rest = sorted(
        (g for g in wanting if g.key not in planned), key=lambda g: (-_gain_per_second(g, target), g.key)
    )
    for g in rest:
        affordable = int(spare // g.cost) if g.cost > 0 else needed_repetitions(g, target)
        given = min(needed_repetitions(g, target), affordable)
        if given > 0:
            plan.append((g, given))
            spare -= given * g.cost
    if not plan:
        return []
    # Spread each group's repetitions over the rounds the budget still holds, so a cheap cell is not
    # held to one per round by an expensive neighbour, yet is not run all at once either.
    round_cost = sum(g.cost for g, _ in plan)
    rounds_left = max(1.0, remaining / round_cost)
    left = remaining - round_cost
    keys: list[tuple[str, str]] = []
    for g, total in plan:
        keys.append(g.key)
        extra = min(math.ceil(total / rounds_left) - 1, int(left // g.cost) if g.cost > 0 else total)
        keys += [g.key] * max(0, extra)
        left -= max(0, extra) * g.cost
    return keys


class BudgetClock:
    """Seconds left of a budget on ``clock`` (a fake one in tests)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._end = self._start + seconds

    def left(self) -> float:
        return self._end - self._clock()

    def spent(self) -> float:
        return self._clock() - self._start


class Ledger:
    """Per unit: its cells' samples and wall times, and the precision of its counted figures."""

    def __init__(self) -> None:
        self._samples: dict[Unit, list[Sample]] = {}
        self._costs: dict[Unit, list[float]] = {}
        self._warm_costs: dict[Unit, list[float]] = {}
        self._attempts: dict[Unit, int] = {}
        self._failed: set[Unit] = set()
        self._figures: dict[Unit, tuple[int, list[FigurePrecision]]] = {}
        self._changes: dict[tuple[Unit, Unit], tuple[int, int, list[FigurePrecision]]] = {}
        self.skipped: dict[Unit, int] = {}

    def record(self, cell: Cell, samples: Sequence[Sample], seconds: float) -> None:
        u = cell.unit
        if cell.warmup:
            self._warm_costs.setdefault(u, []).append(seconds)
            return
        self._attempts[u] = self._attempts.get(u, 0) + 1
        self._costs.setdefault(u, []).append(seconds)
        if any(s.failed for s in samples):
            self._failed.add(u)
        self._samples.setdefault(u, []).extend(s for s in samples if not s.failed)

    def skip(self, cell: Cell) -> None:
        self.skipped[cell.unit] = self.skipped.get(cell.unit, 0) + 1

    def units(self) -> list[Unit]:
        return list(self._attempts)

    def attempts(self, u: Unit) -> int:
        return self._attempts.get(u, 0)

    def measured(self, u: Unit) -> int:
        return len({s.repetition for s in self._samples.get(u, [])})

    def failed(self, u: Unit) -> bool:
        return u in self._failed

    def typical_cost(self, u: Unit) -> float | None:
        costs = self._costs.get(u) or self._warm_costs.get(u)
        return statistics.median(costs) if costs else None

    def predict(self, u: Unit) -> float | None:
        """The slowest cell of this unit so far, else of its workload on any unit (None: unseen)."""
        own = self._costs.get(u, []) + self._warm_costs.get(u, [])
        if own:
            return max(own)
        same = [
            c
            for v, cs in (*self._costs.items(), *self._warm_costs.items())
            if v.workload == u.workload
            for c in cs
        ]
        return max(same) if same else None

    def changes(self, base: Unit, other: Unit, patterns: Sequence[str]) -> list[FigurePrecision]:
        """``change_precision`` of ``other`` against ``base`` (an A/B run's configurations)."""
        a, b = self._samples.get(base, []), self._samples.get(other, [])
        cached = self._changes.get((base, other))
        if cached is None or cached[:2] != (len(a), len(b)):
            cached = (len(a), len(b), change_precision(a, b, patterns))
            self._changes[(base, other)] = cached
        return cached[2]

    def figures(self, u: Unit, patterns: Sequence[str]) -> list[FigurePrecision]:
        samples = self._samples.get(u, [])
        cached = self._figures.get(u)
        if cached is None or cached[0] != len(samples):
            cached = (len(samples), figure_precision(samples, patterns))
            self._figures[u] = cached
        return cached[1]


def budget_record(
    ledger: Ledger,
    patterns: Mapping[str, Sequence[str]],
    drivers: Iterable[str],
    labels: Sequence[str | None],
    limits: Mapping[str, tuple[int, int]],
    target: float,
) -> dict[str, Any]:
    """``run["budget"]`` but for how the budget went (seconds, spent, stopped, first pass, which
    the runner adds): per unit its n, cost, status and counted figures (``patterns`` per
    workload), and in an A/B run each configuration's changes against the first."""
    rows: list[dict[str, Any]] = []
    for u in sorted({*ledger.units(), *ledger.skipped}):
        figures = ledger.figures(u, tuple(patterns[u.workload]))
        n = ledger.measured(u)
        if ledger.failed(u):
            status = "failed"
        elif n < limits[u.workload][0]:
            status = "below its minimum n (budget)"
        elif not figures:
            status = "no counted figures"
        else:
            status = "met" if all(f.met(target) for f in figures) else "below target"
        cost = ledger.typical_cost(u)
        rows.append(
            {
                "driver": u.driver,
                "workload": u.workload,
                "variant": u.variant,
                "n": n,
                "cost_s": round(cost, 3) if cost is not None else None,
                "status": status,
                "figures": [f.to_dict(target) for f in figures],
            }
        )
    counted = [f for r in rows for f in r["figures"]]
    record: dict[str, Any] = {}
    if len(labels) > 1:
        record["changes"] = _change_rows(ledger, patterns, drivers, labels, target)
    return record | {
        "precision": target,
        "limits": {w: {"min_n": lo, "max_n": hi} for w, (lo, hi) in limits.items()},
        "figures_counted": len(counted),
        "figures_met": sum(f["met"] for f in counted),
        "cells_skipped": sum(ledger.skipped.values()),
        "units": rows,
    }


def _change_rows(
    ledger: Ledger,
    patterns: Mapping[str, Sequence[str]],
    drivers: Iterable[str],
    labels: Sequence[str | None],
    target: float,
) -> list[dict[str, Any]]:
    """An A/B run's changes against its first configuration, and how well each is known."""
    rows: list[dict[str, Any]] = []
    base = labels[0]
    for driver in drivers:
        for workload, wanted in patterns.items():
            for label in labels[1:]:
                changes = ledger.changes(
                    Unit(driver, workload, base), Unit(driver, workload, label), tuple(wanted)
                )
                rows += [
                    {"driver": driver, "workload": workload, "label": label, "against": base}
                    | {k: v for k, v in f.to_dict(target).items() if k != "median"}
                    | {"change": f.median if math.isfinite(f.median) else None}
                    for f in changes
                ]
    return rows


def mmss(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def budget_limits(
    workloads: Mapping[str, Workload], max_n: int = ADAPTIVE_MAX_N
) -> dict[str, tuple[int, int]]:
    """Per workload, the (minimum, maximum) n of a budgeted run: a capped workload starts at its
    quick cap (or FIRST_N if lower) and may grow to its cap; others start at FIRST_N and may grow to
    ``max_n``."""
    limits: dict[str, tuple[int, int]] = {}
    for name, w in workloads.items():
        cap = w.max_repetitions
        low = min(c for c in (FIRST_N, w.quick_repetitions, cap) if c)
        limits[name] = (low, cap or max_n)
    return limits
