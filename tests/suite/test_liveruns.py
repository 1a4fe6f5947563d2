"""The host-wide live-run registry, on a registry dir of the test's own (no root needed), and gc
consulting it: a run live in another state dir is never swept, nor are resources of its id."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext
from isobench.gc import gc
from isobench.hostsys.probe import HostProbe
from isobench.liveruns import (
    LiveRun,
    Sparing,
    live_elsewhere,
    live_runs_anywhere,
    register,
    registry_problems,
    start_time,
)
from isobench.runstate import RunLock


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    reg = tmp_path / "run" / "isobench" / "live"
    monkeypatch.setenv("ISOBENCH_LIVE_DIR", str(reg))  # what RunLock registers in
    return reg


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def plant(registry: Path, name: str, run: LiveRun) -> Path:
    registry.mkdir(parents=True, exist_ok=True)
    path = registry / name
    path.write_text(json.dumps(run.__dict__))
    return path


def test_a_run_is_registered_while_it_holds_its_lock_and_only_then(tmp_path: Path, registry: Path) -> None:
    with RunLock.acquire(tmp_path / "state", "r1"):
        [run] = live_runs_anywhere()
        assert run == LiveRun(
            "r1", os.getpid(), start_time(os.getpid()) or "?", str((tmp_path / "state").resolve())
        )
        assert stat.S_IMODE(registry.stat().st_mode) == 0o700
        assert live_elsewhere(tmp_path / "state") == []  # its own state dir shows it by its lock
        assert live_elsewhere(tmp_path / "other") == [run]
    assert live_runs_anywhere() == [] and list(registry.iterdir()) == []


def test_a_fleet_hosts_run_is_known_by_the_fleet_run_id(
    tmp_path: Path, registry: Path, other_process: subprocess.Popen[bytes]
) -> None:
    """A worker's run id is the fleet's with its host's digits (its resources carry that one); a
    neighbour names it by the fleet's, the id of the results a user can find."""
    with RunLock.acquire(tmp_path / "state", "20261202081417f938", part_of="20261202081417a1b2"):
        [run] = live_runs_anywhere()
        fleet = "20261202081417a1b2"
        assert (run.run_id, run.part_of, run.known_as) == ("20261202081417f938", fleet, fleet)
        assert "part of fleet run 20261202081417a1b2" in run.describe()
    # an entry written before part_of existed reads as a run of its own
    pid = other_process.pid
    old = {"run_id": "r9", "pid": pid, "start": start_time(pid), "state_dir": "/s"}
    (registry / f"r9.{pid}.abc").write_text(json.dumps(old))
    [run] = live_runs_anywhere()
    assert (run.part_of, run.known_as) == ("", "r9")
    plant(registry, "w1.x", LiveRun("w1", other_process.pid, run.start, "/w", part_of="fleet1"))
    assert HostProbe().other_runs() == ["fleet1", "r9"]


def test_the_entry_goes_on_an_exception_too(tmp_path: Path, registry: Path) -> None:
    seen: list[int] = []

    def run() -> None:
        with register("r2", tmp_path):
            seen.append(len(live_runs_anywhere()))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run()
    assert seen == [1] and list(registry.iterdir()) == []


def test_a_killed_runs_entry_is_ignored_and_pruned(tmp_path: Path, registry: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from isobench.runstate import RunLock
        with RunLock.acquire(Path({str(tmp_path / "state")!r}), "dead1"):
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "ISOBENCH_LIVE_DIR": str(registry)}
    assert subprocess.run([sys.executable, "-c", script], env=env, check=False).returncode == -9
    assert len(list(registry.iterdir())) == 1  # SIGKILL: no finally ran
    assert live_runs_anywhere() == []
    assert list(registry.iterdir()) == []


def test_a_reused_pid_with_another_start_time_is_not_the_run(
    tmp_path: Path, registry: Path, other_process: subprocess.Popen[bytes]
) -> None:
    real = start_time(other_process.pid)
    assert real is not None
    stale = plant(registry, "r3.x", LiveRun("r3", other_process.pid, str(int(real) - 1), str(tmp_path)))
    live = plant(registry, "r5.z", LiveRun("r5", other_process.pid, real, str(tmp_path)))
    assert [r.run_id for r in live_runs_anywhere()] == ["r5"]
    assert not stale.exists() and live.exists()


def test_a_torn_entry_is_kept_reported_and_its_named_pid_counts_as_live(
    tmp_path: Path, registry: Path, other_process: subprocess.Popen[bytes]
) -> None:
    registry.mkdir(parents=True)
    torn = registry / f"r4.{other_process.pid}.abcd1234"
    torn.write_text('{"run_id": "r4", "pi')
    dead_torn = registry / "r7.999999999.abcd1234"
    dead_torn.write_text("{not json")
    # Its start time and state dir are lost; its name still says which run and pid.
    assert [(r.run_id, r.pid) for r in live_runs_anywhere()] == [("r4", other_process.pid)]
    removed, problems = registry_problems(registry)
    assert removed == [] and torn.exists() and dead_torn.exists()
    assert len(problems) == 2 and all("unparsable live-run entry" in p and "delete it" in p for p in problems)
    assert str(torn) in problems[0] and str(dead_torn) in problems[1]


def test_a_killed_writers_temp_file_goes_once_a_minute_old(tmp_path: Path, registry: Path) -> None:
    registry.mkdir(parents=True)
    old, young = registry / ".r8.1.abc.tmp", registry / ".r9.1.abc.tmp"
    for f in (old, young):
        f.write_text('{"run_id": "r')
    os.utime(old, (time.time() - 61, time.time() - 61))
    removed, problems = registry_problems(registry)
    assert removed == [f"stale temp file {old}"] and problems == []
    assert not old.exists() and young.exists()


def test_an_unwritable_registry_does_not_stop_a_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with register("r6", tmp_path, registry=blocker / "live") as path:
        assert path is None


class _Sweeper:
    """Stands in for a driver whose sweep spares live runs: its resources are named by run id."""

    calls: list[str | None] = []
    spares_live_runs = True
    resources = ("res-live7", "res-dead9")

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx

    def gc(self, run_id: str | None = None) -> list[str]:
        _Sweeper.calls.append(run_id)
        if run_id is not None:
            return [f"everything of {run_id}"]
        return [
            r for r in self.resources if not self.ctx.sparing.spares(r, lambda rid, r=r: r == f"res-{rid}")
        ]


class _Blind:
    """A driver whose sweep cannot tell whose a resource is."""

    calls: list[str | None] = []

    def __init__(self, ctx: DriverContext) -> None:
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        _Blind.calls.append(run_id)
        return ["anything isobench"]


@pytest.fixture
def drivers(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    import isobench.gc as gcmod

    _Sweeper.calls = []
    _Blind.calls = []
    monkeypatch.setattr(gcmod, "all_drivers", lambda: {"sweeper": _Sweeper, "blind": _Blind})
    monkeypatch.setattr(gcmod, "leakage_gc", lambda run_id: [])
    return _Sweeper.calls


def _live_run_elsewhere(
    registry: Path, tmp_path: Path, run_id: str, proc: subprocess.Popen[bytes]
) -> LiveRun:
    run = LiveRun(run_id, proc.pid, start_time(proc.pid) or "", str(tmp_path / "elsewhere"))
    plant(registry, f"{run_id}.{proc.pid}.abc", run)
    return run


def test_a_sweep_spares_a_run_live_in_another_state_dir_and_says_so(
    tmp_path: Path, registry: Path, drivers: list[str | None], other_process: subprocess.Popen[bytes]
) -> None:
    _live_run_elsewhere(registry, tmp_path, "live7", other_process)
    scratch = tmp_path / "vartmp"
    (scratch / "isobench-live7-leak-a").mkdir(parents=True)
    (scratch / "isobench-dead9-leak-a").mkdir()
    report = gc(tmp_path / "state", sweep_all=True, scratch_root=scratch)
    assert drivers == [None] and _Blind.calls == []  # the blind driver is not swept while live7 lives
    assert "sweeper: res-dead9" in report.removed and "sweeper: res-live7" not in report.removed
    assert f"leakage scratch: {scratch / 'isobench-dead9-leak-a'}" in report.removed
    assert (scratch / "isobench-live7-leak-a").is_dir()
    assert report.spared == [
        f"spared 2 resources of live run live7 (pid {other_process.pid}): "
        f"leakage scratch {scratch / 'isobench-live7-leak-a'}, res-live7"
    ]
    assert any(k.startswith("blind: not swept") for k in report.kept)
    assert report.live_elsewhere == [
        f"run live7 (pid {other_process.pid}, state dir {tmp_path / 'elsewhere'})"
    ]
    other_process.kill()
    other_process.wait()
    report = gc(tmp_path / "state", sweep_all=True, scratch_root=scratch)  # nobody lives: all of it
    assert _Blind.calls == [None] and "sweeper: res-live7" in report.removed and report.spared == []


def test_a_sweep_spares_a_live_run_of_its_own_state_dir(
    tmp_path: Path, registry: Path, drivers: list[str | None]
) -> None:
    with RunLock.acquire(tmp_path / "state", "live7"):
        report = gc(tmp_path / "state", sweep_all=True, scratch_root=tmp_path / "vartmp")
    assert report.removed == ["sweeper: res-dead9"]
    assert report.spared == [
        f"spared 2 resources of live run live7 (pid {os.getpid()}): res-live7, "
        f"state {tmp_path / 'state' / 'runs' / 'live7'}"
    ]


def test_a_dead_run_whose_id_is_live_elsewhere_is_left_alone(
    tmp_path: Path, registry: Path, drivers: list[str | None], other_process: subprocess.Popen[bytes]
) -> None:
    # One run id, two state dirs: here it died, there it lives; its resources carry the id.
    dead = tmp_path / "state" / "runs" / "shared8"
    dead.mkdir(parents=True)
    _live_run_elsewhere(registry, tmp_path, "shared8", other_process)
    report = gc(tmp_path / "state")
    assert drivers == [] and dead.is_dir()
    assert (
        len(report.kept) == 1 and "shared8" in report.kept[0] and f"pid {other_process.pid}" in report.kept[0]
    )
    other_process.kill()
    other_process.wait()
    report = gc(tmp_path / "state")
    assert drivers == ["shared8"] and not dead.exists()


def test_what_a_sweep_spared_is_one_line_per_run_with_several_of_a_kind_counted() -> None:
    a, b = LiveRun("a1", 11, "1", "/s"), LiveRun("b2", 22, "1", "/s")
    sparing = Sparing((a, b))
    for hierarchy in ("cpu", "memory", "pids"):
        assert sparing.spares(f"cgroup /sys/fs/cgroup/{hierarchy}/x-a1", lambda rid: rid == "a1")
    sparing.spare(a, "docker slot 3")
    sparing.spare(b, "state /var/lib/isobench/runs/b2")
    assert not sparing.spares("cgroup /sys/fs/cgroup/cpu/x-c3", lambda rid: rid == "c3")
    sparing.keep("docker slot 9", "held by pid 5")
    assert sparing.spared_lines() == [
        "spared 4 resources of live run a1 (pid 11): 3 cgroup, docker slot 3",
        "spared 1 resource of live run b2 (pid 22): state /var/lib/isobench/runs/b2",
    ]
    assert sparing.kept_lines() == ["docker slot 9 (kept: held by pid 5)"]
