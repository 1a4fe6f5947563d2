"""The commands that read results directories: report, finalize, compare, export, history."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from isobench import launch
from isobench.cli.output import console, out, print_comparison, print_summary, render_report
from isobench.errors import UsageError
from isobench.reports.ab import ab_labels, compare_ab
from isobench.reports.ab_view import first_configuration_as_run
from isobench.reports.compare import compare as compare_runs
from isobench.reports.compare import parse_rules
from isobench.reports.units import plural
from isobench.results import JOURNAL, RESULTS, Results, finalize, load_results, read_journal, writer_of
from rich.markup import escape

__all__ = ["compare", "export", "finalize_cmd", "history", "report"]

F = TypeVar("F", bound=Callable[..., Any])


def _runs_option(flag: str, short: str, dest: str, help_text: str) -> Callable[[F], F]:
    """One side of a comparison: a results directory, repeatable."""
    return click.option(flag, short, dest, multiple=True, type=click.Path(path_type=Path), help=help_text)


@click.command()
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
    render_report(results, target)


@click.command(name="finalize")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
def finalize_cmd(run_dir: Path) -> None:
    """Write results.json and samples.csv from the journal of a run that was killed."""
    journal = read_journal(run_dir / JOURNAL)
    if (live := writer_of(journal)) is not None:
        raise UsageError(
            f"{run_dir}: {live.describe()} is still running and writes {RESULTS} itself when it "
            f"ends; `isobench report {run_dir}` renders what it has measured so far"
        )
    results = finalize(run_dir, journal)
    out.print(f"{run_dir}: {plural(len(results.samples), 'sample')}, status {results.run.get('status')}")


@click.command()
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@_runs_option(
    "--baseline", "-b", "baselines", "A baseline run; repeat for several (then the run is the test's unit)."
)
@_runs_option("--current", "-c", "currents", "A current run; repeat for several.")
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
@click.option(
    "--history",
    "history_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Earlier runs of the baseline's configuration on this host (a run directory, or a folder of "
    "them such as a CI trend folder; repeatable): they join the baseline as reference runs, so the "
    "run is the unit and run-to-run variation counts even with one run per side.",
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
    history_dirs: tuple[Path, ...],
    show_all: bool,
) -> None:
    """Per metric: change in median with a CI and a verdict; with --fail-on, a regression gate.

    \b
    isobench compare BASE CUR                     one run per side (unit: sample)
    isobench compare -b B1 -b B2 -c C1 -c C2      several runs per side (unit: run)
    isobench compare BASE CUR --history TREND     one run per side against earlier runs (unit: run)
    isobench compare DIR --ab A,B                 B vs A of one A/B run (unit: round, paired)

    Exit 0: no rule violated; 1: a rule violated; 3: nothing violated but a gated figure could not be
    judged (too few values for the exact test at --alpha).
    """
    rules = parse_rules(fail_on)
    if ab is not None:
        labels = launch.split_names(ab) or ()
        if len(labels) != 2 or len(dirs) != 1 or baselines or currents or history_dirs:
            raise UsageError(
                "--ab takes two labels (--ab A,B) and exactly one results directory (no --history)"
            )
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
        base_runs, cur_runs = _side(baselines), _side(currents)
        skipped: list[str] = []
        history = _history(history_dirs, {r.run_id for r in (*base_runs, *cur_runs)}, skipped)
        cmp = compare_runs(base_runs, cur_runs, rules, alpha=alpha, min_effect=min_effect, history=history)
        title = f"{', '.join(map(str, baselines))} -> {', '.join(map(str, currents))}"
        if history_dirs:
            title += f" (with {len(history)} earlier baseline runs" + (
                f"; {len(skipped)} unreadable skipped)" if skipped else ")"
            )
    print_comparison(cmp, title, show_all=show_all)
    sys.exit(cmp.exit_code)


def _side(dirs: Sequence[Path]) -> list[Results]:
    """One side's runs; an A/B run stands for its first configuration, as in its report's headline
    and in ``isobench history`` (its cells would otherwise match no plain run's), and says so."""
    runs = []
    for d in dirs:
        run = load_results(d)
        if len(labels := ab_labels(run)) > 1:
            console.print(
                f"note: {run.run_id} is an A/B run: its first configuration ({labels[0]}) stands for it, "
                f"as in its report's headline; `isobench compare {d} --ab {','.join(labels)}` compares "
                "its configurations",
                highlight=False,
                markup=False,
            )
        runs.append(first_configuration_as_run(run))
    return runs


def _history(dirs: Sequence[Path], compared: set[str], skipped: list[str]) -> list[Results]:
    """The ``--history`` runs, without the runs being compared (a trend folder may hold them); an
    unreadable run inside a folder is named in ``skipped`` and left out."""
    if not dirs:
        return []
    from isobench.reports.history import load_runs

    runs = [r for r in load_runs(dirs, skipped) if r.run_id not in compared]
    if not runs:
        raise UsageError(
            f"--history {', '.join(map(str, dirs))}: no earlier runs there besides the compared ones"
        )
    return runs


@click.command()
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


@click.command()
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
    out.print(f"{len(paths.runs)} runs, {len(paths.plots)} charts")
    for finding in paths.findings:
        out.print(f"changed: {escape(finding)}", highlight=False)
    if paths.verdict:
        out.print(escape(paths.verdict), highlight=False)
    for line in paths.besides:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    out.print(f"history: {paths.html}")
