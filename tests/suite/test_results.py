import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from isobench.errors import ResultsError
from isobench.model import Measurement, Sample
from isobench.results import JOURNAL, SCHEMA_VERSION, Journal, finalize, load_results, read_journal


def _sample(i: int, value: float | None = 1.5) -> Sample:
    return Sample(
        run_id="r1",
        driver="host",
        workload="cpu",
        metric="cpu.time",
        value=value,
        unit="s",
        repetition=i,
        params={"threads": 1},
        metadata={"accel": None},
    )


def test_roundtrip_through_journal_and_document(tmp_path: Path) -> None:
    j = Journal(tmp_path, {"run_id": "r1", "started": 1.0})
    for i in range(3):
        j.append(_sample(i))
    j.append(Sample.failure(run_id="r1", driver="vm", workload="cpu", repetition=0, error="boom"))
    j.close("complete")
    res = finalize(tmp_path)
    assert res.run["status"] == "complete"
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    loaded = load_results(tmp_path)
    assert loaded.samples == res.samples
    assert len(list(loaded.measured())) == 3
    assert [s.error for s in loaded.failures()] == ["boom"]
    csv = (tmp_path / "samples.csv").read_text().splitlines()
    assert csv[0].startswith("run_id,driver,workload,metric,value")
    assert len(csv) == 5


def test_nan_is_stored_as_null_not_invalid_json(tmp_path: Path) -> None:
    j = Journal(tmp_path, {"run_id": "r1"})
    s = Sample(
        run_id="r1",
        driver="h",
        workload="w",
        metric="m",
        value=1.0,
        unit="s",
        repetition=0,
        metadata={"r": float("nan")},
    )
    j.append(s)
    j.close("complete")
    finalize(tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())  # strict JSON parse
    assert doc["samples"][0]["metadata"]["r"] is None


def test_measurement_rejects_nan() -> None:
    with pytest.raises(ValueError, match="no numeric value"):
        Measurement("x", float("nan"), "s")


def test_torn_last_line_is_dropped_and_run_marked_interrupted(tmp_path: Path) -> None:
    j = Journal(tmp_path, {"run_id": "r1", "started": 1.0})
    j.append(_sample(0))
    j.append(_sample(1))
    j._f.write('{"type": "sample", "run_id": "r1", "dri')  # the writer died mid-line
    j._f.flush()
    res = read_journal(tmp_path / JOURNAL)
    assert [s.repetition for s in res.samples] == [0, 1]
    assert res.run["status"] == "interrupted"


def test_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / JOURNAL
    p.write_text('{"type":"header","schema_version":1,"run":{}}\nnot json\n{"type":"end"}\n')
    with pytest.raises(ResultsError, match="corrupt journal line"):
        read_journal(p)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99, "run": {}, "samples": []}))
    with pytest.raises(ResultsError, match="schema version 99"):
        load_results(tmp_path)


def test_not_a_results_dir(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="not an isobench results directory"):
        load_results(tmp_path)


def test_journal_survives_sigkill_and_finalizes_later(tmp_path: Path) -> None:
    """A real kill: a child appends samples (fsync'd) and is SIGKILLed; nothing it wrote is lost."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from isobench.model import Sample
        from isobench.results import Journal
        j = Journal(Path({str(tmp_path)!r}), {{"run_id": "k1", "started": time.time()}})
        for i in range(1000000):
            j.append(Sample(run_id="k1", driver="host", workload="cpu", metric="cpu.time",
                            value=float(i), unit="s", repetition=i))
            if i == 20:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    res = finalize(tmp_path)
    assert res.run["status"] == "interrupted"
    values = [s.value for s in res.samples]
    assert len(values) >= 21
    assert values == [float(i) for i in range(len(values))]  # contiguous: nothing lost, no gaps
    assert load_results(tmp_path).samples == res.samples


def test_schema_1_documents_and_journals_still_load(tmp_path: Path) -> None:
    """Version 2 only added keys (run order, budget, A/B; round and slot in metadata); 3 added fleet keys, 4 changed
    what the leakage samples hold (tests/leakage/test_report.py loads a version 2 run)."""
    assert SCHEMA_VERSION >= 2
    v1 = {
        "schema_version": 1,
        "run": {"run_id": "old", "config": {"repetitions": 5}},
        "samples": [_sample(0).to_dict(), _sample(1).to_dict()],
    }
    (tmp_path / "results.json").write_text(json.dumps(v1))
    old = load_results(tmp_path)
    assert old.run_id == "old" and "budget" not in old.run
    assert [s.repetition for s in old.measured()] == [0, 1]
    journal = tmp_path / "j" / JOURNAL
    journal.parent.mkdir()
    journal.write_text(
        '{"type": "header", "schema_version": 1, "run": {"run_id": "old"}}\n'
        + json.dumps({"type": "sample", **_sample(0).to_dict()})
        + "\n"
    )
    assert len(read_journal(journal).samples) == 1


def test_an_old_journal_keeps_its_schema_when_finalised(tmp_path: Path) -> None:
    """`isobench finalize` by a newer isobench must not relabel an old run's definitions."""
    header = {"type": "header", "schema_version": 7, "run": {"run_id": "r1"}}
    sample = {"type": "sample", **_sample(0).to_dict()}
    (tmp_path / JOURNAL).write_text(json.dumps(header) + "\n" + json.dumps(sample) + "\n")
    assert read_journal(tmp_path / JOURNAL).schema_version == 7
    finalize(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["schema_version"] == 7
    assert load_results(tmp_path).schema_version == 7


def test_a_journal_still_being_written_reads_as_running_not_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from isobench import cli
    from isobench.liveruns import register

    registry = tmp_path / "live"
    monkeypatch.setenv("ISOBENCH_LIVE_DIR", str(registry))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    j = Journal(run_dir, {"run_id": "r-live", "started": 1.0})
    j.append(_sample(0))
    with register("r-live", tmp_path / "state", registry):  # this process is the run's writer
        assert load_results(run_dir).run["status"] == "running"
        # finalize is for a killed run: a live one writes its results.json itself when it ends
        r = CliRunner().invoke(cli.main, ["finalize", str(run_dir)])
        assert r.exit_code == 2, r.output
        assert "is still running and writes results.json itself when it ends" in r.output
        assert not (run_dir / "results.json").exists()
    # its writer gone without an end record: a killed run, which finalize then writes out
    assert load_results(run_dir).run["status"] == "interrupted"
    r = CliRunner().invoke(cli.main, ["finalize", str(run_dir)])
    assert r.exit_code == 0 and "1 sample, status interrupted" in r.output
