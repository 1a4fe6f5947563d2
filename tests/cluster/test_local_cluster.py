"""``--cluster local:2`` on this machine: two real ``isobench worker`` processes behind a scheduler on
127.0.0.1 (no other address is ever contacted). Marked: they run real cells as root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from isobench.config import RunConfig
from isobench.gc import gc
from isobench.images import images_dir
from isobench.liveruns import live_runs_anywhere, register
from isobench.results import SCHEMA_VERSION
from isobench.runstate import live_runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _state(tmp_path: Path) -> Path:
    """A state dir of the test's own whose image is the one set-up built (the container driver's
    root filesystem); the local workers get theirs under it."""
    state = tmp_path / "state"
    state.mkdir()
    shared = images_dir(RunConfig().state_dir)
    if shared.is_dir():
        (state / "images").symlink_to(shared)
    return state


def _worker_pid(state: Path) -> int | None:
    """The pid of the local worker whose state dir is ``state`` (one this test started)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in argv and str(state).encode() in argv:
            return int(proc.name)
    return None


def _first_cell_of(host: str, out: Path) -> bool:
    journals = list(out.glob("*/journal.jsonl"))
    return bool(journals) and f'"host": "{host}' in journals[0].read_text()


def test_a_run_on_two_local_workers_survives_losing_one(tmp_path: Path) -> None:
    """One run (its CLI, as a user types it) on local:2; the second worker is SIGKILLed once its
    first cell is journalled: its other cells are retried on the first, the run still ends in one
    results.json with a fleet view, and `isobench gc` on the dead worker's state dir cleans up."""
    out, state = tmp_path / "out", _state(tmp_path)
    cmd = [sys.executable, "-m", "isobench.cli", "run", "--cluster", "local:2", "--drivers", "host,container"]
    cmd += ["--workloads", "startup", "--quick", "-o", str(out), "--state-dir", str(state)]
    log = tmp_path / "stdout"
    # Another run live on this host meanwhile (this test's process, in a registry of the test's own):
    # the client warns at once and every cell names it; the two workers never name each other.
    registry = tmp_path / "live"
    env = {**os.environ, "ISOBENCH_LIVE_DIR": str(registry)}
    with log.open("w") as f, register("20261202000000beef", tmp_path / "neighbour", registry):
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            end = time.monotonic() + 240
            while not _first_cell_of("local-1@", out) and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.1)
            pid = _worker_pid(state / "local" / "1")
            assert pid is not None, log.read_text()
            # a plain run beside this one would name it by the fleet's run id, not a worker's
            workers = [r for r in live_runs_anywhere(registry) if r.pid != os.getpid()]
            assert workers and {r.known_as for r in workers} == {p.name for p in out.iterdir()}
            assert all(r.run_id != r.part_of for r in workers)
            os.kill(pid, signal.SIGKILL)
            code = proc.wait(timeout=max(1.0, end - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert code == 1, text  # a lost host is exit 1 (it may have left sandboxes), though nothing failed
    assert "the fleet: the same figure on every host" in text and "lost host(s) local-1@" in text
    (run_dir,) = out.iterdir()
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    hosts = sorted(doc["run"]["cluster"]["hosts"])
    assert [h.split("@")[0] for h in hosts] == ["local-0", "local-1"]
    assert doc["run"]["fleet"]["lost_hosts"] == [hosts[1]]
    measured = [s for s in doc["samples"] if s["value"] is not None]
    assert not [s for s in doc["samples"] if s["error"]]
    assert "another isobench run is measuring on this host (20261202000000beef)" in " ".join(text.split())
    assert all(s["metadata"]["concurrent_runs"] == ["20261202000000beef"] for s in measured)
    assert set(doc["run"]["concurrent_runs"]) == {"20261202000000beef"}
    # local-0 ran its own lane, all 3 quick rounds on both drivers, and the cells local-1 left
    own = {(s["driver"], s["metadata"]["round"]) for s in measured if s["params"]["host"] == hosts[0]}
    assert own == {(d, r) for d in ("host", "container") for r in (0, 1, 2)}
    retried = {
        (s["driver"], s["metadata"]["round"]) for s in measured if s["metadata"].get("retry_of") == hosts[1]
    }
    done_by_1 = {(s["driver"], s["metadata"]["round"]) for s in measured if s["params"]["host"] == hosts[1]}
    assert retried and all(s["params"]["host"] == hosts[0] for s in measured if s["metadata"].get("retry_of"))
    assert retried | done_by_1 == own and not retried & done_by_1  # each cell of local-1's lane once
    assert (run_dir / "tables" / "fleet.csv").read_text().startswith("driver,question,")
    # the killed worker could not close its run: its lock is free, so gc there removes what it left
    dead_state = state / "local" / "1"
    assert live_runs(dead_state) == []
    assert list((dead_state / "runs").iterdir())
    report = gc(dead_state)
    assert not report.errors and not list((dead_state / "runs").iterdir())
    assert not list((state / "local" / "0" / "runs").iterdir())  # the live one closed its run
