"""`isobench compare` end to end on results directories: exit codes 0/1/2/3 and a CI-sized output."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner
from isobench import cli
from isobench.model import Sample
from isobench.results import RESULTS, SCHEMA_VERSION, dumps


def _write_run(
    path: Path,
    cells: dict[tuple[str, str], np.ndarray],
    *,
    run: dict[str, Any] | None = None,
    params: Any = None,
    rounds: int | None = None,
) -> Path:
    path.mkdir(parents=True)
    samples = [
        Sample(
            run_id=path.name,
            driver=driver,
            workload=metric.split(".")[0],
            metric=metric,
            value=float(v),
            unit="s",
            repetition=i,
            params=params(i) if params else {},
            metadata={"round": i % rounds if rounds else i},
        ).to_dict()
        for (driver, metric), values in cells.items()
        for i, v in enumerate(values)
    ]
    doc = {"schema_version": SCHEMA_VERSION, "run": run or {"run_id": path.name}, "samples": samples}
    (path / RESULTS).write_text(dumps(doc))
    return path


def _timings(seed: int, n: int, centre: float = 1.0, cov: float = 0.03) -> np.ndarray:
    sigma = math.sqrt(math.log1p(cov**2))
    return centre * np.random.default_rng(seed).lognormal(0, sigma, n)


def _quick_like(path: Path, seed: int, metrics: int = 300, n: int = 3) -> Path:
    """A quick run's shape: hundreds of figures at n=3 and some at n=1."""
    cells = {("vm", f"startup.m{i}"): _timings(seed + i, n) for i in range(metrics)}
    cells.update({("vm", f"disk.m{i}"): _timings(seed + 1000 + i, 1) for i in range(50)})
    return _write_run(path, cells)


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def test_quick_run_against_itself_is_cannot_judge_in_a_few_lines(tmp_path: Path) -> None:
    d = _quick_like(tmp_path / "q", 1)
    r = _invoke("compare", str(d), str(d), "--fail-on", "*:10%")
    assert r.exit_code == 3, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) <= 8, r.output
    assert "350 figures compared (unit: sample): 0 no significant change, 350 cannot judge" in r.output
    assert "rule '*:10%': 350 figures, 0 failed, 0 passed, 350 cannot judge" in r.output
    assert "gate: cannot judge (exit 3" in r.output
    # --all lists every figure.
    r = _invoke("compare", str(d), str(d), "--fail-on", "*:10%", "--all")
    assert r.exit_code == 3 and len(r.output.splitlines()) > 350


def test_regression_fails_with_exit_1_and_shows_only_what_changed(tmp_path: Path) -> None:
    cells = {("vm", f"startup.m{i}"): _timings(i, 10) for i in range(20)}
    base = _write_run(tmp_path / "base", cells)
    cur_cells = {k: _timings(100 + i, 10) for i, k in enumerate(cells)}
    cur_cells[("vm", "startup.m4")] = _timings(7, 10) * 1.2
    cur = _write_run(tmp_path / "cur", cur_cells)
    r = _invoke("compare", str(base), str(cur), "--fail-on", "startup.*:5%")
    assert r.exit_code == 1, r.output
    assert "vm/startup.m4" in r.output and "vm/startup.m5" not in r.output
    assert "isobench: gate: vm/startup.m4: slower by +" in r.output
    assert "gate: FAIL (exit 1" in r.output


def test_clean_compare_passes_with_exit_0(tmp_path: Path) -> None:
    cells = {("vm", "startup.total"): _timings(1, 10)}
    base = _write_run(tmp_path / "base", cells)
    cur = _write_run(tmp_path / "cur", {("vm", "startup.total"): _timings(2, 10)})
    r = _invoke("compare", str(base), str(cur), "--fail-on", "startup.*:5%")
    assert r.exit_code == 0, r.output
    assert "no figure changed significantly" in r.output and "gate: pass (exit 0" in r.output
    assert "detectable change (80% power): " in r.output and "% worst (vm/startup.total)" in r.output


def test_several_runs_per_side(tmp_path: Path) -> None:
    base = [_write_run(tmp_path / f"b{i}", {("vm", "startup.total"): _timings(i, 5)}) for i in range(5)]
    cur = [
        _write_run(tmp_path / f"c{i}", {("vm", "startup.total"): _timings(50 + i, 5) * 1.3}) for i in range(5)
    ]
    args = [a for b in base for a in ("--baseline", str(b))] + [a for c in cur for a in ("-c", str(c))]
    r = _invoke("compare", *args, "--fail-on", "startup.*:5%")
    assert r.exit_code == 1, r.output
    assert "(unit: run)" in r.output and "(n=5)" in r.output


def test_ab_run(tmp_path: Path) -> None:
    drift = 1 + 0.5 * np.random.default_rng(3).random(10)
    values = np.concatenate([drift, drift * 1.1])
    d = _write_run(
        tmp_path / "ab",
        {("container", "startup.total"): values},
        run={"run_id": "ab", "ab": {"labels": ["A", "B"]}},
        params=lambda i: {"ab": "A" if i < 10 else "B"},
        rounds=10,  # sample i of A and sample i + 10 of B ran in round i
    )
    r = _invoke("compare", str(d), "--ab", "A,B", "--fail-on", "startup.*:5%")
    assert r.exit_code == 1, r.output
    assert "(unit: round)" in r.output and "+10.0%" in r.output


def test_an_ab_run_as_a_side_stands_for_its_first_configuration(tmp_path: Path) -> None:
    """Its cells carry ab=A / ab=B, which no plain run's match: compared as one side, its first
    configuration (its headline's) is the run, and the command says so and how to compare A and B."""
    base = _write_run(tmp_path / "base", {("container", "startup.total"): _timings(1, 10)})
    a, b = _timings(2, 10), _timings(3, 10) * 1.5
    ab = _write_run(
        tmp_path / "ab",
        {("container", "startup.total"): np.concatenate([a, b])},
        run={"run_id": "ab", "ab": {"labels": ["A", "B"]}},
        params=lambda i: {"ab": "A" if i < 10 else "B"},
        rounds=10,
    )
    r = _invoke("compare", str(base), str(ab), "--fail-on", "startup.*:5%")
    assert r.exit_code == 0, r.output  # A is like the base; B's +50% is not this comparison's
    text = " ".join(r.output.split())
    assert "note: ab is an A/B run: its first configuration (A) stands for it" in text
    assert f"isobench compare {ab} --ab A,B" in text
    assert "1 figure compared (unit: sample): 1 no significant change" in text and "only in" not in text
    assert "rule 'startup.*:5%': 1 figure, 0 failed, 1 passed" in text


def test_bad_invocations_are_one_line_usage_errors(tmp_path: Path) -> None:
    d = _quick_like(tmp_path / "q", 1, metrics=2)
    for args in (
        [str(d)],
        [str(d), str(d), str(d)],
        [str(d), "--baseline", str(d), "--current", str(d)],
        ["--baseline", str(d)],
        [str(d), str(d), "--ab", "A,B"],
        [str(d), "--ab", "A"],
        [str(d), "--ab", "A,B"],  # not an A/B run
        [str(d), str(d), "--fail-on", "startup"],
        [str(d), "--ab", "A,B", "--history", str(d)],
    ):
        r = _invoke("compare", *args)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.startswith("isobench: error: ") and len(r.output.strip().splitlines()) == 1


def test_one_run_per_side_with_history(tmp_path: Path) -> None:
    # The baseline and the current run differ by 8%, as two runs of the same code do on a busy host;
    # the trend folder's earlier runs show such moves, so with --history there is no alarm.
    trend = tmp_path / "trend"
    levels = [1.0, 1.09, 0.94, 1.05, 0.97, 1.1, 0.92]
    for i, level in enumerate(levels):
        _write_run(trend / f"old{i}", {("vm", "startup.total"): _timings(i, 20, centre=level, cov=0.01)})
    base = _write_run(trend / "base", {("vm", "startup.total"): _timings(90, 20, cov=0.01)})
    cur = _write_run(tmp_path / "cur", {("vm", "startup.total"): _timings(91, 20, centre=1.08, cov=0.01)})
    alone = _invoke("compare", str(base), str(cur), "--fail-on", "startup.*:5%")
    assert alone.exit_code == 1, alone.output
    r = _invoke("compare", str(base), str(cur), "--fail-on", "startup.*:5%", "--history", str(trend))
    assert r.exit_code == 0, r.output
    # The trend folder holds the baseline itself: it is not counted twice.
    assert "(with 7 earlier baseline runs)" in r.output and "(unit: run)" in r.output
    broken = trend / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    r = _invoke("compare", str(base), str(cur), "--fail-on", "startup.*:5%", "--history", str(trend))
    assert r.exit_code == 0, r.output
    assert "(with 7 earlier baseline runs; 1 unreadable skipped)" in r.output
    far = _write_run(tmp_path / "far", {("vm", "startup.total"): _timings(92, 20, centre=1.6, cov=0.01)})
    r = _invoke("compare", str(base), str(far), "--fail-on", "startup.*:5%", "--history", str(trend))
    assert r.exit_code == 1, r.output
    bad = _invoke("compare", str(base), str(cur), "--history", str(tmp_path / "missing"))
    assert bad.exit_code == 2 and bad.output.startswith("isobench: error: ")
