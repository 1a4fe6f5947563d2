"""The ``isobench`` command line: the group, its error handling and ``run``. The only package that talks
to the terminal (rich lives here); the other commands are in :mod:`.results` and :mod:`.host`, what
they print in :mod:`.output`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from isobench import __version__, launch
from isobench.cli.cluster import run_on_cluster, worker
from isobench.cli.host import doctor, gc_cmd, list_cmd
from isobench.cli.output import (
    RichProgress,
    console,
    out,
    print_comparison,
    print_summary,
    progress_bar,
    render_report,
    warn_of_other_runs,
)
from isobench.cli.results import compare, export, finalize_cmd, history, report
from isobench.config import SIZES, RunConfig, load_config, parse_duration, parse_precision
from isobench.drivers.base import Accel, check_driver_options
from isobench.errors import IsobenchError, UsageError
from isobench.images.cli import image_group
from isobench.results import load_results
from isobench.runner import Runner, new_run_id, quick_sized, run_matrix
from isobench.runstate import RunLock
from isobench.workloads.base import Workload, check_fit, check_params
from rich.logging import RichHandler
from rich.markup import escape

__all__ = ["main", "print_comparison", "print_summary"]

log = logging.getLogger("isobench")


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


@main.command()
@click.option("--drivers", help="Comma-separated drivers (default: every driver available here).")
@click.option("--workloads", help="Comma-separated workloads (default: the default set).")
@click.option(
    "--budget",
    help="Wall time the matrix may take, e.g. 15m or 900s, a hard cap; repetitions are then decided "
    "while running (the default run is budgeted: 20m, whose first pass may run to 40m on a slow host).",
)
@click.option(
    "--precision", help="Budgeted runs: target 95% CI half-width relative to the median (default 5%)."
)
@click.option(
    "--max-n",
    type=int,
    help="Budgeted runs: repetitions a cell may get at most (default 100); raise it when the budget "
    "should buy more precision, e.g. for a gate.",
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
@click.option(
    "--cluster",
    metavar="tcp://HOST:8786|local:N",
    help="Run the matrix on every host of a Dask cluster (`isobench worker` on each), or on N local "
    "workers; a fixed repetition count (-n N or --quick).",
)
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
def run(
    drivers: str | None,
    workloads: str | None,
    budget: str | None,
    precision: str | None,
    max_n: int | None,
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
    cluster: str | None,
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
            ("max_n", max_n),
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
    if cluster is None:  # a fleet's hosts have CPUs of their own: each checks the sandbox there
        launch.check_sandbox_cpus(config)
    variants = launch.load_ab(launch.parse_ab([*ab, *map(str, more_ab)]), config) if ab else {}

    run_id = new_run_id()
    chosen_workloads = launch.select_workloads(config)
    check_params(config.workload_params, quick=config.quick)
    # A fleet's workers have CPUs of their own: only a local run knows which it may use.
    cpus = os.sched_getaffinity(0) if cluster is None else None
    for cfg in (config, *variants.values()):
        check_fit(
            chosen_workloads,
            cfg.workload_params,
            quick=quick_sized(cfg),
            memory_mib=cfg.memory_mib,
            cpus=cpus,
        )
    check_driver_options(config.driver_options)
    launch.check_output_dir(config.output)
    if cluster is not None:
        from isobench.cluster import check_fleet_config

        check_fleet_config(config, ab=bool(variants))
        run_on_cluster(cluster, config, run_id, chosen_workloads, no_report)
        return
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
    # The guest drivers share one accel probe: one warning per reason, naming every driver.
    emulated: dict[str, list[str]] = {}
    for name, driver in chosen.items():
        if driver.probed_capabilities().accel is Accel.TCG:
            # why, in the words the driver records with every sample
            reason = str(driver.metadata().get("accel_reason", "KVM is not usable here"))
            emulated.setdefault(reason, []).append(name)
    for reason, names in emulated.items():
        who = f"driver {names[0]} uses" if len(names) == 1 else f"drivers {', '.join(names)} use"
        console.print(
            f"[bold yellow]warning:[/] {who} TCG (software emulation): "
            f"{escape(reason)}; guest figures are not KVM figures",
            highlight=False,
        )

    warn_of_other_runs()
    run_dir = config.output / run_id
    run_dir.mkdir()
    started = time.monotonic()
    try:
        info = launch.run_info(config, run_id, sys.argv, list(chosen), chosen_workloads, skipped)
        plan = launch.describe_plan(config, list(chosen), chosen_workloads, list(variants))
        console.print(f"run {run_id}: " + "\n".join(plan), highlight=False)
        with progress_bar() as bar:
            runner = Runner(
                config,
                chosen,
                chosen_workloads,
                run_id=run_id,
                run_dir=run_dir,
                run_info=info,
                progress=RichProgress(bar),
                variants=variants or None,
            )
            results, teardown_errors = run_matrix(runner, lock=lock)
    except KeyboardInterrupt:
        _say_what_was_kept(run_dir)
        raise
    print_summary(results, budget=True)
    out.print(f"results: {run_dir}  (wall time {time.monotonic() - started:.1f} s)")
    if not no_report:
        render_report(results, run_dir)
    if teardown_errors:
        console.print("[red]some sandboxes could not be torn down; run `isobench gc`[/]")
    if results.failures() or teardown_errors:
        sys.exit(1)


def _say_what_was_kept(run_dir: Path) -> None:
    """After Ctrl-C: where the part of the run that finished is, and how to read it."""
    try:
        results = load_results(run_dir)
    except (IsobenchError, OSError):
        # Stopped before its journal had a header: nothing to read, so nothing to keep either.
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only ever an empty directory
        return
    measured = sum(1 for _ in results.measured())
    if measured == 0:
        console.print(
            f"nothing was measured yet; the run's record is in {run_dir}", highlight=False, soft_wrap=True
        )
        return
    console.print(
        f"what was measured ({measured} samples) is kept in {run_dir}; "
        f"`isobench report {run_dir}` renders it",
        highlight=False,
        soft_wrap=True,  # a path to copy, never broken across lines
    )


for _command in (report, finalize_cmd, gc_cmd, list_cmd, doctor, compare, export, history, worker):
    main.add_command(_command)
main.add_command(image_group, name="image")
