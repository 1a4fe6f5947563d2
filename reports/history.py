"""A view across runs (asv's graphs): the headline figures of several runs, in time order, as trends
with the median and its interval per run (the exact order-statistic one of :mod:`isobench.stats`), so
a CI job that keeps its results shows drift.

Each run is one point per driver and figure; runs are spaced evenly (labelled with their start time)
so a burst of runs stays readable. A point whose interval does not overlap the previous run's is
ringed: a change beyond the noise of either run (no claim about its cause).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from isobench.errors import ResultsError
from isobench.results import JOURNAL, RESULTS, Results, atomic_write_text, load_results, redefinitions
from isobench.stats import summarize

from .ab import ab_labels
from .ab_view import first_configuration_as_run
from .cells import driver_order, group_cells
from .confounds import confounds
from .files import fresh_plots_dir
from .html import page_head, png_figure
from .leak_rank import SCORE, leak_intervals
from .units import plural

log = logging.getLogger(__name__)

__all__ = [
    "TRENDS",
    "HistoryPaths",
    "Point",
    "Step",
    "Trend",
    "detect_step",
    "discover",
    "render_history",
    "trend_points",
]


@dataclass(frozen=True)
class Trend:
    """One headline figure followed over runs; ``params`` must be a subset of a cell's params."""

    group: str
    title: str
    workload: str
    metric: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, params: Mapping[str, Any]) -> bool:
        return all(params.get(k) == v for k, v in self.params.items())


#: The questions of the report's headline, one figure each, grouped into one PNG per group.
TRENDS: tuple[Trend, ...] = (
    Trend("startup", "start to ready", "startup", "startup.to_ready"),
    Trend("memory", "idle memory overhead on the host", "idle-memory", "idle-memory.host_view"),
    Trend("cpu", "CPU, 1 thread", "cpu", "cpu.events_per_second", {"variant": "single"}),
    Trend("cpu", "CPU, all vCPUs", "cpu", "cpu.events_per_second", {"variant": "all"}),
    Trend(
        "memory-bandwidth",
        "memory read bandwidth, 1 thread",
        "memory-bandwidth",
        "memory-bandwidth.read.bandwidth",
        {"variant": "single"},
    ),
    Trend(
        "disk",
        "random-read IOPS, root, QD1",
        "disk",
        "disk.rand_read.iops",
        {"storage": "root", "iodepth": 1},
    ),
    Trend(
        "disk",
        "random-read IOPS, volume, QD1",
        "disk",
        "disk.rand_read.iops",
        {"storage": "volume", "iodepth": 1},
    ),
    Trend("network", "TCP throughput", "network", "network.tcp_throughput"),
    Trend("network", "TCP round trip, p50", "network", "network.tcp_rtt.p50"),
    Trend("syscall", "read+write syscall pair", "syscall", "syscall.read_write.per_call"),
    Trend("leakage", "leak score", "leakage", "leakage.score"),
)


@dataclass(frozen=True)
class Point:
    run: int  # index into the runs, in time order
    driver: str
    variant: str
    n: int
    median: float
    ci_low: float
    ci_high: float
    unit: str
    better: str
    #: The confidence the interval really has (NaN at n = 1; the range below n = 6).
    ci_confidence: float = math.nan
    #: The interval holds at n = 1 too: the leak score's range over its open probes
    #: (:mod:`.leak_rank`), not a median's interval.
    evidence_interval: bool = False


@dataclass(frozen=True)
class HistoryPaths:
    html: Path
    plots: tuple[Path, ...]
    runs: tuple[str, ...]
    #: Runs found in a folder that could not be read, with the reason.
    skipped: tuple[str, ...] = ()
    #: What changed beyond the noise in the latest run, and persistent steps, as sentences.
    findings: tuple[str, ...] = ()
    #: What is said beside (or instead of) the findings: nothing changed, or what could not be judged.
    verdict: str = ""
    #: What else differs between the latest run and the one before (settings, host, accelerator:
    #: :func:`isobench.reports.confounds.confounds`), which may explain a change.
    besides: tuple[str, ...] = ()


def discover(paths: Iterable[Path]) -> list[tuple[Path, bool]]:
    """Run directories among ``paths``, each with whether it was named itself: a run directory, or
    a directory holding run directories (``results/``), so a CI job can point at the folder it
    keeps."""
    found: list[tuple[Path, bool]] = []
    for p in paths:
        if p.is_file() or (p / RESULTS).exists() or (p / JOURNAL).exists():
            found.append((p, True))
        elif p.is_dir():
            runs = sorted(d for d in p.iterdir() if (d / RESULTS).exists() or (d / JOURNAL).exists())
            if not runs:
                raise ResultsError(
                    f"{p} holds no isobench results (no {RESULTS} in it or its subdirectories)"
                )
            found += [(r, False) for r in runs]
        else:
            raise ResultsError(f"{p} does not exist")
    return found


def load_runs(paths: Iterable[Path], skipped: list[str] | None = None) -> list[Results]:
    """The runs in time order (by start), each run once; an A/B run stands for its first
    configuration (the one its headline shows), so its figures continue the plain runs' lines. A
    run found inside a folder that cannot be read (a newer schema, a corrupt file) is skipped and
    named in ``skipped``, so one broken run does not hide the others; a run directory named itself
    must load."""
    runs: dict[str, Results] = {}
    for p, named in discover(paths):
        try:
            r = load_results(p)
        except ResultsError as err:
            if named or skipped is None:
                raise
            log.warning("skipping %s: %s", p, err)
            skipped.append(f"{p}: {err}")
            continue
        if r.run_id in runs:
            log.warning("run %s given twice (%s); keeping the first", r.run_id, p)
            continue
        runs[r.run_id] = first_configuration_as_run(r)
    return sorted(runs.values(), key=_start)


def _start(r: Results) -> tuple[float, str]:
    started = r.run.get("started")
    return (float(started) if isinstance(started, int | float) else math.inf, r.run_id)


@dataclass(frozen=True)
class Step:
    """A level shift in a series of run medians: from run ``at`` on, the level is ``ratio`` times
    the one before."""

    at: int
    before: float
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else math.inf


#: A step is named only when it is at least this large and the split explains most of the spread.
STEP_MIN_CHANGE = 0.05
STEP_MIN_GAIN = 0.5


def _l1(values: Sequence[float]) -> tuple[float, float]:
    """The median of ``values`` and their summed absolute deviation from it."""
    m = statistics.median(values)
    return m, sum(abs(v - m) for v in values)


def detect_step(medians: Sequence[float]) -> Step | None:
    """The one split of the series into two constant levels that best fits it (asv's step_detect
    idea, reduced to a single step, with an L1 fit so one outlier does not make a step). Named only
    when both sides have two runs or more, the levels differ by STEP_MIN_CHANGE, and the split
    removes STEP_MIN_GAIN of the deviation from a single level."""
    n = len(medians)
    if n < 4:
        return None
    _, flat = _l1(medians)
    best: tuple[float, int, float, float] | None = None
    for k in range(2, n - 1):
        m1, c1 = _l1(medians[:k])
        m2, c2 = _l1(medians[k:])
        if best is None or c1 + c2 < best[0]:
            best = (c1 + c2, k, m1, m2)
    if best is None:
        return None
    cost, k, m1, m2 = best
    if m1 == 0 or abs(m2 / m1 - 1) < STEP_MIN_CHANGE or cost > (1 - STEP_MIN_GAIN) * flat:
        return None
    return Step(at=k, before=m1, after=m2)


def trend_points(runs: Sequence[Results], trend: Trend) -> list[Point]:
    points: list[Point] = []
    for i, r in enumerate(runs):
        samples = [s for s in r.measured() if s.workload == trend.workload and s.metric == trend.metric]
        leak = leak_intervals(r) if trend.metric == SCORE else {}
        for key, cell in group_cells(samples).items():
            if not trend.matches(cell.params) or not cell.values:
                continue
            s = summarize(cell.values)
            iv = leak.get((key.driver, key.variant))
            if iv is not None and iv.known:
                points.append(
                    Point(i, key.driver, key.variant, s.n, s.median, iv.low, iv.high, cell.unit,
                          str(cell.better), evidence_interval=True)
                )  # fmt: skip
                continue
            points.append(
                Point(
                    i,
                    key.driver,
                    key.variant,
                    s.n,
                    s.median,
                    s.ci_low,
                    s.ci_high,
                    cell.unit,
                    str(cell.better),
                    s.ci_confidence,
                )
            )
    return points


def _besides(before: Results, latest: Results) -> tuple[str, ...]:
    """What else differs between the latest run and the one before, which may explain a change:
    settings, host, accelerator (as ``isobench compare`` names them), and a figure both measured
    whose definition changed between their results schemas."""
    both = {s.metric for s in latest.measured()} & {s.metric for s in before.measured()}
    return (
        *confounds([before], [latest], "the latest run and the one before"),
        *redefinitions((before.schema_version, latest.schema_version), sorted(both)),
    )


def _status(r: Results) -> str:
    """A run's status, and for an A/B run which configuration its points are."""
    labels = ab_labels(r)
    shown = f" (A/B run: {labels[0]} shown, of {', '.join(labels)})" if len(labels) > 1 else ""
    return f"{r.run.get('status', '?')}{shown}"


def _when(r: Results) -> str:
    started = r.run.get("started")
    if isinstance(started, int | float) and math.isfinite(started):
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "start unknown"


def render_history(paths: Iterable[Path], out_dir: Path) -> HistoryPaths:
    """Write history.html and plots/history-<group>.png for the runs under ``paths``."""
    from .plots.trends import draw_group  # matplotlib only when drawing

    skipped: list[str] = []
    runs = load_runs(paths, skipped)
    if not runs:
        raise ResultsError("no runs to draw")
    plots_dir = fresh_plots_dir(out_dir, "history-*.png", "history")
    labels = [f"{_when(r)[5:16]}\n{r.run_id[-6:]}" for r in runs]
    figures: list[tuple[str, Path, str]] = []
    findings: list[str] = []
    judged = unjudged = 0
    for group in dict.fromkeys(t.group for t in TRENDS):
        trends = [(t, trend_points(runs, t)) for t in TRENDS if t.group == group]
        trends = [(t, pts) for t, pts in trends if pts]
        if not trends:
            continue
        path = plots_dir / f"history-{group}.png"
        drawn = draw_group(group, trends, labels, path)
        figures.append((group, path, drawn.caption))
        findings += drawn.findings
        judged += drawn.judged
        unjudged += drawn.unjudged
    html = out_dir / "history.html"
    said = verdict(len(runs), len(findings), judged, unjudged)
    besides = _besides(runs[-2], runs[-1]) if len(runs) > 1 else ()
    atomic_write_text(html, _html(runs, figures, skipped, findings, said, besides))
    log.info("history written to %s", html)
    return HistoryPaths(
        html=html,
        plots=tuple(p for _, p, _ in figures),
        runs=tuple(r.run_id for r in runs),
        skipped=tuple(skipped),
        findings=tuple(findings),
        verdict=said,
        besides=besides,
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f0f0f0}figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
"""


def verdict(n_runs: int, changes: int, judged: int, unjudged: int) -> str:
    """What the page and the terminal say beside the latest run's ``changes`` (beyond the noise, or
    steps), or instead of them: "nothing changed" only where its figures could be judged at all."""
    unsure = (
        f"{plural(unjudged, 'more figure')} could not be judged: one of the two runs measured "
        f"{'it' if unjudged == 1 else 'each'} once."
        if unjudged
        else ""
    )
    if n_runs < 2:
        return "One run only: nothing to compare it with yet."
    if changes:
        return unsure
    if judged:
        quiet = (
            f"Nothing beyond the noise: none of the {plural(judged, 'headline figure')} of the latest "
            "run that could be judged has an interval disjoint from the run before's, and no step."
        )
        return f"{quiet} {unsure}".strip()
    if unjudged:
        return (
            "Cannot tell yet: no headline figure of the latest run has an interval on both sides "
            "(one of the two runs measured each once), and no step."
        )
    return (
        "Cannot tell yet: no headline figure of the latest run was measured in a run before it "
        "(same driver and parameters), and no step."
    )


def _changes(findings: Sequence[str], said: str, besides: Sequence[str] = ()) -> str:
    """The page's headline, what a CI reader wants first: what moved in the latest run, and any step;
    then what else differs from the run before, which may explain it."""
    items = "".join(f"<li>{escape(f)}</li>" for f in findings)
    body = (f"<ul>{items}</ul>" if items else "") + (f"<p>{escape(said)}</p>" if said else "")
    body += "".join(f'<p class="besides">Also: {escape(b)}.</p>' for b in besides)
    return f'<section id="headline"><h2>What changed</h2>{body}</section>'


def _html(
    runs: Sequence[Results],
    figures: Sequence[tuple[str, Path, str]],
    skipped: Sequence[str],
    findings: Sequence[str],
    said: str,
    besides: Sequence[str] = (),
) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(v))}</td>"
            for v in (
                i + 1,
                r.run_id,
                _when(r),
                _status(r),
                (r.run.get("host") or {}).get("kernel", "?")
                if isinstance(r.run.get("host"), Mapping)
                else "?",
                sum(1 for _ in r.measured()),
                ", ".join(sorted({s.driver for s in r.samples}, key=driver_order)),
            )
        )
        + "</tr>"
        for i, r in enumerate(runs)
    )
    out = [
        *page_head(f"isobench history — {len(runs)} runs", _CSS),
        f"<h1>isobench history: {len(runs)} runs</h1>",
        _changes(findings, said, besides),
        "<p>The headline figures of each run in time order: per driver the median (line) and its "
        "interval (band: the exact order-statistic interval, at least 95% from n = 6, the range below; "
        "for the leak score the range its open probes allow, which holds at n = 1 too). "
        "A ringed point's interval does not overlap the previous run's: a "
        "change beyond the noise of either run.</p>",
        '<table id="runs"><thead><tr><th>#</th><th>run</th><th>started</th><th>status</th><th>kernel</th>'
        f"<th>samples</th><th>drivers</th></tr></thead><tbody>{rows}</tbody></table>",
    ]
    if skipped:
        items = "".join(f"<li>{escape(s)}</li>" for s in skipped)
        out.append(f'<p id="skipped">Skipped, could not be read:</p><ul>{items}</ul>')
    if not figures:
        out.append('<p id="no-data">None of the headline figures was measured in these runs.</p>')
    for group, path, caption in figures:
        out.append(png_figure(path, f"{group} over runs", caption, figure_id=f"history-{group}"))
    out.append("</body></html>")
    return "\n".join(out) + "\n"
