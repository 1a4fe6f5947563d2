"""Leak scores are ranked only where their intervals are disjoint; otherwise the report says it
cannot rank them, in the findings as well as in the cells. Old results files still render."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from isobench.leakage import ProbeResult, measurements
from isobench.leakage.rules import Verdict
from isobench.model import Sample
from isobench.reports import overview, render
from isobench.reports.findings import findings
from isobench.reports.headline import LEAK, build_headline
from isobench.reports.leak_rank import Interval, leak_intervals, overlap, rank_groups, ranking_sentences
from isobench.results import RESULTS, Results, load_results

DATA = Path(__file__).parents[1] / "leakage" / "data"


def _pct(v: float) -> str:
    return f"{v:g}%"


def test_disjoint_intervals_are_ranked() -> None:
    a, b = Interval("container", 30.0, 22.7, 33.0), Interval("runc", 41.2, 35.0, 50.0)
    assert not overlap(a, b)
    said = ranking_sentences([b, a], _pct)
    assert said[0] == (
        "Leak score (lower is better; in brackets the range its uncertain probes allow): "
        "container 30% [22.7, 33.0], runc 41.2% [35.0, 50.0]."
    )
    assert said[1] == "Ranked (fewer leaks first) where the intervals do not overlap: container < runc."
    assert not any("Cannot rank" in s for s in said)


def test_overlapping_intervals_cannot_be_ranked_even_if_the_values_differ() -> None:
    """The v5 quick run of 2026-11-30 21:32: container 30.0% [22.7, 40.0], runc 41.2% [26.2, 50.0]."""
    a, b = Interval("container", 30.0, 22.7, 40.0), Interval("runc", 41.2, 26.2, 50.0)
    assert overlap(a, b)
    said = ranking_sentences([a, b], _pct)
    assert said[-1] == "Cannot rank container and runc apart: their intervals overlap."
    assert not any(s.startswith("Ranked") for s in said)


def test_a_chain_of_overlaps_is_one_group_between_ranked_ones() -> None:
    scores = [
        Interval("qemu", 0.0, 0.0, 7.6),
        Interval("vm", 0.0, 0.0, 6.5),
        Interval("container", 42.2, 41.3, 43.5),
        Interval("runc", 43.8, 38.0, 51.1),
        Interval("docker", 51.1, 50.0, 52.2),
        Interval("bwrap", 62.2, 60.9, 63.0),
    ]
    groups = [[s.name for s in g] for g in rank_groups(scores)]
    assert groups == [["qemu", "vm"], ["container", "runc", "docker"], ["bwrap"]]
    said = ranking_sentences(scores, _pct)
    assert "{qemu, vm} < {container, runc, docker} < bwrap." in said[1]
    assert (
        said[2] == "Cannot rank qemu and vm, nor container, runc and docker apart: their intervals overlap."
    )


def test_without_intervals_the_order_is_said_to_be_by_value_alone() -> None:
    said = ranking_sentences([Interval("runc", 38.98), Interval("container", 27.12)], _pct)
    assert said[0] == "Leak score (lower is better): container 27.12%, runc 38.98%."
    assert "no interval" in said[1]


def _samples(driver: str, verdicts: list[ProbeResult], params: dict[str, Any] | None = None) -> list[Sample]:
    return [
        Sample.from_measurement(m, run_id="r1", driver=driver, workload="leakage", repetition=0)
        for m in measurements(verdicts, params or {})
    ]


def _static(leaks: int, closed: int) -> list[ProbeResult]:
    return [ProbeResult(f"s{k}", 1, "d", Verdict("presence", k < leaks, "x")) for k in range(leaks + closed)]


def _corr(name: str, r: float, lo: float, hi: float) -> ProbeResult:
    return ProbeResult(
        name, 2, "d", Verdict("correlation", r >= 0.8, "x", r=r, p=1e-6, n=60, r_low=lo, r_high=hi)
    )


def _run() -> Results:
    """host leaks almost everything; container and runc differ by one static probe, but each has a
    correlation channel near its threshold, so they cannot be ranked apart; bwrap can."""
    samples = _samples("host", _static(9, 1))
    samples += _samples("container", [*_static(3, 7), _corr("meminfo", 0.9, 0.7, 0.97)], {"hardening": True})
    samples += _samples("container", _static(8, 2), {"hardening": False})
    samples += _samples("runc", [*_static(4, 6), _corr("meminfo", 0.3, -0.2, 0.6)])
    samples += _samples("bwrap", _static(6, 0))
    return Results(run={"run_id": "r1"}, samples=samples)


def test_intervals_come_from_the_recorded_metadata() -> None:
    iv = leak_intervals(_run())
    c = iv[("container", "hardening=true")]
    assert c.value == pytest.approx(100 * 5 / 12, abs=0.01)  # stored rounded to 0.01
    assert (c.low, c.high) == pytest.approx((30.0, 100 * 5 / 12), abs=0.01)  # meminfo left out .. leaking
    assert c.uncertain == ("meminfo",)
    assert iv[("bwrap", "")].known and iv[("bwrap", "")].low == iv[("bwrap", "")].high == 100.0


def test_headline_cells_and_findings_show_the_interval_and_say_cannot_rank() -> None:
    res = _run()
    h = build_headline(res)
    c, r, b = (h.figure(d, LEAK) for d in ("container", "runc", "bwrap"))
    assert c is not None and r is not None and b is not None
    assert c.detail == "[30.0, 41.7]" and "meminfo" in c.tip
    assert r.detail.startswith("[33.3, ")
    assert c.verdict == "better"  # disjoint from the host's 90%
    said = " ".join(findings(h, res.run))
    assert "Cannot rank runc and container apart: their intervals overlap." in said
    assert "{runc, container} < bwrap" in said
    assert "none is ranked" not in said  # the leak score has its own interval


def test_a_score_whose_interval_meets_native_is_unsure() -> None:
    samples = _samples("host", [*_static(2, 2), _corr("loadavg", 0.9, 0.4, 0.97)])
    samples += _samples("runc", [*_static(2, 2), _corr("loadavg", 0.9, 0.75, 0.97)])
    h = build_headline(Results(run={}, samples=samples))
    fig = h.figure("runc", LEAK)
    assert fig is not None and fig.verdict == "unsure"


def test_a_version_4_run_renders_with_its_bounds_as_the_interval(tmp_path: Path) -> None:
    """The leak scores of the quick run of the whole matrix (2026-11-30 18:27, schema 4)."""
    doc = json.loads((DATA / "results_v4_leakage_scores.json").read_text())
    assert doc["schema_version"] == 4
    run = tmp_path / "run"
    run.mkdir()
    (run / RESULTS).write_text(json.dumps(doc))
    res = load_results(run)
    iv = leak_intervals(res)
    assert (iv[("runc", "")].low, iv[("runc", "")].high) == (38.04, 51.09)
    said = " ".join(overview(res).findings)
    assert "runc 43.8% [38.0, 51.1]" in said
    assert "Cannot rank" in said and "container, runc and docker" in said
    paths = render(res, tmp_path / "out")
    html = paths.html.read_text()
    assert "[38.0, 51.1]" in html and "Cannot rank" in html


def test_a_version_2_run_renders_without_an_interval(tmp_path: Path) -> None:
    doc = json.loads((DATA / "results_v2_leakage.json").read_text())
    (tmp_path / RESULTS).write_text(json.dumps(doc))
    res = load_results(tmp_path)
    assert all(math.isnan(i.low) for i in leak_intervals(res).values())
    said = " ".join(overview(res).findings)
    assert "container 27.1% , runc" not in said
    assert "recorded no interval" in said
    assert "Cannot rank" not in said


def test_history_bands_the_leak_score_and_rings_only_a_disjoint_run(tmp_path: Path) -> None:
    from isobench.reports.history import TRENDS, trend_points
    from isobench.reports.plots.trends import changed

    def run(run_id: str, r: float, lo: float, hi: float) -> Results:
        samples = _samples("runc", [*_static(4, 6), _corr("meminfo", r, lo, hi)])
        return Results(run={"run_id": run_id}, samples=samples)

    trend = next(t for t in TRENDS if t.metric == "leakage.score")
    near = run("a", 0.9, 0.7, 0.97)  # 6/12 [4/10, 6/12]: meminfo left out .. leaking
    also_near = run("b", 0.3, -0.2, 0.6)  # 4/12 [4/12, 4/10]: closed .. left out
    certain = run("c", 0.3, -0.2, 0.4)  # 4/12 exactly
    a, b, c = (trend_points([x], trend)[0] for x in (near, also_near, certain))
    assert a.n == 1 and a.evidence_interval and (a.ci_low, a.ci_high) == (40.0, 50.0)
    assert b.median == pytest.approx(33.33) and b.ci_high == 40.0
    assert not changed(a, b)  # the score moved 17 points, but the intervals meet
    far = Results(run={"run_id": "d"}, samples=_samples("runc", _static(9, 1)))
    d = trend_points([far], trend)[0]
    assert changed(c, d)  # 33% exactly, then 90% exactly: beyond either run
