"""benchmarks/gate_validity.py's own plumbing (its measurements are real runs, not tests): the help
text (argparse once crashed on the rules' percent signs) and the table of a kept pairs.json."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gate_validity.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_help_shows_the_default_rules() -> None:
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    assert "startup.*:5%,cpu.*:5%" in res.stdout


def _pair(kind: str, code: int, gate: list[str], load: list[float]) -> dict[str, object]:
    return {
        "kind": kind,
        "exit_code": code,
        "gate_lines": gate,
        "rule_lines": [],
        "on_cpu": any("container/cpu." in g for g in gate),
        "on_startup": any("host/startup." in g for g in gate),
        "load": load,
        "base": "b",
        "cur": "c",
    }


def test_summarize_counts_alarms_per_kind_and_per_injected_figure(tmp_path: Path) -> None:
    cpu = "isobench: gate: container/cpu.events_per_second [variant=all]: slower by -9% (p=1e-3), violates x"
    host_cpu = "isobench: gate: host/cpu.events_per_second [variant=all]: slower by -40% (p=1e-6), violates x"
    pairs = [
        _pair("A/A", 0, [], [2.0, 2.5, 3.0]),
        _pair("A/B", 1, [cpu], [3.0, 3.0, 3.1]),
        _pair("A/A", 1, [host_cpu], [3.1, 3.0, 8.8]),  # a false alarm as the load rose
        _pair("A/B", 1, [cpu, host_cpu], [8.8, 4.0, 4.2]),
        _pair("A/A", 3, [], [4.2, 4.0, 4.0]),  # cannot judge: neither a pass nor an alarm
        _pair("A/B", 0, [], [4.0, 4.0, 4.0]),
    ]
    kept = tmp_path / "pairs.json"
    kept.write_text(json.dumps(pairs))
    res = _run("--summarize", str(kept))
    assert res.returncode == 0, res.stderr
    rows = {line[:24].strip(): line[24:].split() for line in res.stdout.splitlines()[3:]}
    assert "load average over the pairs: 2.00 to 8.80" in res.stdout
    # compares (judged), alarms, rate, CI low, CI high, cannot judge
    assert rows["false alarms (A/A)"][:3] == ["2", "1", "50%"]
    assert rows["false alarms (A/A)"][-1] == "1"
    assert "[  9%,  91%]" in res.stdout  # Wilson's 95% interval of 1 in 2
    assert rows["detections (A/B)"][:3] == ["3", "2", "67%"]
    assert rows["on container cpu"][:3] == ["3", "2", "67%"]
    assert rows["on a figure not injected"][:3] == ["3", "1", "33%"]
    assert rows["on container cpu alone"][:3] == ["3", "1", "33%"]  # the other one moved the host too
    assert "on host start-up" not in rows  # no start delay was injected


def test_summarize_shows_the_measured_size_of_in_run_changes(tmp_path: Path) -> None:
    # An in-run pair (one A/B run) has no load between its runs and keeps each gated figure's change.
    cpu = "container/cpu.events_per_second [variant=single]"
    pairs = []
    for i, change in enumerate((-0.08, -0.10, -0.12)):
        aa = _pair("A/A", 0, [], [1.0, float("nan"), 1.5])
        aa["effects"] = {cpu: 0.01 * i}
        ab = _pair("A/B", 1, [f"isobench: gate: {cpu}: slower, violates x"], [1.5, float("nan"), 2.0])
        ab["effects"] = {cpu: change}
        pairs += [aa, ab]
    kept = tmp_path / "pairs.json"
    kept.write_text(json.dumps(pairs))
    res = _run("--summarize", str(kept))
    assert res.returncode == 0, res.stderr
    assert "load average over the pairs: 1.00 to 2.00" in res.stdout
    out = res.stdout.splitlines()
    ab_at = out.index("A/B pairs, change B/A per gated figure (median, range over 3 pairs):")
    assert out[ab_at + 1].split()[-4:] == ["-10.0%", "[", "-12.0%,", "-8.0%]"]
    aa_at = out.index("A/A pairs, change B/A per gated figure (median, range over 3 pairs):")
    assert out[aa_at + 1].split()[-4:] == ["+1.0%", "[", "+0.0%,", "+2.0%]"]


def test_the_neighbour_stops_its_stress_ng(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gate_validity", SCRIPT)
    assert spec and spec.loader
    gv = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gate_validity", gv)  # dataclasses look their module up
    spec.loader.exec_module(gv)

    class FakeRng:  # off 10 ms, then on for 60 s, then off for a minute
        def __init__(self) -> None:
            self.draws = iter([0.01, 60.0, 60.0])

        def uniform(self, low: float, high: float) -> float:
            return next(self.draws)

    n = gv.Neighbour(seed=1)
    n.stop()  # a neighbour stopped before its first switch starts nothing
    assert n._proc is None
    monkeypatch.setattr(gv.random, "Random", lambda seed: FakeRng())
    n = gv.Neighbour(seed=1)
    deadline = time.monotonic() + 10
    while n._proc is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc = n._proc
    assert proc is not None and proc.poll() is None  # stress-ng is running
    n.stop()
    assert proc.poll() is not None  # and is gone after stop()


def test_history_refuses_in_run_pairs(tmp_path: Path) -> None:
    # An in-run pair is one A/B run (base == cur): there is no second run to judge against history.
    pair = _pair("A/A", 0, [], [1.0, float("nan"), 1.0])
    pair["cur"] = pair["base"]
    kept = tmp_path / "pairs.json"
    kept.write_text(json.dumps([pair]))
    res = _run("--summarize", str(kept), "--history")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "--history re-judges two-run pairs; these pairs are A/B runs (--in-run): judged in one run"
    )
