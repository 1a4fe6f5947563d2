"""Warnings grouped by kind: one line each with a count, the items kept for the collapsed list."""

from __future__ import annotations

import math

import pandas as pd
from isobench.reports.tables import SUMMARY_COLUMNS, failures_table, summary_table
from isobench.reports.warnings import group_warnings
from isobench.results import Results


def _summary(rows: list[tuple[str, str, str, int, float]], steal: float = math.nan) -> pd.DataFrame:
    recs = []
    for driver, workload, metric, n, cov in rows:
        rec = dict.fromkeys(SUMMARY_COLUMNS, 1.0)
        rec.update(
            driver=driver,
            workload=workload,
            metric=metric,
            variant="",
            n=n,
            cov=cov,
            noisy=cov > 0.05,
            host_steal=steal,
        )
        recs.append(rec)
    return pd.DataFrame(recs, columns=list(SUMMARY_COLUMNS))


def test_cells_measured_under_high_host_steal_are_named_once_each() -> None:
    quiet = _summary([("host", "network", "network.rtt", 1, 0.0)], steal=0.09)
    held = _summary(
        [("bwrap", "network", m, 1, 0.0) for m in ("network.rtt", "network.throughput")], steal=0.22
    )
    held.loc[1, "host_steal"] = 0.25  # a cell counts once, by its highest figure
    cpu = _summary([("vm", "cpu", "cpu.events", 3, 0.0)], steal=0.12)
    (g,) = group_warnings({}, pd.concat([quiet, held, cpu], ignore_index=True), pd.DataFrame())
    assert g.kind == "steal"
    assert g.line.startswith(
        "2 of 3 driver/workload cells ran while the hypervisor under this host took more than 10% of its "
        "CPU time (steal; up to 25%; 1 of them network)"
    )
    assert g.items == ("bwrap / network: 25% steal", "vm / cpu: 12% steal")
    # runs before schema 9 have no readings: nothing to say
    assert group_warnings({}, _summary([("host", "cpu", "cpu.events", 3, 0.0)]), pd.DataFrame()) == ()


def test_noisy_figures_are_one_line_with_where_they_mostly_are() -> None:
    rows = [(d, "startup", f"startup.phase.{p}", 3, 0.2) for d in ("vm", "qemu") for p in ("boot", "ready")]
    rows += [("vm", "cpu", "cpu.time", 3, 0.08), ("host", "cpu", "cpu.time", 3, 0.01)]
    groups = group_warnings({}, _summary(rows), pd.DataFrame())
    assert [g.kind for g in groups] == ["noisy"]
    g = groups[0]
    assert g.line.startswith("5 figures have CoV above 5% (4 of them startup phases at n=3)")
    assert len(g.items) == 5 and g.items[0].startswith("vm / startup / startup.phase.boot: CoV 20.0%")


def test_each_kind_is_one_group(results: Results) -> None:
    summary = summary_table(results)
    groups = group_warnings(
        {**results.run, "status": "interrupted"}, summary, failures_table(results), ["plot x failed"]
    )
    assert [g.kind for g in groups] == ["status", "failed", "tcg", "noisy", "plots"]
    failed = groups[1]
    assert failed.line.startswith("1 cell failed (vm/disk)")
    assert failed.items == (
        "vm / disk repetition 3: fio exited 1: <script>alert('x')</script> | cannot open /data",
    )
    assert groups[2].line.startswith("vm ran guests with TCG")


def test_a_clean_run_has_no_warnings(results: Results) -> None:
    quiet = summary_table(results)
    quiet = quiet.assign(noisy=False)
    assert group_warnings({"status": "complete"}, quiet, pd.DataFrame()) == ()


def test_a_budgeted_run_says_which_cells_missed_the_precision_target() -> None:
    fig = {"metric": "startup.to_ready", "variant": "", "n": 6, "median": 0.01}
    run = {
        "budget": {
            "seconds": 900.0,
            "spent": 900.0,
            "precision": 0.05,
            "stopped": "budget spent",
            "figures_counted": 3,
            "figures_met": 1,
            "cells_skipped": 0,
            "units": [
                {
                    "driver": "vm",
                    "workload": "startup",
                    "variant": None,
                    "n": 6,
                    "status": "below target",
                    "figures": [{**fig, "half_width": 0.12, "met": False}],
                },
                {
                    "driver": "host",
                    "workload": "startup",
                    "variant": None,
                    "n": 40,
                    "status": "met",
                    "figures": [{**fig, "half_width": 0.01, "met": True}],
                },
                {
                    "driver": "vm",
                    "workload": "disk",
                    "variant": None,
                    "n": 1,
                    "status": "below target",
                    "figures": [{**fig, "metric": "disk.rand_read.iops", "half_width": None, "met": False}],
                },
            ],
        }
    }
    (g,) = [g for g in group_warnings(run, pd.DataFrame(), pd.DataFrame()) if g.kind == "precision"]
    assert g.line.startswith("2 of 3 counted figures did not reach the precision target")
    assert "15:00 budget (budget spent); 2 driver/workload cells fell short" in g.line
    assert g.items == (
        "startup on vm: below target, n=6: worst startup.to_ready ±12.0%",
        "disk on vm: below target, n=1: disk.rand_read.iops not judged",
    )
    assert g.line.endswith(
        "fell short. A longer --budget, or --workloads/--drivers to narrow the run, buys precision."
    )
    # Why so many fell short, where the first pass (results schema 11) took most of the budget.
    run["budget"]["first_pass_s"] = 870.0
    (g,) = [g for g in group_warnings(run, pd.DataFrame(), pd.DataFrame()) if g.kind == "precision"]
    assert g.line.endswith(
        "fell short. The first pass (every cell at its minimum n) took 14:30 of the 15:00 budget, leaving "
        "0:30 for the extra rounds that buy precision; a longer --budget, or --workloads/--drivers to "
        "narrow the run, leaves them more."
    )
    run["budget"]["figures_met"] = 3
    assert [g for g in group_warnings(run, pd.DataFrame(), pd.DataFrame()) if g.kind == "precision"] == []


def test_an_ab_run_says_which_changes_missed_the_precision_target() -> None:
    change = {"driver": "host", "workload": "startup", "label": "B", "against": "A", "variant": ""}
    run = {
        "budget": {
            "seconds": 360.0,
            "spent": 130.0,
            "precision": 0.05,
            "stopped": "repetition caps or failed cells",
            "figures_counted": 4,
            "figures_met": 4,  # the sides are known; not what an A/B run is for
            "cells_skipped": 0,
            "units": [],
            "changes": [
                {
                    **change,
                    "metric": "startup.to_ready",
                    "n": 400,
                    "change": 0.09,
                    "half_width": 0.02,
                    "met": True,
                },
                {
                    **change,
                    "metric": "startup.phase.spawn",
                    "n": 400,
                    "change": -0.1,
                    "half_width": 0.10,
                    "met": False,
                },
            ],
        }
    }
    (g,) = [g for g in group_warnings(run, pd.DataFrame(), pd.DataFrame()) if g.kind == "precision"]
    assert g.line.startswith("1 of 2 changes between the A/B configurations are not known to ±5%")
    assert "after the 6:00 budget (repetition caps or failed cells)" in g.line
    assert g.items == ("startup on host, B/A: n=400: worst startup.phase.spawn ±10.0%",)
    run["budget"]["changes"][1]["met"] = True
    assert [g for g in group_warnings(run, pd.DataFrame(), pd.DataFrame()) if g.kind == "precision"] == []


def test_tcg_is_said_of_the_guest_drivers_that_measured_something() -> None:
    run = {"drivers": {"host": {}, "vm": {"accel": "tcg"}, "qemu": {"accel": "tcg"}}}
    # interrupted before any guest cell: the run chose vm and qemu but ran no guest
    assert group_warnings(run, _summary([("host", "cpu", "cpu.events", 3, 0.0)]), pd.DataFrame()) == ()
    rows = [("host", "cpu", "cpu.events", 3, 0.0), ("qemu", "cpu", "cpu.events", 3, 0.0)]
    (g,) = group_warnings(run, _summary(rows), pd.DataFrame())
    assert g.line.startswith("qemu ran guests with TCG")


def test_a_run_still_running_is_said_to_be_so() -> None:
    (g,) = group_warnings(
        {"status": "running"}, _summary([("host", "cpu", "cpu.events", 3, 0.0)]), pd.DataFrame()
    )
    assert (g.kind, g.line) == ("status", "the run is still running: these are the figures it has so far.")


def test_cells_that_met_another_run_are_one_warning() -> None:
    run = {"concurrent_runs": {"r-b": 3, "r-a": 12}}
    (g,) = group_warnings(run, _summary([("host", "cpu", "cpu.events", 3, 0.0)]), pd.DataFrame())
    assert g.kind == "concurrent"
    assert g.line.startswith(
        "2 other isobench runs measured on this host at the same time (run r-a, live during 12 cells "
        "of this run; run r-b, live during 3 cells of this run): the runs disturb each other"
    )
    assert g.items == (
        "run r-a, live during 12 cells of this run",
        "run r-b, live during 3 cells of this run",
    )
    # A fleet run's were on one of its hosts or another (the samples say which).
    (g,) = group_warnings(
        run | {"cluster": {"hosts": {}}}, _summary([("host", "cpu", "cpu.events", 3, 0.0)]), pd.DataFrame()
    )
    assert g.line.startswith("2 other isobench runs measured on this run's hosts at the same time (run r-a")
