import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from isobench.errors import UsageError
from isobench.gc import gc
from isobench.runstate import RunLock, dead_runs, live_runs


def test_lock_marks_run_live_and_cleans_up(tmp_path: Path) -> None:
    with RunLock.acquire(tmp_path, "r1") as lock:
        assert lock.work_dir.is_dir()
        assert live_runs(tmp_path) == ["r1"]
        assert dead_runs(tmp_path) == []
        with pytest.raises(UsageError, match="already has state"), RunLock.acquire(tmp_path, "r1"):
            pass
    assert live_runs(tmp_path) == []
    assert not (tmp_path / "runs" / "r1").exists()


def test_killed_runner_leaves_a_dead_run_that_gc_removes(tmp_path: Path, recording: list[str | None]) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from isobench.runstate import RunLock
        with RunLock.acquire(Path({str(tmp_path)!r}), "dead1") as lock:
            (lock.work_dir / "leftover").write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], check=False)
    assert p.returncode == -9
    assert [d.name for d in dead_runs(tmp_path)] == ["dead1"]
    with RunLock.acquire(tmp_path, "alive"):
        report = gc(tmp_path)
        assert report.live == ["alive"]
        assert (tmp_path / "runs" / "alive").exists()  # a live run is never touched
    assert any("dead1" in r for r in report.removed)
    assert recording == ["dead1"]  # drivers asked about the dead run only
    assert not (tmp_path / "runs" / "dead1").exists()


class _RecordingDriver:
    """Stands in for every driver, so gc tests never touch this host's real resources."""

    name = "rec"
    calls: list[str | None] = []

    def __init__(self, ctx: object) -> None:
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        _RecordingDriver.calls.append(run_id)
        return []


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    import isobench.gc as gcmod

    _RecordingDriver.calls = []
    monkeypatch.setattr(gcmod, "all_drivers", lambda: {"rec": _RecordingDriver})
    monkeypatch.setattr(gcmod, "leakage_gc", lambda run_id: [])
    return _RecordingDriver.calls


def test_plain_gc_never_sweeps_the_host(tmp_path: Path, recording: list[str | None]) -> None:
    # An empty state dir shows no live run, yet a run of another state dir may be alive: a plain gc
    # must not call gc(None) (which removes every isobench resource on the host).
    gc(tmp_path)
    assert recording == []


def test_a_sweep_skips_a_driver_that_cannot_spare_a_live_run(
    tmp_path: Path, recording: list[str | None]
) -> None:
    with RunLock.acquire(tmp_path, "alive"):
        report = gc(tmp_path, sweep_all=True, registry=tmp_path / "no-live-runs")
    assert recording == []  # _RecordingDriver does not say it spares live runs
    assert any(k.startswith("rec: not swept") for k in report.kept)
    gc(tmp_path, sweep_all=True, registry=tmp_path / "no-live-runs")  # the host's may list some
    assert recording == [None]
