"""The headline: what each isolation technology costs, one row per driver, one column per question.

Which figure answers which question is decided once, in :data:`QUESTIONS`; the HTML report, summary.md
and the terminal all show the same :class:`Headline`. A figure is either a value in human units
(start-up time, idle memory, network, syscall cost, leak score, containment) or a ratio to native
(CPU, memory bandwidth), with the median's interval where there is one (exact, order-statistic: the
range at n <= 5, with the confidence it really has), and a verdict against native that respects the metric's direction ("lower" or "higher" is better): a difference whose
interval includes native is *same*, not better or worse.

A guest driver's row names the kernel its guests booted (``qemu (micro kernel)``, ``vm (stock
kernel)``), read from the samples' ``kernel_flavour`` metadata, never from the driver's name: the
flavour is an option of either guest driver, and the two ends of the VM side differ mostly by it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from isobench.hostsys.procstat import HIGH_STEAL
from isobench.model import Better
from isobench.results import SCHEMA_VERSION, Results
from isobench.stats import ratio_ci, summarize

from .budget import missed_targets
from .cells import (
    NATIVE,
    PAIRED_RATIOS,
    STEAL_GAP,
    Cell,
    CellKey,
    driver_labels,
    driver_order,
    group_cells,
    steal_may_explain,
    variant_of,
)
from .leak_rank import leak_figures
from .memory import idle_overhead
from .units import NA, TIMES, human, human_ratio, plain
from .verdicts import MIN_EFFECT, PAIRED_CONFIDENCE, Verdict, rank_checked, verdict

__all__ = [
    "BELOW_TARGET",
    "CONTAINMENT",
    "HELD_BACK",
    "HELD_BACK_NOTE",
    "LEAK",
    "MEMORY",
    "MIN_EFFECT",
    "PAIRED_CONFIDENCE",
    "PAIRED_WORDS",
    "QUESTIONS",
    "START",
    "START_TO_READY",
    "Figure",
    "Headline",
    "Question",
    "Verdict",
    "build_headline",
    "cell_figure",
    "paired_ratios",
    "questions_for",
    "verdict",
]

#: How a question's parameters say that its ratios to native come from adjacent windows.
PAIRED_WORDS = "ratio to native: median over adjacent 1 s windows, the sandbox's and host loopback's"

#: Marks a figure that missed the budgeted run's precision target.
BELOW_TARGET = "\u2020"
#: Marks a ratio measured apart whose slower side ran under notably more host steal than the other.
HELD_BACK = "\u2021"

#: Questions answered by something other than one metric's cells.
MEMORY = "memory"
CONTAINMENT = "containment"
#: The leak score: its interval comes from the probes' evidence (isobench.reports.leak_rank).
LEAK = "leak"
#: Start-up: to a first command's exit, which compares sandboxes that make their isolation at
#: create (container, runc, guests) with bwrap, which makes it in every exec and is "ready" first.
START = "start"


@dataclass(frozen=True)
class Question:
    """One headline column: the metric that answers it and how it is shown."""

    key: str
    title: str
    workload: str
    #: The metric; for :data:`CONTAINMENT` a prefix and suffix around the stressor name.
    metric: str
    #: Params a cell must have *when it has the key* (cells without the key match too).
    where: Mapping[str, Any]
    #: "value" shows the figure in human units; "ratio" shows it as a ratio to native.
    show: Literal["value", "ratio"]
    #: The parameters behind the figure, stated once.
    params: str
    #: Counts and probe verdicts: any difference from native is real, no interval needed.
    exact: bool = False
    #: Shown in this unit instead of the metric's (same raw values: ops_per_second as IOPS).
    unit: str | None = None


#: The paired figure (its samples carry ``pair_ratios``) that gives a metric's ratio to native.
_PAIRED_FOR = {of: paired for paired, of in PAIRED_RATIOS.items()}

QUESTIONS: tuple[Question, ...] = (
    Question(
        START, "start to first command", "startup", "startup.to_exit", {}, "value",
        "cold start until a first command (`true`) has run in the sandbox: to ready plus one exec",
    ),
    Question(
        MEMORY, "idle memory (host)", "idle-memory", "idle-memory.host_view", {}, "value",
        "host-side memory of one idle sandbox; worse when above 5% of the sandbox's own memory",
    ),
    Question(
        "cpu", "CPU", "cpu", "cpu.events_per_second", {"variant": "single"}, "ratio",
        "sysbench cpu, 1 thread, events/s",
    ),
    Question(
        "membw", "memory bandwidth", "memory-bandwidth", "memory-bandwidth.read.bandwidth",
        {"variant": "single"}, "ratio", "sysbench memory, sequential read, 1 thread",
    ),
    Question(
        "disk_root", "disk IOPS (root)", "disk", "disk.rand_read.iops",
        {"storage": "root", "iodepth": 1}, "value", "fio 4 KiB random read, QD1, root filesystem", unit="iops",
    ),
    Question(
        "disk_volume", "disk IOPS (volume)", "disk", "disk.rand_read.iops",
        {"storage": "volume", "iodepth": 1}, "value", "fio 4 KiB random read, QD1, volume at /data", unit="iops",
    ),
    Question(
        "net", "network throughput", "network", "network.tcp_throughput", {}, "value",
        "iperf3 TCP, 1 stream, host to sandbox",
    ),
    Question(
        "rtt", "network RTT", "network", "network.tcp_rtt.p50", {}, "value",
        "sockperf TCP ping-pong, median round trip",
    ),
    Question(
        "syscall", "syscall cost", "syscall", "syscall.read_write.per_call", {}, "value",
        "1-byte read or write (dd bs=1), per call",
    ),
    Question(
        LEAK, "leak score", "leakage", "leakage.score", {"hardening": True}, "value",
        "weighted share of host-information probes that leak; lower is better", exact=True,
    ),
    Question(
        CONTAINMENT, "containment", "interference", "interference.*.contained", {"hardening": True}, "value",
        "stressors in a neighbour sandbox whose load stayed contained", exact=True,
    ),
)  # fmt: skip


#: The start question of runs before results schema 15, whose ``startup.to_exit`` held the check
#: run the runc, docker and bwrap drivers make inside create: their headline stays as it was.
START_TO_READY = Question(
    START, "start to ready", "startup", "startup.to_ready", {}, "value",
    "cold start until the sandbox can run a command",
)  # fmt: skip
FIRST_COMMAND_SCHEMA = 15


def questions_for(schema_version: int) -> tuple[Question, ...]:
    """The headline's questions for a run written with ``schema_version``."""
    if schema_version >= FIRST_COMMAND_SCHEMA:
        return QUESTIONS
    return tuple(START_TO_READY if q.key == START else q for q in QUESTIONS)


@dataclass(frozen=True)
class Figure:
    """One headline cell: a driver's answer to one question."""

    driver: str
    question: str
    value: float
    unit: str
    better: Better
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    #: The confidence [ci_low, ci_high] really has (75% at n=3: the range), NaN without one.
    ci_confidence: float = math.nan
    ratio: float = math.nan
    ratio_low: float = math.nan
    ratio_high: float = math.nan
    verdict: Verdict = "none"
    #: What the cell shows first (a value, or a ratio to native).
    text: str = NA
    #: The interval and the other view (ratio or value), smaller.
    detail: str = ""
    #: Everything in words, for a tooltip.
    tip: str = ""
    #: A budgeted run could not bring this figure to its precision target (the interval is wider
    #: than ``--precision`` of the median); the report marks it with :data:`BELOW_TARGET`.
    below_target: bool = False
    #: The median share of the host's CPU time lost to steal while the figure was measured (NaN: none).
    host_steal: float = math.nan
    #: How many pairs of adjacent windows the ratio to native is the median of (0: the ratio of
    #: the cell's median to native's, measured apart).
    paired: int = 0
    #: The ratio's slower side ran while the host lost notably more of its CPU time to steal than
    #: the other side did (``steal_may_explain``): the host may explain it; marked :data:`HELD_BACK`.
    held_back: bool = False


@dataclass(frozen=True)
class Headline:
    drivers: tuple[str, ...]
    #: The questions this run answers, in :data:`QUESTIONS` order.
    questions: tuple[Question, ...]
    figures: Mapping[tuple[str, str], Figure]
    #: Repetitions per question (the smallest over drivers).
    n: Mapping[str, int] = field(default_factory=dict)
    #: The budgeted run's precision target (a fraction), None for a run with a fixed count.
    precision: float | None = None
    #: A row's name where it says more than the driver's (the guests' kernel flavour).
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, driver: str) -> str:
        return self.labels.get(driver, driver)

    def n_text(self, question: str) -> str:
        """The repetitions behind a question's column: "3", or "3\u201359" when drivers differ (a
        budget gives cheap, noisy figures more), "" when none."""
        ns = [f.n for f in self.figures.values() if f.question == question and f.n]
        if not ns:
            return ""
        lo, hi = min(ns), max(ns)
        return str(lo) if lo == hi else f"{lo}\u2013{hi}"

    @property
    def below_target(self) -> int:
        """How many shown figures missed the precision target."""
        return sum(f.below_target for f in self.figures.values())

    def footnote(self) -> str:
        """What :data:`BELOW_TARGET` and :data:`HELD_BACK` mean, for the marks the figures carry."""
        notes = []
        if self.below_target and self.precision is not None:
            notes.append(
                f"{BELOW_TARGET} below this run's precision target: the budget did not buy enough "
                f"repetitions to bring the median's interval within \u00b1{self.precision * 100:.3g}% "
                "(a longer --budget, or fewer drivers or workloads, would)."
            )
        if any(f.held_back for f in self.figures.values()):
            notes.append(HELD_BACK_NOTE)
        return " ".join(notes)

    def figure(self, driver: str, question: str) -> Figure | None:
        return self.figures.get((driver, question))

    @property
    def empty(self) -> bool:
        return not self.figures


def _matches(params: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(params[k] == v for k, v in where.items() if k in params)


def _pick(cells: Iterable[Cell], q: Question, driver: str) -> Cell | None:
    for c in cells:
        if c.key.driver == driver and c.key.metric == q.metric and _matches(c.params, q.where):
            return c
    return None


def _with_verdict(
    fig: Figure,
    values: tuple[float, ...],
    native: tuple[float, ...] | None,
    q: Question,
    pairs: tuple[float, ...] = (),
) -> Figure:
    """Fill in the ratio to native (from ``pairs``, sandbox/native ratios of adjacent windows,
    where there are any), the verdict and the texts."""
    unit, ratio, lo, hi = fig.unit, math.nan, math.nan, math.nan
    verdict_: Verdict = "none"
    how = ""
    if fig.driver == NATIVE:
        verdict_, ratio = "baseline", 1.0
    elif pairs:
        s = summarize(pairs)
        ratio, lo, hi = s.median, s.ci_low, s.ci_high
        verdict_ = verdict(ratio, lo, hi, fig.better, n=s.n, n_native=s.n)
        if verdict_ in ("better", "worse") and not s.ci_confidence >= PAIRED_CONFIDENCE:
            verdict_ = "unsure"  # 3 pairs: their range holds the median with 75% confidence only
        conf = "" if s.n < 2 else f", interval {plain(s.ci_confidence * 100, 3)}%"
        how = f" (median of {s.n} pairs of adjacent windows, sandbox / host loopback{conf})"
        fig = replace(fig, paired=s.n)
    elif native:
        if q.exact:
            base = sorted(native)[(len(native) - 1) // 2]
            ratio = fig.value / base if base else (1.0 if fig.value == 0 else math.inf)
        else:
            r = ratio_ci(values, native)
            ratio, lo, hi = r.value, r.ci_low, r.ci_high
        verdict_ = verdict(ratio, lo, hi, fig.better, n=fig.n, n_native=len(native), exact=q.exact)
        if verdict_ in ("better", "worse") and not q.exact:
            verdict_ = rank_checked(verdict_, values, native)
    text, detail = _texts(fig, q, ratio, lo, hi)
    tip = f"median {human(fig.value, unit)}"
    if fig.n >= 2 and not math.isnan(fig.ci_low):
        conf = "" if math.isnan(fig.ci_confidence) else f" ({plain(fig.ci_confidence * 100, 3)}%)"
        tip += f", interval [{human(fig.ci_low, unit)}, {human(fig.ci_high, unit)}]{conf}"
    tip += f", n={fig.n}"
    if not math.isnan(fig.host_steal):
        tip += f", host steal {fig.host_steal * 100:.0f}%"
    if fig.driver != NATIVE and not math.isnan(ratio):
        if not how and not (math.isnan(lo) or math.isnan(hi)):  # no interval at n=1
            how = " (95% bootstrap)"
        tip += f"; {human_ratio(ratio, lo, hi)} native{how}"
    return replace(
        fig, ratio=ratio, ratio_low=lo, ratio_high=hi, verdict=verdict_, text=text, detail=detail, tip=tip
    )


def spread(value: float, lo: float, hi: float) -> str:
    """The median's interval as a relative half-width: ``±3.1%`` (the wider side)."""
    if math.isnan(lo) or math.isnan(hi) or value == 0 or math.isnan(value) or lo == hi:
        return ""
    half = max(hi - value, value - lo) / abs(value)
    return f"\u00b1{plain(half * 100, 2)}%"


def _texts(fig: Figure, q: Question, ratio: float, lo: float, hi: float) -> tuple[str, str]:
    """What a cell shows first, and its interval with the other view, kept short."""
    single = fig.n < 2 and not q.exact
    if q.show == "ratio" and fig.driver != NATIVE and not math.isnan(ratio):
        interval = "" if single or math.isnan(lo) else f"{plain(lo)}\u2013{plain(hi)}"
        return human_ratio(ratio), interval
    parts = [] if single else [spread(fig.value, fig.ci_low, fig.ci_high)]
    if fig.driver != NATIVE and not q.exact and not math.isnan(ratio):
        parts.append(human_ratio(ratio))
    return human(fig.value, fig.unit), " ".join(p for p in parts if p)


def cell_figure(q: Question, cell: Cell, native: Cell | None, pairs: tuple[float, ...] = ()) -> Figure:
    s = summarize(cell.values)
    fig = Figure(
        driver=cell.key.driver,
        question=q.key,
        value=s.median,
        host_steal=cell.host_steal,
        unit=q.unit or cell.unit,
        better=cell.better,
        n=s.n,
        ci_low=s.ci_low,
        ci_high=s.ci_high,
        ci_confidence=s.ci_confidence,
    )
    fig = _with_verdict(fig, cell.values, native.values if native else None, q, pairs)
    return fig if native is None or q.exact else _mark_held_back(fig, native.host_steal)


#: What :data:`HELD_BACK` means, under a table whose figures carry it.
HELD_BACK_NOTE = (
    f"{HELD_BACK} the ratio's slower side ran while the host lost notably more of its CPU time to "
    f"steal (above {HIGH_STEAL:.0%}, and more than {STEAL_GAP * 100:.0f} points over the other side): the host may "
    "explain the difference rather than the sandbox."
)


def _mark_held_back(fig: Figure, native_steal: float) -> Figure:
    """Mark a ratio measured apart whose slower side ran under notably more steal than the other
    (a held-back host slows whichever side it happens to). A paired ratio's sides ran in the same
    seconds, and steal on the faster side only shrinks a gap: neither is marked."""
    if fig.driver == NATIVE or fig.paired or fig.better == "none" or math.isnan(fig.ratio) or fig.ratio == 1:
        return fig
    sandbox_slower = (fig.better == "lower") == (fig.ratio > 1)
    slower, faster = (fig.host_steal, native_steal) if sandbox_slower else (native_steal, fig.host_steal)
    if not steal_may_explain(slower, faster):
        return fig
    tip = f"; native ran at {native_steal:.0%} steal: the host may explain this ratio"
    return replace(fig, held_back=True, text=fig.text + HELD_BACK, tip=fig.tip + tip)


def paired_ratios(cells: Mapping[CellKey, Cell], cell: Cell) -> tuple[float, ...]:
    """The ratios to native that ``cell``'s driver measured in adjacent windows for its figure
    (``PAIRED_RATIOS``), same params (``Cell.pairs`` of the paired cell); () where the run paired none."""
    paired = _PAIRED_FOR.get(cell.key.metric)
    got = cells.get(replace(cell.key, metric=paired)) if paired else None
    return () if got is None else got.pairs


def _memory_figures(results: Results | None, q: Question) -> dict[str, Figure]:
    if results is None:
        return {}
    out: dict[str, Figure] = {}
    budget = _sandbox_bytes(results)
    for driver, mem in idle_overhead(results).items():
        s = summarize(mem.totals)
        fig = Figure(
            driver=driver,
            question=q.key,
            # the median, as every table states it (with an even n not the median repetition's
            # total, which the memory chart stacks so that its parts are one real observation)
            value=s.median,
            unit="bytes",
            better="lower",
            n=s.n,
            ci_low=s.ci_low,
            ci_high=s.ci_high,
            ci_confidence=s.ci_confidence,
        )
        # No native figure to compare with (native has no overhead by definition): an overhead
        # counts as worse when it is a noticeable share of what the sandbox itself was given.
        fig = _with_verdict(fig, mem.totals, None, q)
        if budget:
            share = s.median / budget
            worse = share >= MIN_EFFECT and (s.n < 2 or s.ci_low / budget >= MIN_EFFECT)
            tip = f"{fig.tip}; {plain(share * 100, 2)}% of the sandbox's {human(budget, 'bytes')}"
            fig = replace(fig, verdict="worse" if worse else "same", tip=tip)
        out[driver] = fig
    return out


def _sandbox_bytes(results: Results) -> float | None:
    """The memory each sandbox was given (``run.config.memory_mib``), in bytes."""
    config = results.run.get("config") or {}
    mib = config.get("memory_mib") if isinstance(config, Mapping) else None
    return float(mib) * 2**20 if isinstance(mib, int | float) and mib > 0 else None


def _containment_figures(cells: Mapping[CellKey, Cell], q: Question) -> dict[str, Figure]:
    prefix, suffix = q.metric.split("*")
    flags: dict[str, list[bool]] = {}
    reps: dict[str, int] = {}
    for key, cell in cells.items():
        if (
            key.workload == q.workload
            and key.metric.startswith(prefix)
            and key.metric.endswith(suffix)
            and _matches(cell.params, q.where)
        ):
            ordered = sorted(cell.values)
            # a stressor counts as contained when it was in most repetitions
            flags.setdefault(key.driver, []).append(ordered[(len(ordered) - 1) // 2] >= 0.5)
            reps[key.driver] = min(reps.get(key.driver, len(ordered)), len(ordered))
    native = flags.get(NATIVE)
    out: dict[str, Figure] = {}
    for driver, got in flags.items():
        fig = Figure(driver, q.key, float(sum(got)), "stressors", "higher", n=reps[driver])
        base = None if native is None else (float(sum(native)),)
        fig = _with_verdict(fig, (fig.value,), base, q)
        out[driver] = replace(fig, text=f"{sum(got)}/{len(got)}", detail="contained")
    return out


def _mark_missed(fig: Figure, cell: Cell, missed: set[tuple[str, str, str]]) -> Figure:
    params = {k: v for k, v in cell.params.items() if k != "ab"}
    if (fig.driver, cell.key.metric, variant_of(params)) not in missed:
        return fig
    return replace(
        fig,
        below_target=True,
        text=fig.text + BELOW_TARGET,
        tip=fig.tip + "; below the run's precision target (too few repetitions for the budget)",
    )


def build_headline(
    results: Results | None = None, *, cells: Mapping[CellKey, Cell] | None = None
) -> Headline:
    """The headline of a run (from ``results``, or from already grouped ``cells``)."""
    if cells is None:
        cells = group_cells(results) if results is not None else {}
    figures: dict[tuple[str, str], Figure] = {}
    precision, missed = missed_targets(results.run if results is not None else {})
    drivers = {c.key.driver for c in cells.values()}
    questions: list[Question] = []
    for q in questions_for(results.schema_version if results is not None else SCHEMA_VERSION):
        if q.key == MEMORY:
            totals = {
                c.key.driver: c
                for c in cells.values()
                if c.key.workload == q.workload and c.key.metric == q.metric
            }
            by_driver = {
                d: _mark_missed(f, totals[d], missed) if d in totals else f
                for d, f in _memory_figures(results, q).items()
            }
            ran = {c.key.driver for c in cells.values() if c.key.workload == q.workload}
            for d in ran - set(by_driver):
                # native: no overhead by definition; others (bwrap): no host-side figure to report
                is_native = d == NATIVE
                by_driver[d] = Figure(
                    d, q.key, 0.0 if is_native else math.nan, "bytes", "lower", n=0,
                    verdict="baseline" if is_native else "none",
                    text="0" if is_native else NA,
                    detail="native" if is_native else "not measured",
                    tip="the native baseline has no overhead" if is_native
                    else "this driver reports no host-side memory figure (no cgroup of its own)",
                )  # fmt: skip
        elif q.key == CONTAINMENT:
            by_driver = _containment_figures(cells, q)
        else:
            relevant = [c for c in cells.values() if c.key.workload == q.workload]
            native = _pick(relevant, q, NATIVE)
            by_driver = {}
            picked: dict[str, str] = {}
            for d in sorted({c.key.driver for c in relevant}, key=driver_order):
                cell = _pick(relevant, q, d)
                if cell is not None:
                    fig = cell_figure(q, cell, native, paired_ratios(cells, cell))
                    by_driver[d] = _mark_missed(fig, cell, missed)
                    picked[d] = cell.key.variant
            if q.key == LEAK:
                by_driver = leak_figures(by_driver, picked, results, NATIVE)
        if by_driver:
            paired = any(f.paired for f in by_driver.values())
            questions.append(replace(q, params=f"{q.params}; {PAIRED_WORDS}") if paired else q)
            for d, fig in by_driver.items():
                figures[(d, q.key)] = fig
                drivers.add(d)
    n = {
        q.key: min((f.n for f in figures.values() if f.question == q.key and f.n), default=0)
        for q in questions
    }
    return Headline(
        drivers=tuple(sorted(drivers, key=driver_order)),
        questions=tuple(questions),
        figures=figures,
        n=n,
        precision=precision,
        labels={d: label for d, label in driver_labels(results).items() if d in drivers},
    )


def ratio_words(ratio: float) -> str:
    """``470x`` / ``1.15x`` for a sentence (multiplication sign, 2-3 significant digits)."""
    return f"{plain(ratio, 3 if ratio < 100 else 2)}{TIMES}" if math.isfinite(ratio) else NA
