"""The commands about this host rather than a run: gc, list, doctor."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from isobench.cli.output import console, out
from isobench.config import RunConfig, load_config
from isobench.drivers.base import all_drivers
from isobench.workloads.base import DEFAULT_WORKLOADS, all_workloads
from rich.markup import escape
from rich.table import Table

__all__ = ["doctor", "gc_cmd", "list_cmd"]


@click.command(name="gc")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help=f"[default: the config's, else {RunConfig().state_dir}]",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="The runs' TOML config file: its [drivers.*] tables (e.g. drivers.vm.uri) tell gc where they "
    "made things.",
)
@click.option(
    "--all",
    "sweep_all",
    is_flag=True,
    help="Also remove every isobench-named resource on this host, whichever run made it, except "
    "those of live runs (in this state dir or, through the host-wide registry /run/isobench/live, in "
    "any other): what was spared of each is said, and what could not be attributed is kept.",
)
def gc_cmd(state_dir: Path | None, config_path: Path | None, sweep_all: bool) -> None:
    """Remove cgroups, mounts, netns, veths, domains and dirs left by runs that died."""
    from isobench.gc import gc

    config = load_config(config_path)
    report = gc(state_dir or config.state_dir, sweep_all=sweep_all, driver_options=config.driver_options)
    for item in report.removed:
        out.print(f"removed {escape(item)}", highlight=False)
    for run_id in report.live:
        out.print(f"left alone: live run {run_id}")
    for desc in report.live_elsewhere:
        out.print(f"left alone: live {escape(desc)}", highlight=False)
    for line in report.spared:
        out.print(escape(line), highlight=False)
    for item in report.leftovers:
        console.print(f"[red]left:[/] {escape(item)}", highlight=False)
    for item in report.kept:
        console.print(f"[yellow]kept[/] {escape(item)}", highlight=False)
    for err in report.errors:
        console.print(f"[red]gc error:[/] {escape(err)}", highlight=False)
    if not report.removed and report.clean:
        out.print("nothing to remove")
    if not report.clean:
        sys.exit(1)


@click.command(name="list")
def list_cmd() -> None:
    """The drivers and workloads this isobench knows."""
    t = Table(title="drivers")
    t.add_column("name")
    t.add_column("kind")
    t.add_column("description")
    for name, cls in all_drivers().items():
        t.add_row(name, cls.capabilities.kind, cls.description)
    out.print(t)
    t = Table(title="workloads")
    t.add_column("name")
    t.add_column("default")
    t.add_column("description")
    for name, wcls in all_workloads().items():
        t.add_row(name, "yes" if name in DEFAULT_WORKLOADS else "", wcls.description)
    out.print(t)


@click.command()
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
