from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from isobench.model import Sample
from isobench.reports import ReportPaths, render
from isobench.reports.document import build_document, steal_words
from isobench.reports.html import render_html
from isobench.reports.markdown import render_markdown
from isobench.results import Results

from .conftest import build_real_results

PNG = b"\x89PNG\r\n\x1a\n"


def test_render_writes_every_artifact(rendered: tuple[Results, ReportPaths]) -> None:
    _, paths = rendered
    tmp_path = paths.html.parent
    assert paths.html == tmp_path / "report.html"
    assert paths.markdown.read_text().startswith("# What isolation costs")
    names = {p.name for p in paths.plots}
    assert {
        "startup-timeline.png",
        "startup-distribution.png",
        "ratio-cpu.png",
        "leakage-heatmap.png",
        "interference-heatmap.png",
        "memory-overhead.png",
    } <= names
    # 0/1 flags, degradations and idle memory have no meaningful ratio to native
    assert not {"ratio-leakage.png", "ratio-interference.png", "ratio-idle-memory.png"} & names
    for p in paths.plots:
        assert p.parent == tmp_path / "plots"
        assert p.read_bytes().startswith(PNG)
    assert set(paths.empty_sections) <= {"Disk I/O per storage path", "Network"}
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    assert len(summary) > 30
    assert {"ratio_to_native", "ci_low", "noisy"} <= set(summary.columns)
    assert (tmp_path / "tables" / "failures.csv").read_text().count("fio exited 1") == 1
    leak = pd.read_csv(tmp_path / "tables" / "leakage.csv")
    vm = leak[(leak["driver"] == "vm") & (leak["variant"] == "hardening=default")].iloc[0]
    host = leak[(leak["driver"] == "host") & (leak["variant"] == "hardening=default")].iloc[0]
    assert (vm["score"], vm["probes leaking"], vm["probes"]) == (0, 0, 4)
    assert (host["score"], host["count"], host["probes leaking"]) == (100, 4, 4)


def test_html_is_self_contained_and_escaped(rendered: tuple[Results, ReportPaths]) -> None:
    _, paths = rendered
    tmp_path = paths.html.parent
    html = paths.html.read_text()
    for section in ("metadata", "warnings", "tables", "figures", "methods"):
        assert f'id="{section}"' in html
    # Offline and script-free: every image is embedded, nothing is fetched.
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)
    assert html.count('src="data:image/png;base64,') == len(list((tmp_path / "plots").glob("*.png")))
    # Untrusted text is escaped wherever it appears.
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;b&gt;untrusted&lt;/b&gt;" in html and "<b>untrusted" not in html


def test_html_shows_metadata_and_warnings(rendered: tuple[Results, ReportPaths]) -> None:
    html = rendered[1].html.read_text()
    head = html[: html.index('id="tables"')]
    assert html.index('id="headline"') < html.index('id="warnings"') < html.index('id="tables"')
    assert "ran guests with TCG" in head
    # grouped: one line per kind, the items collapsed under it
    assert "figures have CoV above 5%" in head
    assert "container / cpu / cpu.latency_ms: CoV" in head
    assert "1 cell failed (vm/disk)" in head
    assert "vm / disk repetition 3: fio exited 1" in head
    # run and host metadata come last, collapsed
    meta = html[html.index('id="metadata"') :]
    assert html.index('id="metadata"') > html.index('id="methods"')
    assert "<details><summary>run, host and driver metadata</summary>" in meta
    assert "vm (accel: tcg)" in meta
    assert "cgroup_mode" in meta and "hybrid" in meta
    assert "Methods" in html and "CLOCK_MONOTONIC" in html
    assert "tool: isobench-clock" in html


def test_absent_data_omits_figures_and_says_so(tmp_path: Path) -> None:
    samples = [
        Sample(
            run_id="r",
            driver=d,
            workload="cpu",
            metric="cpu.events_per_s",
            value=v + i,
            unit="events/s",
            repetition=i,
            better="higher",
        )
        for d, v in (("host", 100.0), ("container", 98.0))
        for i in range(5)
    ]
    paths = render(Results(run={"run_id": "r", "status": "interrupted"}, samples=samples), tmp_path)
    assert [p.name for p in paths.plots] == ["ratio-cpu.png"]
    assert "Startup" in paths.empty_sections and "Information leakage" in paths.empty_sections
    html = paths.html.read_text()
    assert 'id="no-data"' in html and "Memory overhead" in html
    assert "run status is &#x27;interrupted&#x27;" in html
    assert "No data in this run for" in paths.markdown.read_text()
    assert "run status is 'interrupted'" in paths.markdown.read_text()


def test_rerender_removes_stale_plots(results: Results, tmp_path: Path) -> None:
    render(results, tmp_path)
    only_cpu = Results(run=results.run, samples=[s for s in results.samples if s.workload == "cpu"])
    paths = render(only_cpu, tmp_path)
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {p.name for p in paths.plots}


def test_empty_run_renders(tmp_path: Path) -> None:
    paths = render(Results(run={"run_id": "empty"}, samples=[]), tmp_path)
    assert paths.plots == ()
    assert "No measured samples" in paths.html.read_text()


def test_hostile_labels_do_not_break_plots(tmp_path: Path) -> None:
    # "$" starts matplotlib mathtext; an unbalanced one in a param would abort the figure.
    samples = [
        Sample(
            run_id="r",
            driver=d,
            workload="disk",
            metric="disk.$iops_{x",
            value=10.0 + i,
            unit="IOPS",
            repetition=i,
            better="higher",
            params={"storage": "$HOME\\^"},
        )
        for d in ("host", "vm")
        for i in range(4)
    ]
    paths = render(Results(run={"run_id": "r"}, samples=samples), tmp_path)
    assert {p.name for p in paths.plots} == {"ratio-disk.png"}
    assert "plot " not in paths.html.read_text().split('id="tables"')[0]


def test_markdown_escapes_table_cells(rendered: tuple[Results, ReportPaths]) -> None:
    md = rendered[1].markdown.read_text()
    assert "&lt;script&gt;" in md and "<script>" not in md
    assert "\\| cannot open /data" in md
    # short: the headline, findings, grouped warnings and where the detail is
    assert len(md) < 10_000
    assert "tables/summary.csv" in md


def test_the_runs_host_steal_is_a_host_fact() -> None:
    def sample(driver: str, rep: int, steal: float | None) -> Sample:
        meta = {"round": rep, "slot": 0} | ({"host_steal": steal} if steal is not None else {})
        return Sample("r", driver, "cpu", "cpu.x", 1.0, "s", rep, metadata=meta)

    # two figures of one cell share its reading; a cell without one (too short) is not counted
    samples = [sample("host", 0, 0.02), sample("host", 0, 0.02), sample("vm", 1, 0.3), sample("vm", 2, 0.05)]
    samples.append(sample("vm", 3, None))
    assert steal_words(Results(run={}, samples=samples)) == (
        "median 5% of the host's CPU time over 3 cell readings (2%-30%); Warnings name the cells above 10%"
    )
    assert steal_words(Results(run={}, samples=samples[:2])) == (
        "median 2% of the host's CPU time over 1 cell reading (2%-2%)"
    )
    assert steal_words(Results(run={}, samples=[samples[-1]])) == ""


def test_each_workload_points_to_where_else_the_report_shows_it(
    rendered: tuple[Results, ReportPaths],
) -> None:
    html = rendered[1].html.read_text()
    tables = html[html.index('id="tables"') : html.index('id="figures"')]

    def entry(workload: str) -> str:
        start = tables.index(f'<h3 id="table-{workload}">')
        return tables[start : tables.index("<h3", start + 1)]

    assert '<a href="#fig-startup">Startup (figures)</a>' in entry("startup")
    assert '<a href="#leak-score">Leak score</a>' in entry("leakage")
    assert '<a href="#fig-ratios">Relative to native (figures)</a>' in entry("cpu")
    # every in-page link lands somewhere
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert targets and targets <= set(re.findall(r'id="([^"]+)"', html))


# What a run interrupted early leaves: a driver or two, no native baseline, one repetition.
_PARTIAL_RUNS = {
    "no native baseline": {"drivers": ("container", "vm")},
    "one driver, no native": {"drivers": ("runc",)},
    "native alone": {"drivers": ("host",)},
    "one repetition": {"n": 1},
    **{
        f"{w} on one driver, no native": {"drivers": ("qemu",), "workloads": (w,)}
        for w in ("startup", "idle-memory", "cpu", "disk", "network", "leakage")
    },
}


@pytest.mark.parametrize("kept", _PARTIAL_RUNS.values(), ids=_PARTIAL_RUNS.keys())
def test_a_partial_run_draws_every_figure_it_has_data_for(kept: dict[str, Any], tmp_path: Path) -> None:
    # An interrupted run (only startup on container and vm measured) logged a traceback and lost
    # its ratio chart: with no row left to draw, an empty list selected no columns of the frame.
    results = build_real_results(**kept)
    doc = build_document(results, tmp_path)
    assert [g.items for g in doc.warning_groups if g.kind == "plots"] == []
    assert "No measured samples" not in render_html(doc)
    assert render_markdown(doc, tmp_path)


def test_a_run_with_figures_but_no_headline_question_does_not_say_it_measured_nothing(tmp_path: Path) -> None:
    # An interrupted density run: 38 figures, none of them a headline question's.
    samples = [
        Sample(
            run_id="r",
            driver="container",
            workload="density",
            metric="density.per_sandbox_bytes",
            value=500e3 + i,
            unit="bytes",
            repetition=i,
            params={"n": 5},
        )
        for i in range(3)
    ]
    doc = build_document(Results(run={"run_id": "r", "status": "interrupted"}, samples=samples), tmp_path)
    assert doc.headline.empty
    page = render_html(doc) + render_markdown(doc, tmp_path)
    assert "no successful measurement" not in page
    assert "No figure of this run answers a headline question; the report's tables" in render_markdown(
        doc, tmp_path
    )
