"""Fleet commands: ``isobench worker`` and what ``isobench run --cluster`` prints."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import click
from isobench import launch
from isobench.cli.output import (
    RichProgress,
    console,
    out,
    print_summary,
    progress_bar,
    render_report,
    warn_of_other_runs,
)
from isobench.cluster.worker import HOST_PARAM
from isobench.config import RunConfig
from isobench.model import Sample
from isobench.schedule import Cell
from isobench.workloads.base import Workload
from rich.markup import escape

__all__ = ["run_on_cluster", "worker"]


def quiet_dask(verbose: bool) -> None:
    """Dask logs every connection at INFO; isobench's own lines say what matters. (Importing
    distributed sets its loggers' levels from Dask's config, so it is imported first.)"""
    import distributed  # noqa: F401

    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.WARNING)


@click.command()
@click.option("--scheduler", required=True, metavar="tcp://HOST:8786", help="The Dask scheduler to join.")
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=RunConfig().state_dir, show_default=True
)
@click.option("--name", help="This host's name in the results (default: its hostname).")
@click.option("--drivers", help="Offer only these drivers (default: every driver available here).")
@click.option("--local-index", type=int, hidden=True, help="Set by --cluster local:N.")
def worker(
    scheduler: str, state_dir: Path, name: str | None, drivers: str | None, local_index: int | None
) -> None:
    """Probe this host (as `isobench doctor` does), then run cells of fleet runs for SCHEDULER, one at
    a time, until stopped (Ctrl-C or SIGTERM tears down whatever cell is running)."""
    from isobench.cluster.probe import host_identity, probe_resources, resources_text
    from isobench.cluster.worker import HostState, serve

    quiet_dask(logging.getLogger("isobench").getEffectiveLevel() < logging.WARNING)
    state_dir.mkdir(parents=True, exist_ok=True)
    host = name or host_identity(local_index)

    def ready(address: str) -> None:
        out.print(f"joined {escape(scheduler)} as {escape(address)}; waiting for cells", highlight=False)

    try:
        resources, problems = probe_resources(state_dir, launch.split_names(drivers))
        for check in problems:
            console.print(
                f"[bold yellow]warning:[/] {escape(check.name)}: {escape(check.detail)}", highlight=False
            )
        out.print(f"isobench worker {escape(host)}: {resources_text(resources)}", highlight=False)
        serve(scheduler, HostState(host, state_dir, resources), on_ready=ready)
    except KeyboardInterrupt:
        # a cell that was running tore its sandboxes down, and the open runs were closed
        out.print(f"isobench worker {escape(host)}: stopped", highlight=False)
        return
    out.print(f"isobench worker {escape(host)}: the scheduler closed", highlight=False)


class FleetProgress(RichProgress):
    """The run's progress bar; a failed cell's line names its host."""

    def cell_finished(self, cell: Cell, samples: Sequence[Sample]) -> None:
        host = next((str(s.params[HOST_PARAM]) for s in samples if HOST_PARAM in s.params), "?")
        located = [replace(s, error=f"[{host}] {s.error}") if s.failed else s for s in samples]
        super().cell_finished(cell, located)


def run_on_cluster(
    spec: str, config: RunConfig, run_id: str, chosen_workloads: dict[str, Workload], no_report: bool
) -> None:
    """``isobench run --cluster SPEC``: the matrix on every host, then the usual summary."""
    from isobench.cluster import connect, run_fleet

    quiet_dask(logging.getLogger("isobench").getEffectiveLevel() < logging.WARNING)
    started = time.monotonic()
    with connect(spec, config.state_dir, config.drivers) as conn:
        address = conn.address
        run_dir = config.output / run_id
        run_dir.mkdir()
        drivers = list(config.drivers or ())
        info = launch.run_info(config, run_id, sys.argv, drivers, chosen_workloads, {})
        plan = launch.describe_plan(config, drivers or ["every driver each host offers"], chosen_workloads)
        console.print(f"run {run_id} on {escape(address)}: " + "\n".join(plan), highlight=False)
        if conn.local is not None:  # the workers measure on this host
            warn_of_other_runs()
        with progress_bar() as bar:
            done = run_fleet(
                conn.fleet,
                address,
                config,
                chosen_workloads,
                run_id=run_id,
                run_dir=run_dir,
                run_info=info,
                progress=FleetProgress(bar),
                max_inflight=conn.max_inflight,
            )
    for host, ran in done.hosts.items():
        what = ", ".join(ran) if ran else "nothing (it offers none of the drivers)"
        out.print(f"host {escape(host)}: {escape(what)}", highlight=False)
    if done.outcome.lost:
        console.print(
            f"[yellow]lost host(s) {escape(', '.join(done.outcome.lost))}:[/] {done.outcome.retried} cell(s) "
            f"retried elsewhere, {done.outcome.failed_lost} recorded as failed; run `isobench gc` there",
            highlight=False,
        )
    results = done.results
    print_summary(results, budget=True)
    out.print(f"results: {run_dir}  (wall time {time.monotonic() - started:.1f} s)")
    if not no_report:
        render_report(results, run_dir)
    if done.outcome.teardown_errors:
        console.print("[red]some sandboxes could not be torn down; run `isobench gc` on the hosts named[/]")
    # a lost host may have left sandboxes behind, as a failed teardown does: exit 1 for both
    if results.failures() or done.outcome.teardown_errors or done.outcome.lost:
        sys.exit(1)
