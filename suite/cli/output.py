"""What the CLI prints: the headline, a comparison, the run's progress bar and the budget's story.
The consoles live here; rich lives only in this package."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from isobench.budget import mmss
from isobench.hostsys.probe import HostProbe
from isobench.model import Sample
from isobench.reports import overview, render
from isobench.reports.ab import ab_labels, compare_ab
from isobench.reports.budget import budget_digest
from isobench.reports.compare import Comparison
from isobench.reports.fleet import Fleet
from isobench.results import Results
from isobench.runner import Cell
from isobench.runner import Progress as RunProgress
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = [
    "RichProgress",
    "console",
    "out",
    "print_comparison",
    "print_fleet",
    "print_summary",
    "progress_bar",
    "render_report",
    "took_text",
    "warn_of_other_runs",
]


def _console(*, stderr: bool) -> Console:
    """A console as wide as its terminal; in a log or a pipe (CI, ``| tee``, ``2> file``) tables
    get 200 columns, not rich's 80-column fallback, which broke a finished cell's line and the
    headline table in two, and text is never wrapped: a log line is the line printed (the run's
    banner, which names 13 workloads, broke at column 200)."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(stderr=stderr, width=None if tty else 200, soft_wrap=not tty)


console = _console(stderr=True)
out = _console(stderr=False)


def progress_bar() -> Progress:
    """The bar a run shows: the cell, the count, the time, and a budgeted run's time left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[budget]}"),
        console=console,
        transient=False,
    )


def took_text(seconds: float) -> str:
    """How long a cell took, for its log line: "4.4 s", "93 ms", "9.3 ms" (a start-up cell took
    "0.0 s" in seconds)."""
    if seconds >= 1:
        return f"{seconds:.1f} s"
    ms = seconds * 1e3
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


class RichProgress(RunProgress):
    """The bar on a terminal; where stderr is not one (CI logs, ``2> file``) rich draws the bar
    only once at the end, so a long run would be silent: there each finished cell is one line."""

    def __init__(self, progress: Progress) -> None:
        self._p = progress
        self._task: Any = None
        self._plain = not progress.console.is_terminal
        self._cell_started = 0.0
        self._budget_left = ""

    def start(self, total: int) -> None:
        self._task = self._p.add_task("starting", total=total, budget="")

    def extend(self, more: int) -> None:
        total = self._p.tasks[0].total or 0
        self._p.update(self._task, total=total + more)

    def cell_skipped(self, cell: Cell) -> None:
        self.extend(-1)

    def first_pass_done(self, spent: float, left: float) -> None:
        rest = f"{mmss(left)} left for extra rounds" if round(left) > 0 else "no time left for extra rounds"
        self._p.console.print(
            f"first pass done in {mmss(spent)} (every cell at its minimum n); {rest}", highlight=False
        )

    def cell_started(self, cell: Cell, index: int, budget_left: float | None = None) -> None:
        if budget_left is None:
            left = ""
        elif budget_left > 0:
            left = f"budget left {mmss(budget_left)}"
        else:  # only the default budget's first pass starts cells past the budget (its grace)
            left = f"{mmss(-budget_left)} past the budget, finishing the first pass"
        self._p.update(self._task, description=escape(cell.label), budget=left)
        self._cell_started = time.monotonic()
        self._budget_left = left

    def cell_finished(self, cell: Cell, samples: Sequence[Sample]) -> None:
        for s in samples:
            if s.failed:
                self._p.console.print(
                    f"[red]failed[/] {escape(cell.label)}: {escape(s.error or '')}", highlight=False
                )
        self._p.advance(self._task)
        if self._plain:
            task = self._p.tasks[0]
            took = time.monotonic() - self._cell_started
            left = f", {self._budget_left}" if self._budget_left else ""
            self._p.console.print(
                f"[{task.completed:.0f}/{task.total or 0:.0f}] {escape(cell.label)} {took_text(took)}{left}",
                highlight=False,
            )


_VERDICT_STYLE = {"better": "green", "worse": "red", "same": "", "unsure": "", "baseline": "dim", "none": ""}


def print_summary(results: Results, *, budget: bool = False) -> None:
    """The headline (questions as rows so six drivers fit a terminal), the findings, and one line
    per kind of warning; everything else is in the report. With ``budget``, a budgeted run's end:
    how the budget went (``budget_digest``), which then stands in for the precision warning: both
    begin with how many figures met the target and how long the first pass took, and a terminal
    said it twice."""
    ov = overview(results)
    h = ov.headline
    if h.empty:
        # a run of only density or limits has figures but no headline: the findings say where
        if next(results.measured(), None) is None:
            out.print("[yellow]no successful measurements[/]")
    else:
        table = Table(
            title=f"isobench run {escape(results.run_id)}: what isolation costs",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        table.add_column("question", no_wrap=True)
        table.add_column("n", justify="right", style="dim")
        for d in h.drivers:
            table.add_column(escape(h.label(d)), justify="right")
        for q in h.questions:
            row = [escape(q.title), h.n_text(q.key)]
            for d in h.drivers:
                f = h.figure(d, q.key)
                if f is None:
                    row.append("[dim]-[/]")
                    continue
                style = _VERDICT_STYLE.get(f.verdict, "")
                text = escape(f.text)
                row.append(f"[{style}]{text}[/]" if style else text)
            table.add_row(*row)
        out.print(table)
        out.print(
            "[green]green[/]: better than native, [red]red[/]: worse (the 95% interval of the ratio "
            "excludes 1 and the exact rank test agrees, p < 0.05)"
        )
        if h.footnote():
            out.print(escape(h.footnote()), highlight=False)
    if ov.fleet is not None:
        print_fleet(ov.fleet)
    for line in ov.findings:
        out.print(f"- {escape(line)}", highlight=False)
    digest = budget_digest(results.run) if budget else []
    for g in ov.warnings:
        if not (digest and g.kind == "precision"):
            out.print(f"[yellow]warning:[/] {escape(g.line)}", highlight=False)
    # An A/B run's answer: what each configuration changed against the first, paired by round.
    labels = ab_labels(results)
    for label in labels[1:]:
        print_comparison(compare_ab(results, labels[0], label), f"A/B: {label} against {labels[0]}")
    if len(labels) > 1:
        out.print(
            f"the headline above shows {escape(labels[0])}; gate on the change with `isobench compare "
            f"{escape(str(results.path or 'RUN'))} --ab {escape(labels[0])},{escape(labels[1])} --fail-on RULES`",
            highlight=False,
            soft_wrap=True,
        )
    for line in digest:
        out.print(escape(line), highlight=False)


#: More hosts than this do not fit a terminal side by side: the report has them all.
FLEET_COLUMNS = 6


def print_fleet(fleet: Fleet) -> None:
    """The same figure on every host (up to FLEET_COLUMNS of them), each against its own native."""
    hosts = fleet.hosts[:FLEET_COLUMNS]
    table = Table(title="the fleet: the same figure on every host", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("driver", no_wrap=True)
    table.add_column("question", no_wrap=True)
    for h in hosts:
        table.add_column(escape(h), justify="right")
    for driver, question, figs in fleet.rows():
        cells = []
        for f in figs[: len(hosts)]:
            style = _VERDICT_STYLE.get(f.verdict, "") if f is not None else "dim"
            text = escape(f.text) if f is not None else "-"
            cells.append(f"[{style}]{text}[/]" if style else text)
        table.add_row(escape(driver), escape(question), *cells)
    out.print(table)
    more = len(fleet.hosts) - len(hosts)
    tail = f"; {more} more host(s) in the report's fleet view" if more else ""
    out.print(f"headline above: host {escape(fleet.main)}; each ratio is to its own host's native{tail}")


def warn_of_other_runs() -> None:
    """Another isobench run live on this host disturbs this one's figures: say so before measuring."""
    if others := HostProbe().other_runs():
        console.print(
            f"[bold yellow]warning:[/] another isobench run is measuring on this host "
            f"({', '.join(others)}): the two runs disturb each other's figures; this run's report "
            "will name the cells it met",
            highlight=False,
        )


def render_report(results: Results, out_dir: Path) -> None:
    paths = render(results, out_dir)
    out.print(f"report: {paths.html}")


def print_comparison(cmp: Comparison, title: str, *, show_all: bool = False) -> None:
    """The changed (or, with show_all, every) figure as a table, then one line of counts, one line
    per rule and the gate's decision: short enough for a CI log whatever the matrix size."""
    rows = cmp.rows(show_all=show_all)
    if rows:
        t = Table(title=title)
        for col in (
            "metric",
            "baseline",
            "current",
            "change [95% CI]",
            "p (Holm)",
            "detectable",
            "verdict",
            "gate",
        ):
            t.add_column(col)
        style = {"faster": "green", "slower": "red"}
        for row in rows:
            verdict = row["verdict"]
            colour = style.get(verdict)
            t.add_row(
                # Sample names and params are data: "[hardening=false]" must not be read as markup.
                escape(row["metric"]),
                escape(row["baseline"]),
                escape(row["current"]),
                escape(row["change"]),
                escape(row["p"]),
                escape(row["detectable"]),
                f"[{colour}]{verdict}[/]" if colour else verdict,
                f"[red]{row['failed']}[/]",
            )
        out.print(t)
    else:
        out.print(f"{escape(title)}: {cmp.quiet()}", highlight=False)
    out.print(escape(cmp.counts()), highlight=False)
    for line in cmp.rule_summaries():
        out.print(escape(line), highlight=False)
    for w in cmp.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    for f in cmp.failures():
        click.echo(f"isobench: gate: {f}", err=True)
    if cmp.rules:
        verdict = {0: "pass", 1: "FAIL", 3: "cannot judge"}[cmp.exit_code]
        out.print(f"gate: {verdict} (exit {cmp.exit_code}, family-wise alpha {cmp.alpha:g})", highlight=False)
