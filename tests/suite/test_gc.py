"""``isobench gc``: a driver that leaves something keeps its run's state and says what; the leakage
loads' /var/tmp scratch is collected; a journal on a full disk stays whole records."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from isobench.errors import GcIncomplete, ResultsError
from isobench.gc import gc
from isobench.model import Sample
from isobench.results import Journal, read_journal


def _dead_run(state: Path, run_id: str) -> Path:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from isobench.runstate import RunLock
        with RunLock.acquire(Path({str(state)!r}), {run_id!r}):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == -9
    return state / "runs" / run_id


class _Stuck:
    """A driver whose gc removes one thing and cannot remove another."""

    name = "stuck"
    capabilities = None

    def __init__(self, ctx: object) -> None:
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        raise GcIncomplete([f"cgroup /a/{run_id}"], [f"cgroup /b/{run_id}: busy"])


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    import isobench.gc as gcmod

    monkeypatch.setattr(gcmod, "all_drivers", lambda: {"stuck": _Stuck})
    monkeypatch.setattr(gcmod, "leakage_gc", lambda run_id: [])


def test_leftovers_keep_the_run_dir_and_are_listed(tmp_path: Path, stuck: None) -> None:
    run_dir = _dead_run(tmp_path / "state", "dead1")
    report = gc(tmp_path / "state", scratch_root=tmp_path / "vartmp")
    assert report.removed == ["stuck: cgroup /a/dead1"]
    assert report.leftovers == ["stuck: cgroup /b/dead1: busy"]
    assert not report.clean and run_dir.is_dir()
    assert report.kept and "dead1" in report.kept[0]


def test_cli_gc_exits_1_with_one_line_per_leftover(tmp_path: Path) -> None:
    run_dir = _dead_run(tmp_path / "state", "dead2")
    script = textwrap.dedent(f"""
        import sys
        import isobench.gc as gcmod
        from isobench.errors import GcIncomplete
        class Stuck:
            def __init__(self, ctx): pass
            def gc(self, run_id=None): raise GcIncomplete([], ["veth isobx: busy", "dir /x: busy"])
        gcmod.all_drivers = lambda: {{"stuck": Stuck}}
        gcmod.leakage_gc = lambda run_id: []
        from isobench.cli import main
        sys.argv = ["isobench", "gc", "--state-dir", {str(tmp_path / "state")!r}]
        main(prog_name="isobench")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 1, res.stderr
    text = res.stdout + res.stderr
    assert "left: stuck: veth isobx: busy" in text and "left: stuck: dir /x: busy" in text
    assert run_dir.is_dir()


def test_leakage_scratch_in_var_tmp_is_collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import isobench.gc as gcmod

    monkeypatch.setattr(gcmod, "all_drivers", dict)
    monkeypatch.setattr(gcmod, "leakage_gc", lambda run_id: [])
    vartmp = tmp_path / "vartmp"
    mine = vartmp / "isobench-dead3-leak-abc123"
    other = vartmp / "isobench-live9-leak-def456"
    for d in (mine, other):
        d.mkdir(parents=True)
        (d / "isobench-leak-disk.bin").write_bytes(b"x" * 10)
    run_dir = _dead_run(tmp_path / "state", "dead3")
    report = gc(tmp_path / "state", scratch_root=vartmp)
    assert f"leakage scratch: {mine}" in report.removed
    assert not mine.exists() and other.exists() and not run_dir.exists()


def _sample(i: int) -> Sample:
    return Sample(run_id="r", driver="host", workload="w", metric="m", value=float(i), unit="s", repetition=i)


def test_a_full_disk_leaves_whole_journal_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path, {"run_id": "r"})
    journal.append(_sample(0))
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ResultsError, match=r"cannot write the journal .*No space left on device"):
        journal.append(_sample(1))
    monkeypatch.setattr(os, "fsync", real_fsync)
    with pytest.raises(ResultsError):
        journal.append(_sample(2))  # the journal stays failed: no record after a gap
    journal.close("complete")  # a no-op: the end record cannot be trusted to land
    lines = journal.path.read_text().splitlines()
    assert [json.loads(ln)["type"] for ln in lines] == ["header", "sample"]
    results = read_journal(journal.path)
    assert [s.value for s in results.samples] == [0.0] and results.run["status"] == "interrupted"


def test_config_driver_options_reach_every_drivers_gc(tmp_path: Path) -> None:
    # A run whose guests live on another libvirt (drivers.vm.uri) is collected through that URI.
    _dead_run(tmp_path / "state", "dead4")
    (tmp_path / "isobench.toml").write_text('[drivers.probe]\nuri = "test:///default"\n')
    script = textwrap.dedent(f"""
        import sys
        import isobench.gc as gcmod
        class Probe:
            def __init__(self, ctx): self.ctx = ctx
            def gc(self, run_id=None): return [f"{{run_id}} via {{self.ctx.options.get('uri')}}"]
        gcmod.all_drivers = lambda: {{"probe": Probe}}
        gcmod.leakage_gc = lambda run_id: []
        from isobench.cli import main
        sys.argv = ["isobench", "gc", "--state-dir", {str(tmp_path / "state")!r},
                    "--config", {str(tmp_path / "isobench.toml")!r}]
        main(prog_name="isobench")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "removed probe: dead4 via test:///default" in res.stdout


def test_records_are_never_skipped_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A killed writer's temp file goes once a minute old; a torn record is kept and named.
    import isobench.gc as gcmod

    monkeypatch.setattr(gcmod, "all_drivers", dict)
    monkeypatch.setattr(gcmod, "leakage_gc", lambda run_id: [])
    records = tmp_path / "state" / "container" / "live"
    records.mkdir(parents=True)
    old, young = records / ".c1.json.x1y2", records / ".c2.json.z3w4"
    for f in (old, young):
        f.write_text('{"ident": "c')
    os.utime(old, (time.time() - 120, time.time() - 120))
    torn = records / "c3.json"
    torn.write_text('{"ident": "c3", "run_')
    whole = records / "c4.json"
    whole.write_text('{"ident": "c4"}')
    report = gc(tmp_path / "state", scratch_root=tmp_path / "vartmp", registry=tmp_path / "registry")
    assert report.removed == [f"container records: stale temp file {old}"]
    [line] = report.leftovers
    assert line.startswith(f"container records: unparsable record {torn} (kept") and "delete it" in line
    assert not report.clean and torn.exists() and young.exists() and whole.exists() and not old.exists()


def test_cli_gc_exits_1_on_a_torn_record(tmp_path: Path) -> None:
    records = tmp_path / "state" / "container" / "live"
    records.mkdir(parents=True)
    (records / "c5.json").write_text("{")
    script = textwrap.dedent(f"""
        import sys
        import isobench.gc as gcmod
        gcmod.all_drivers = dict
        gcmod.leakage_gc = lambda run_id: []
        from isobench.cli import main
        sys.argv = ["isobench", "gc", "--state-dir", {str(tmp_path / "state")!r}]
        main(prog_name="isobench")
    """)
    env = {**os.environ, "ISOBENCH_LIVE_DIR": str(tmp_path / "registry"), "COLUMNS": "400"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, env=env)
    assert res.returncode == 1, res.stderr
    [line] = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("left:")]
    assert line.startswith(f"left: container records: unparsable record {records / 'c5.json'} (kept")
