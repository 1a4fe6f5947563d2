"""The report of a fleet run: ratios per host only, a fleet view only when there are several hosts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from isobench.model import Sample
from isobench.reports import overview, render
from isobench.reports.fleet import fleet_view, host_results, hosts_of
from isobench.reports.tables import summary_table
from isobench.results import RESULTS, Results, load_results


def _cpu(host: str | None, driver: str, centre: float) -> list[Sample]:
    params = {"variant": "single", **({"host": host} if host else {})}
    return [
        Sample(
            run_id="r",
            driver=driver,
            workload="cpu",
            metric="cpu.events_per_second",
            value=centre * (1 + 0.001 * i),
            unit="events/s",
            repetition=i,
            better="higher",
            params=params,
        )
        for i in range(5)
    ]


def _fleet() -> Results:
    # the fast host's container does 500 events/s, as many as the slow host's native: a ratio taken
    # across hosts would say 1.0x; per host it is 0.5x on both
    samples = (
        _cpu("fast", "host", 1000)
        + _cpu("fast", "container", 500)
        + _cpu("slow", "host", 500)
        + _cpu("slow", "container", 250)
    )
    return Results(run={"run_id": "r"}, samples=samples)


def test_ratios_to_native_are_per_host() -> None:
    summary = summary_table(_fleet())
    ratios = summary[summary["driver"] == "container"]["ratio_to_native"].tolist()
    assert ratios == pytest.approx([0.5, 0.5], rel=0.01)


def test_fleet_view_puts_each_hosts_figure_side_by_side() -> None:
    fleet = fleet_view(_fleet())
    assert fleet is not None and fleet.hosts == ("fast", "slow")
    rows = {(d, q): figs for d, q, figs in fleet.rows()}
    container = rows[("container", "CPU")]
    assert [f.ratio for f in container if f is not None] == pytest.approx([0.5, 0.5], rel=0.01)
    table = fleet.table()
    assert list(table.columns) == ["driver", "question", "fast", "slow"]
    assert len(table) == 2


def test_one_host_has_no_fleet_view() -> None:
    only = Results(run={}, samples=_cpu("a", "host", 1) + _cpu("a", "container", 2))
    assert hosts_of(only) == ["a"] and fleet_view(only) is None
    plain = Results(run={}, samples=_cpu(None, "host", 1))
    assert hosts_of(plain) == [] and fleet_view(plain) is None and overview(plain).fleet is None


def test_host_results_drop_the_host_param() -> None:
    mine = host_results(_fleet(), "slow")
    assert len(mine.samples) == 10 and all("host" not in s.params for s in mine.samples)
    # an old run split by host keeps the schema it was written with (compare reads it)
    old = host_results(dataclasses.replace(_fleet(), schema_version=7), "slow")
    assert old.schema_version == 7


def test_the_headline_is_one_hosts_and_the_report_has_the_fleet_view(tmp_path: Path) -> None:
    results = _fleet()
    ov = overview(results)
    assert ov.fleet is not None and ov.fleet.main == "fast"
    fig = ov.headline.figure("container", "cpu")
    assert fig is not None and fig.ratio == pytest.approx(0.5, rel=0.01)
    paths = render(results, tmp_path)
    html = paths.html.read_text()
    assert 'id="fleet"' in html and "slow" in html
    assert "Fleet: the same figure on every host" in paths.markdown.read_text()
    assert (tmp_path / "tables" / "fleet.csv").read_text().startswith("driver,question,fast,slow")


def test_schema_2_documents_still_load(tmp_path: Path) -> None:
    v2 = {
        "schema_version": 2,
        "run": {"run_id": "old", "order": {"design": "rounds", "seed": 1}},
        "samples": [s.to_dict() for s in _cpu(None, "host", 1)],
    }
    (tmp_path / RESULTS).write_text(json.dumps(v2))
    old = load_results(tmp_path)
    assert old.run_id == "old" and hosts_of(old) == []
