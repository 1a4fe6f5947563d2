"""The view across runs: headline figures over several results directories, in time order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from isobench import cli
from isobench.errors import ResultsError
from isobench.model import Sample
from isobench.reports.history import TRENDS, detect_step, load_runs, render_history, trend_points
from isobench.reports.plots.trends import changed
from isobench.results import RESULTS, SCHEMA_VERSION, dumps

PNG = b"\x89PNG\r\n\x1a\n"


def _write_run(
    root: Path,
    run_id: str,
    started: float,
    startup_s: dict[str, float],
    startup_n: int = 5,
    kernel: str = "6.1",
) -> Path:
    samples = []
    for driver, centre in startup_s.items():
        for i, jitter in enumerate((0.99, 1.0, 1.01, 1.0, 0.995)[:startup_n]):
            samples.append(
                Sample(
                    run_id=run_id,
                    driver=driver,
                    workload="startup",
                    metric="startup.to_ready",
                    value=centre * jitter,
                    unit="seconds",
                    repetition=i,
                )
            )
        samples.append(
            Sample(
                run_id=run_id,
                driver=driver,
                workload="cpu",
                metric="cpu.events_per_second",
                value=1000.0 if driver != "vm" else 130.0,
                unit="ops_per_second",
                repetition=0,
                better="higher",
                params={"variant": "single", "threads": 1},
            )
        )
    run = {"run_id": run_id, "started": started, "status": "complete", "host": {"kernel": kernel}}
    d = root / run_id
    d.mkdir(parents=True)
    doc = {"schema_version": SCHEMA_VERSION, "run": run, "samples": [s.to_dict() for s in samples]}
    (d / RESULTS).write_text(dumps(doc))
    return d


@pytest.fixture
def three_runs(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    # Written out of time order: the history must sort by start, not by name.
    _write_run(root, "c-first", 1.0e9, {"host": 0.002, "container": 0.010, "vm": 3.0})
    _write_run(root, "a-second", 1.0e9 + 86400, {"host": 0.002, "container": 0.010, "vm": 3.0})
    _write_run(root, "b-third", 1.0e9 + 2 * 86400, {"host": 0.002, "container": 0.010, "vm": 3.9})
    return root


def test_runs_are_ordered_by_start_and_the_regression_is_ringed(three_runs: Path) -> None:
    runs = load_runs([three_runs])
    assert [r.run_id for r in runs] == ["c-first", "a-second", "b-third"]
    to_ready = next(t for t in TRENDS if t.metric == "startup.to_ready")
    pts = {(p.driver, p.run): p for p in trend_points(runs, to_ready)}
    assert pts[("vm", 2)].median == pytest.approx(3.9)
    assert pts[("vm", 0)].ci_low < 3.0 < pts[("vm", 0)].ci_high
    assert changed(pts[("vm", 1)], pts[("vm", 2)])
    assert not changed(pts[("container", 1)], pts[("container", 2)])
    # The all-vCPU trend has no points: its params filter matches no cell.
    all_vcpus = next(t for t in TRENDS if t.title == "CPU, all vCPUs")
    assert trend_points(runs, all_vcpus) == []


def test_history_writes_one_png_per_group_and_a_self_contained_page(three_runs: Path, tmp_path: Path) -> None:
    paths = render_history([three_runs], tmp_path / "out")
    assert {p.name for p in paths.plots} == {"history-startup.png", "history-cpu.png"}
    for p in paths.plots:
        assert p.read_bytes().startswith(PNG)
    html = paths.html.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)
    assert html.count('src="data:image/png;base64,') == 2
    assert html.index("c-first") < html.index("a-second") < html.index("b-third")
    assert "1 ringed point(s)" in html
    # What moved in the latest run comes first, in words, with its direction.
    assert paths.findings == ("vm start to ready: +30% vs the run before (worse)",)
    assert html.index('id="headline"') < html.index("<p>The headline figures") < html.index('id="runs"')
    assert html.index('id="runs"') < html.index("<figure")
    assert paths.besides == () and 'class="besides"' not in html  # same host, same settings


def test_a_change_native_shares_is_said_to_be_the_machines(tmp_path: Path) -> None:
    # two default runs of one host at different hours: every driver's CPU +17-22%, the host's +18%
    root = tmp_path / "results"
    _write_run(root, "before", 1.0e9, {"host": 0.002, "container": 0.010, "vm": 3.0})
    _write_run(root, "after", 1.0e9 + 86400, {"host": 0.0015, "container": 0.0075, "vm": 3.9})
    paths = render_history([root], tmp_path / "out")
    assert paths.findings == (
        "host start to ready: -25% vs the run before (better)",
        "container start to ready: -25% vs the run before (better; native moved -25% too)",
        # the other way from native's: not explained by it
        "vm start to ready: +30% vs the run before (worse)",
    )


def test_history_says_what_else_changed_before_the_latest_run(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write_run(root, "before", 1.0e9, {"host": 0.002, "vm": 3.0})
    _write_run(root, "after", 1.0e9 + 86400, {"host": 0.002, "vm": 3.9}, kernel="6.2")
    paths = render_history([root], tmp_path / "out")
    assert paths.findings == ("vm start to ready: +30% vs the run before (worse)",)
    said = (
        "the host differs between the latest run and the one before (kernel 6.1 vs 6.2): a change may be "
        "the host's, not the code's"
    )
    assert paths.besides == (said,)
    html = paths.html.read_text()
    assert f'<p class="besides">Also: {said}.</p>' in html.replace("&#x27;", "'")
    assert html.index('class="besides"') < html.index('id="runs"')  # in "What changed", at the top
    res = CliRunner().invoke(
        cli.main, ["history", str(root), "-o", str(tmp_path / "o2")], catch_exceptions=False
    )
    assert f"warning: {said}" in " ".join(res.output.split())


def _make_ab(run_dir: Path, labels: tuple[str, str], slower_b: float) -> None:
    """Rewrite a plain run as an A/B run: every sample twice, ``ab`` = each label (B's start-up
    ``slower_b`` times A's), and A's configuration with 1024 MiB of memory."""
    doc = json.loads((run_dir / RESULTS).read_text())
    a, b = labels
    samples = []
    for s in doc["samples"]:
        samples.append(s | {"params": {**s["params"], "ab": a}})
        slow = slower_b if s["workload"] == "startup" else 1.0
        samples.append(s | {"params": {**s["params"], "ab": b}, "value": s["value"] * slow})
    doc["samples"] = samples
    doc["run"]["config"] = {"memory_mib": 512, "driver_options": {}}
    sandbox = {"vcpus": 1, "memory_mib": 1024, "cpuset": None}
    doc["run"]["ab"] = {
        "labels": list(labels),
        "configs": {label: {"sandbox": sandbox, "drivers": {}, "workloads": {}} for label in labels},
    }
    (run_dir / RESULTS).write_text(dumps(doc))


def test_an_ab_run_continues_the_plain_runs_lines_with_its_first_configuration(tmp_path: Path) -> None:
    """Its report's headline shows configuration A; so does history, on the plain runs' lines (not
    lines of its own named ab=A and ab=B), under A's settings."""
    root = tmp_path / "results"
    plain = _write_run(root, "plain", 1.0e9, {"host": 0.002, "vm": 3.0})
    doc = json.loads((plain / RESULTS).read_text())
    doc["run"]["config"] = {"memory_mib": 512, "driver_options": {}}
    (plain / RESULTS).write_text(dumps(doc))
    _make_ab(_write_run(root, "ab", 1.0e9 + 86400, {"host": 0.002, "vm": 3.0}), ("base", "slow"), 1.5)
    runs = load_runs([root])
    to_ready = next(t for t in TRENDS if t.metric == "startup.to_ready")
    pts = trend_points(runs, to_ready)
    assert {(p.driver, p.variant) for p in pts} == {("host", ""), ("vm", "")}
    assert sorted(p.median for p in pts if p.run == 1) == pytest.approx([0.002, 3.0])  # A, not B
    paths = render_history([root], tmp_path / "out")
    assert paths.findings == ()  # B's +50% is the A/B run's question, not a change between runs
    assert paths.besides == (
        "the latest run and the one before ran under different settings (memory_mib 512 vs 1024): a "
        "change may be the setting's, not the code's",
    )
    assert "A/B run: base shown, of base, slow" in paths.html.read_text()


def test_quiet_runs_say_nothing_changed(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for i in range(3):
        _write_run(root, f"run-{i}", 1.0e9 + i, {"host": 0.002, "vm": 3.0})
    paths = render_history([root], tmp_path / "out")
    assert paths.findings == ()
    # start-up (n=5) is judged on both drivers; CPU, measured once a run, cannot be
    assert paths.verdict == (
        "Nothing beyond the noise: none of the 2 headline figures of the latest run that could be "
        "judged has an interval disjoint from the run before's, and no step. 2 more figures "
        "could not be judged: one of the two runs measured each once."
    )
    assert "<p>Nothing beyond the noise: none of the 2" in paths.html.read_text()


def test_runs_measured_once_are_not_called_quiet(tmp_path: Path) -> None:
    # Two interrupted runs with one start each: no interval, so no verdict either way.
    root = tmp_path / "results"
    for i, vm in enumerate((3.0, 4.5)):
        _write_run(root, f"run-{i}", 1.0e9 + i, {"host": 0.002, "vm": vm}, startup_n=1)
    paths = render_history([root], tmp_path / "out")
    assert paths.verdict.startswith("Cannot tell yet: no headline figure of the latest run has an interval")
    assert "Nothing beyond the noise" not in paths.html.read_text()


def test_one_run_says_there_is_nothing_to_compare_yet(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write_run(root, "run-0", 1.0e9, {"host": 0.002, "vm": 3.0})
    html = render_history([root], tmp_path / "out").html.read_text()
    assert '<section id="headline"><h2>What changed</h2><p>One run only' in html


def test_a_latest_run_with_new_lines_only_is_not_said_to_be_measured_once(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write_run(root, "run-0", 1.0e9, {"host": 0.002})
    _write_run(root, "run-1", 1.0e9 + 1, {"vm": 3.0})  # another driver: nothing to set it against
    paths = render_history([root], tmp_path / "out")
    assert paths.verdict.startswith(
        "Cannot tell yet: no headline figure of the latest run was measured in a run before it"
    )


def test_same_run_given_twice_counts_once(three_runs: Path) -> None:
    runs = load_runs([three_runs / "a-second", three_runs / "a-second"])
    assert [r.run_id for r in runs] == ["a-second"]


def test_a_broken_run_in_a_folder_is_skipped_but_a_named_one_fails(three_runs: Path, tmp_path: Path) -> None:
    broken = three_runs / "d-broken"
    broken.mkdir()
    (broken / RESULTS).write_text('{"schema_version": 99, "run": {}, "samples": []}')
    paths = render_history([three_runs], tmp_path / "out")
    assert len(paths.runs) == 3 and len(paths.skipped) == 1 and "d-broken" in paths.skipped[0]
    assert 'id="skipped"' in paths.html.read_text()
    with pytest.raises(ResultsError, match="schema version 99"):
        load_runs([broken])


def test_a_directory_without_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no isobench results"):
        load_runs([tmp_path])


def test_cli_history(three_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "hist"
    res = CliRunner().invoke(cli.main, ["history", str(three_runs), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "3 runs, 2 charts" in res.output
    assert "changed: vm start to ready: +30% vs the run before (worse)" in res.output
    # CPU, measured once a run, is said to be unjudged rather than left out
    assert "3 more figures could not be judged: one of the two runs measured each once." in res.output
    assert (out / "history.html").exists() and (out / "plots" / "history-startup.png").exists()


def test_cli_history_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli.main, ["history", str(tmp_path / "missing"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "isobench: error:" in res.output


@pytest.mark.parametrize(
    ("medians", "expected"),
    [
        ([3.0, 3.02, 2.98, 3.9, 3.92, 3.88], (3, 1.3)),  # a regression from the fourth run on
        ([1.0, 1.01, 0.99, 1.0, 1.02, 0.98], None),  # noise only
        ([1.0, 1.0, 1.0, 1.5, 1.0, 1.0], None),  # one outlier is no step
        ([1.0, 1.0, 1.0], None),  # too short to tell
        ([2.0, 2.0, 1.0, 1.0], (2, 0.5)),
    ],
)
def test_detect_step(medians: list[float], expected: tuple[int, float] | None) -> None:
    step = detect_step(medians)
    if expected is None:
        assert step is None
    else:
        assert step is not None
        assert (step.at, step.ratio) == (expected[0], pytest.approx(expected[1], rel=0.02))


def test_history_names_a_step_that_persists(tmp_path: Path) -> None:
    root = tmp_path / "results"
    for i, vm in enumerate((3.0, 3.0, 3.0, 3.9, 3.9)):
        _write_run(root, f"run-{i}", 1.0e9 + i * 3600, {"host": 0.002, "vm": vm})
    html = render_history([root], tmp_path / "out").html.read_text()
    assert "Steps (dashed line" in html and "step: vm start to ready: +30% from run 4 (worse)" in html


def test_history_says_when_a_figure_was_redefined_between_the_two_runs(tmp_path: Path) -> None:
    """Results schema 12 made a container's idle memory its footprint, not its usage counter: the
    latest run's drop is by construction, and history says so beside it."""
    root = tmp_path / "results"
    for i, (schema, kib) in enumerate(((11, 512.0), (12, 84.0))):
        samples = [
            Sample(
                run_id=f"r{i}",
                driver="container",
                workload="idle-memory",
                metric="idle-memory.host_view",
                value=kib * 1024 * jitter,
                unit="bytes",
                repetition=rep,
            ).to_dict()
            for rep, jitter in enumerate((0.99, 1.0, 1.01))
        ]
        run = {"run_id": f"r{i}", "started": 1.0e9 + i, "status": "complete"}
        (root / f"r{i}").mkdir(parents=True)
        doc = {"schema_version": schema, "run": run, "samples": samples}
        (root / f"r{i}" / RESULTS).write_text(dumps(doc))
    paths = render_history([root], tmp_path / "out")
    (said,) = paths.besides
    assert said.startswith(
        "results schema 12 redefined 1 figure(s) these runs compare (idle-memory.host_view)"
    )
    assert "by construction, not a regression" in said
