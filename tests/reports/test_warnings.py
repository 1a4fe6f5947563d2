"""Warnings grouped by kind: one line each with a count, the items kept for the collapsed list."""

from __future__ import annotations

import pandas as pd
from isobench.reports.tables import SUMMARY_COLUMNS, failures_table, summary_table
from isobench.reports.warnings import group_warnings
from isobench.results import Results


def _summary(rows: list[tuple[str, str, str, int, float]]) -> pd.DataFrame:
    recs = []
    for driver, workload, metric, n, cov in rows:
        rec = dict.fromkeys(SUMMARY_COLUMNS, 1.0)
        rec.update(
            driver=driver, workload=workload, metric=metric, variant="", n=n, cov=cov, noisy=cov > 0.05
        )
        recs.append(rec)
    return pd.DataFrame(recs, columns=list(SUMMARY_COLUMNS))


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
