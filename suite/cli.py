"""The ``isobench`` command line. The only place that talks to the terminal (rich lives here)."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from isobench import __version__, launch
from isobench.budget import budget_summary, mmss
from isobench.config import SIZES, RunConfig, load_config, parse_duration, parse_precision
from isobench.drivers.base import all_drivers, check_driver_options
from isobench.errors import IsobenchError, UsageError
from isobench.images.cli import image_group
from isobench.model import Sample
from isobench.reports import overview, render
from isobench.reports.ab import compare_ab
from isobench.reports.compare import Comparison, parse_rules
from isobench.reports.compare import compare as compare_runs
from isobench.results import Results, finalize, load_results
from isobench.runner import Cell, new_run_id, run_matrix
from isobench.runner import Progress as RunProgress
from isobench.runstate import RunLock
from isobench.workloads.base import DEFAULT_WORKLOADS, Workload, all_workloads, check_params
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

log = logging.getLogger("isobench")
console = Console(stderr=True)
# Piped output (CI logs, `| tee`) gets a wide table rather than rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 200)


def _fail(err: IsobenchError) -> NoReturn:
    # Plain echo, never wrapped: the error is one line a user can grep and paste.
    click.echo(f"isobench: error: {err}", err=True)
    sys.exit(err.exit_code)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM gets the same orderly teardown as Ctrl-C.
    raise KeyboardInterrupt("SIGTERM")


class IsobenchGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IsobenchError as err:
            _fail(err)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; everything this run created was torn down[/]")
            sys.exit(130)


@click.group(cls=IsobenchGroup)
@click.version_option(__version__, prog_name="isobench")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Measure what isolation costs: native vs isobench containers vs libvirt guests."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )
    signal.signal(signal.SIGTERM, _on_sigterm)


class _RichProgress(RunProgress):
    def __init__(self, progress: Progress) -> None:
        self._p = progress
        self._task: Any = None

    def start(self, total: int) -> None:
        self._task = self._p.add_task("starting", total=total, budget="")

    def extend(self, more: int) -> None:
        total = self._p.tasks[0].total or 0
        self._p.update(self._task, total=total + more)

    def cell_skipped(self, cell: Cell) -> None:
        self.extend(-1)

    def cell_started(self, cell: Cell, index: int, budget_left: float | None = None) -> None:
        left = "" if budget_left is None else f"budget left {mmss(budget_left)}"
        self._p.update(self._task, description=escape(cell.label), budget=left)

    def cell_finished(self, cell: Cell, samples: Sequence[Sample]) -> None:
        for s in samples:
            if s.failed:
                self._p.console.print(
                    f"[red]failed[/] {escape(cell.label)}: {escape(s.error or '')}", highlight=False
                )
        self._p.advance(self._task)


_VERDICT_STYLE = {"better": "green", "worse": "red", "same": "", "unsure": "", "baseline": "dim", "none": ""}


def print_summary(results: Results) -> None:
    """The headline (questions as rows so six drivers fit a terminal), the findings, and one line
    per kind of warning; everything else is in the report."""
    ov = overview(results)
    h = ov.headline
    if h.empty:
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
            table.add_column(escape(d), justify="right")
        for q in h.questions:
            row = [escape(q.title), str(h.n.get(q.key) or "")]
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
            "[green]green[/]: better than native, [red]red[/]: worse (the 95% interval of the ratio excludes 1)"
        )
        if h.footnote():
            out.print(escape(h.footnote()), highlight=False)
    for line in ov.findings:
        out.print(f"- {escape(line)}", highlight=False)
    for g in ov.warnings:
        out.print(f"[yellow]warning:[/] {escape(g.line)}", highlight=False)


@main.command()
@click.option("--drivers", help="Comma-separated drivers (default: every driver available here).")
@click.option("--workloads", help="Comma-separated workloads (default: the default set).")
@click.option(
    "--budget",
    help="Wall time the matrix may take, e.g. 15m or 900s; repetitions are then decided while "
    "running (the default run is budgeted: 15m).",
)
@click.option(
    "--precision", help="Budgeted runs: target 95% CI half-width relative to the median (default 5%)."
)
@click.option("--repetitions", "-n", type=int, help="A fixed number of repetitions per cell (no budget).")
@click.option("--warmups", type=int, help="Unrecorded warm-up rounds before measuring.")
@click.option("--timeout", type=float, help="Seconds one cell may take.")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="Results directory (default ./results)."
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="Images and run state (/var/lib/isobench)."
)
@click.option("--quick", is_flag=True, help="A fast smoke matrix: small sizes, few repetitions.")
@click.option(
    "--sizes",
    type=click.Choice(SIZES),
    help="Workload sizes: auto (quick in a budgeted run, full with -n), full or quick.",
)
@click.option("--seed", type=int, help="Seed of the run order (default: random; recorded).")
@click.option(
    "--ab",
    multiple=True,
    metavar="[LABEL=]FILE",
    help="A/B in one run: the matrix under two configurations (TOML with [sandbox], [drivers.X], "
    "[workloads.X]), interleaved round by round: `--ab A.toml B.toml` or `--ab A=a.toml --ab B=b.toml`.",
)
@click.argument("more_ab", nargs=-1, type=click.Path(path_type=Path), metavar="")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
def run(
    drivers: str | None,
    workloads: str | None,
    budget: str | None,
    precision: str | None,
    repetitions: int | None,
    warmups: int | None,
    timeout: float | None,
    output: Path | None,
    config_path: Path | None,
    state_dir: Path | None,
    quick: bool,
    sizes: str | None,
    seed: int | None,
    ab: tuple[str, ...],
    more_ab: tuple[Path, ...],
    no_report: bool,
) -> None:
    """Run the matrix: drivers x workloads, repeated in interleaved rounds inside a time budget
    (or a fixed number of times with -n)."""
    if more_ab and not ab:
        raise UsageError(f"unexpected argument {more_ab[0]}; A/B files follow --ab")
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("drivers", launch.split_names(drivers)),
            ("workloads", launch.split_names(workloads)),
            ("budget", parse_duration(budget) if budget is not None else None),
            ("precision", parse_precision(precision) if precision is not None else None),
            ("repetitions", repetitions),
            ("warmups", warmups),
            ("timeout", timeout),
            ("output", output),
            ("state_dir", state_dir),
            ("sizes", sizes),
            ("seed", seed),
        )
        if value is not None
    }
    config = launch.resolve(load_config(config_path), overrides, quick=quick)
    launch.check_cpuset(config)
    variants = launch.load_ab(launch.parse_ab([*ab, *map(str, more_ab)]), config) if ab else {}

    run_id = new_run_id()
    chosen_workloads = launch.select_workloads(config)
    check_params(config.workload_params, quick=config.quick)
    check_driver_options(config.driver_options)
    launch.check_output_dir(config.output)
    # The run owns its state before any driver probes the host: a probe (a microvm or KVM test
    # boot) works under the run's work dir, which the lock's owner removes on every path.
    with RunLock.acquire(config.state_dir, run_id) as lock:
        _run_locked(config, run_id, chosen_workloads, variants, lock, no_report)


def _run_locked(
    config: RunConfig,
    run_id: str,
    chosen_workloads: dict[str, Workload],
    variants: dict[str, RunConfig],
    lock: RunLock,
    no_report: bool,
) -> None:
    chosen, skipped = launch.select_drivers(config, run_id)
    for name, avail in skipped.items():
        console.print(f"[yellow]skipping driver {name}:[/] {escape(avail.reason)}", highlight=False)
    for name, driver in chosen.items():
        meta = driver.metadata()
        if meta.get("accel") == "tcg":
            console.print(
                f"[bold yellow]warning:[/] driver {name} uses TCG (software emulation): "
                f"{escape(str(meta.get('accel_reason', 'KVM is not usable here')))}; guest figures are not KVM figures",
                highlight=False,
            )

    run_dir = config.output / run_id
    run_dir.mkdir()
    info = launch.run_info(config, run_id, sys.argv, list(chosen), chosen_workloads, skipped)
    plan = launch.describe_plan(config, list(chosen), chosen_workloads, list(variants))
    console.print(f"run {run_id}: " + "\n".join(plan), highlight=False)
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[budget]}"),
        console=console,
        transient=False,
    ) as bar:
        results, teardown_errors = run_matrix(
            config,
            chosen,
            chosen_workloads,
            run_id=run_id,
            run_dir=run_dir,
            run_info=info,
            progress=_RichProgress(bar),
            variants=variants or None,
            lock=lock,
        )
    print_summary(results)
    _print_budget(results)
    out.print(f"results: {run_dir}  (wall time {time.monotonic() - started:.1f} s)")
    if not no_report:
        _render(results, run_dir)
    if teardown_errors:
        console.print("[red]some sandboxes could not be torn down; run `isobench gc`[/]")
    if results.failures() or teardown_errors:
        sys.exit(1)


def _print_budget(results: Results) -> None:
    for line in budget_summary(results.run):
        out.print(escape(line), highlight=False)


def _render(results: Results, out_dir: Path) -> None:
    paths = render(results, out_dir)
    out.print(f"report: {paths.html}")


@main.command()
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="Where to write (default: RESULTS_DIR)."
)
def report(results_dir: Path, output: Path | None) -> None:
    """Render the HTML report, plots and summary.md of a results directory."""
    results = load_results(results_dir)
    target = output or (results_dir if results_dir.is_dir() else results_dir.parent)
    launch.check_output_dir(target)
    print_summary(results)
    _render(results, target)


@main.command(name="finalize")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def finalize_cmd(run_dir: Path) -> None:
    """Write results.json and samples.csv from the journal of a run that was killed."""
    results = finalize(run_dir)
    out.print(f"{run_dir}: {len(results.samples)} samples, status {results.run.get('status')}")


@main.command()
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=RunConfig().state_dir, show_default=True
)
@click.option(
    "--all",
    "sweep_all",
    is_flag=True,
    help="Also remove every isobench-named resource on this host, whichever run made it. Only when "
    "no isobench run is active on the host: runs of other state dirs are invisible here.",
)
def gc(state_dir: Path, sweep_all: bool) -> None:
    """Remove cgroups, mounts, netns, veths, domains and dirs left by runs that died."""
    from isobench.gc import collect_garbage

    report = collect_garbage(state_dir, sweep_all=sweep_all)
    for item in report.removed:
        out.print(f"removed {escape(item)}", highlight=False)
    for run_id in report.live:
        out.print(f"left alone: live run {run_id}")
    for err in report.errors:
        console.print(f"[red]gc error:[/] {escape(err)}", highlight=False)
    if not report.removed:
        out.print("nothing to remove")
    if report.errors:
        sys.exit(1)


@main.command(name="list")
def list_cmd() -> None:
    """The drivers and workloads this isobench knows."""
    t = Table(title="drivers")
    t.add_column("name")
    t.add_column("description")
    for name, cls in all_drivers().items():
        t.add_row(name, cls.description)
    out.print(t)
    t = Table(title="workloads")
    t.add_column("name")
    t.add_column("default")
    t.add_column("description")
    for name, wcls in all_workloads().items():
        t.add_row(name, "yes" if name in DEFAULT_WORKLOADS else "", wcls.description)
    out.print(t)


@main.command()
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=RunConfig().state_dir, show_default=True
)
def doctor(state_dir: Path) -> None:
    """What this host can do, and why not."""
    from isobench.doctor import diagnose

    rows = diagnose(state_dir)
    t = Table(title="isobench doctor")
    t.add_column("check")
    t.add_column("status")
    t.add_column("detail", overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}
    for check in rows:
        t.add_row(check.name, f"[{style[check.status]}]{check.status}[/]", check.detail)
    out.print(t)


@main.command()
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--baseline",
    "-b",
    "baselines",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A baseline run; repeat for several (then the run is the test's unit).",
)
@click.option(
    "--current",
    "-c",
    "currents",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A current run; repeat for several.",
)
@click.option(
    "--ab",
    "ab",
    metavar="A,B",
    help="Compare variant B with variant A of one A/B run (DIR), paired by round.",
)
@click.option(
    "--fail-on",
    multiple=True,
    help="Gate rule(s) like 'startup.*:5%' (relative) or 'vm/startup.total:0.05' (absolute); "
    "exit 1 when one is violated, 3 when a gated figure cannot be judged. A rule at N% catches a "
    "true N% change only about half the time: gate at half the regression you must catch.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Family-wise error rate: the chance a compare with no real change raises any alarm.",
)
@click.option(
    "--min-effect", type=float, default=0.05, show_default=True, help="Smallest relative change reported."
)
@click.option("--all", "show_all", is_flag=True, help="Print every compared figure, not only changes.")
def compare(
    dirs: tuple[Path, ...],
    baselines: tuple[Path, ...],
    currents: tuple[Path, ...],
    ab: str | None,
    fail_on: tuple[str, ...],
    alpha: float,
    min_effect: float,
    show_all: bool,
) -> None:
    """Per metric: change in median with a CI and a verdict; with --fail-on, a regression gate.

    \b
    isobench compare BASE CUR                     one run per side (unit: sample)
    isobench compare -b B1 -b B2 -c C1 -c C2      several runs per side (unit: run)
    isobench compare DIR --ab A,B                 B vs A of one A/B run (unit: round, paired)

    Exit 0: no rule violated; 1: a rule violated; 3: nothing violated but a gated figure could not be
    judged (too few values for the exact test at --alpha).
    """
    rules = parse_rules(fail_on)
    if ab is not None:
        labels = launch.split_names(ab) or ()
        if len(labels) != 2 or len(dirs) != 1 or baselines or currents:
            raise UsageError("--ab takes two labels (--ab A,B) and exactly one results directory")
        cmp = compare_ab(
            load_results(dirs[0]), labels[0], labels[1], rules, alpha=alpha, min_effect=min_effect
        )
        title = f"{dirs[0]}: {labels[1]} vs {labels[0]}"
    else:
        if baselines or currents:
            if dirs or not baselines or not currents:
                raise UsageError(
                    "give runs either as BASE CUR or as --baseline ... --current ..., each side at least once"
                )
        elif len(dirs) == 2:
            baselines, currents = (dirs[0],), (dirs[1],)
        else:
            raise UsageError("compare needs BASE CUR, or --baseline D ... --current D ..., or DIR --ab A,B")
        cmp = compare_runs(
            [load_results(d) for d in baselines],
            [load_results(d) for d in currents],
            rules,
            alpha=alpha,
            min_effect=min_effect,
        )
        title = f"{', '.join(map(str, baselines))} -> {', '.join(map(str, currents))}"
    print_comparison(cmp, title, show_all=show_all)
    sys.exit(cmp.exit_code)


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
        out.print(f"{escape(title)}: no figure changed significantly", highlight=False)
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


@main.command()
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
def export(results_dir: Path, target: Path) -> None:
    """Write all samples as CSV or Parquet, or time metrics as pytest-benchmark JSON, by TARGET's suffix
    (.csv, .parquet, .json)."""
    from isobench.reports.export import pytest_benchmark_json, write_samples
    from isobench.results import dumps

    results = load_results(results_dir)
    if target.suffix == ".json":
        target.write_text(dumps(pytest_benchmark_json(results), indent=1) + "\n")
    elif target.suffix in (".csv", ".parquet"):
        write_samples(results, target)
    else:
        raise UsageError(f"cannot export to {target.name}: use a .csv, .parquet or .json file name")
    out.print(f"wrote {target}")


@main.command()
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("history"),
    show_default=True,
    help="Where to write history.html and plots/history-*.png.",
)
def history(results_dirs: tuple[Path, ...], output: Path) -> None:
    """The headline figures over runs (asv-style trends with CI bands). RESULTS_DIRS are run
    directories, or directories holding them (e.g. ./results); runs are ordered by start time."""
    from isobench.reports.history import render_history

    launch.check_output_dir(output)
    paths = render_history(results_dirs, output)
    for skipped in paths.skipped:
        console.print(f"[yellow]skipped:[/] {escape(skipped)}", highlight=False)
    out.print(f"{len(paths.runs)} runs, {len(paths.plots)} figures")
    for finding in paths.findings:
        out.print(f"changed: {escape(finding)}", highlight=False)
    out.print(f"history: {paths.html}")


main.add_command(image_group, name="image")

if __name__ == "__main__":
    main()
