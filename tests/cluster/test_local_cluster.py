"""``--cluster local:2`` on this machine: two real ``isobench worker`` processes behind a scheduler on
127.0.0.1 (no other address is ever contacted). Marked: they run real cells as root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from isobench.cluster import FleetRun, connect, run_fleet
from isobench.config import RunConfig
from isobench.gc import gc
from isobench.images import images_dir
from isobench.model import Sample
from isobench.runner import Progress
from isobench.runstate import live_runs
from isobench.workloads.base import all_workloads

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


def test_run_on_two_local_workers_gives_one_result_with_a_fleet_view(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "isobench.cli", "run", "--cluster", "local:2", "--drivers", "host,container"]
    cmd += ["--workloads", "startup", "--quick", "-o", str(out), "--state-dir", str(_state(tmp_path))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the fleet: the same figure on every host" in r.stdout
    (run_dir,) = out.iterdir()
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["schema_version"] == 3
    hosts = sorted(doc["run"]["cluster"]["hosts"])
    assert [h.split("@")[0] for h in hosts] == ["local-0", "local-1"]
    measured = [s for s in doc["samples"] if s["value"] is not None]
    assert {(s["params"]["host"], s["driver"]) for s in measured} == {
        (h, d) for h in hosts for d in ("host", "container")
    }
    # per host, the runner's rounds: 3 quick repetitions each, on each driver
    for h in hosts:
        rounds = {s["metadata"]["round"] for s in measured if s["params"]["host"] == h}
        assert rounds == {0, 1, 2}
    assert (run_dir / "tables" / "fleet.csv").read_text().startswith("driver,question,")
    assert "Fleet: the same figure on every host" in (run_dir / "summary.md").read_text()


class KillSecond(Progress):
    """SIGKILLs the second local worker right after the client submitted the 4th cell (its 2nd:
    local workers take turns), so that cell is in flight when its host dies."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = pids
        self.finished: list[Sequence[Sample]] = []

    def cell_started(self, cell: Any, index: int, budget_left: float | None = None) -> None:
        if index == 3:
            os.kill(self.pids[1], signal.SIGKILL)

    def cell_finished(self, cell: Any, samples: Sequence[Sample]) -> None:
        self.finished.append(samples)


def test_a_killed_worker_s_cells_are_retried_on_the_other_and_gc_cleans_its_state(tmp_path: Path) -> None:
    state = _state(tmp_path)
    config = RunConfig(drivers=("host",), workloads=("startup",), state_dir=state, output=tmp_path)
    config = config.quickened()
    workloads = {"startup": all_workloads()["startup"]()}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with connect("local:2", state) as conn:
        # the worker processes, in index order (local_cluster started them so)
        assert conn.local is not None
        pids = [p.pid for p in conn.local.workers]
        progress = KillSecond(pids)
        done: FleetRun = run_fleet(
            conn.fleet,
            conn.address,
            config,
            workloads,
            run_id="20261130000000beef",
            run_dir=run_dir,
            run_info={"run_id": "20261130000000beef"},
            progress=progress,
            max_inflight=conn.max_inflight,
        )
    lost = [h for h in done.hosts if h.startswith("local-1@")]
    assert done.outcome.lost == lost and done.outcome.retried >= 1
    samples = done.results.samples
    retried = [s for s in samples if s.metadata.get("retry_of") == lost[0]]
    assert retried and all(s.params["host"].startswith("local-0@") and not s.failed for s in retried)
    # the lost host's lane was 3 cells: those it finished plus those retried make 3 again
    cells = {(s.params["host"], s.metadata.get("retry_of"), s.metadata["round"]) for s in samples}
    assert len([c for c in cells if lost[0] in (c[0], c[1])]) == 3
    assert json.loads((run_dir / "results.json").read_text())["run"]["fleet"]["lost_hosts"] == lost
    # the dead worker's run is dead (its lock is free): `isobench gc` there removes what it left
    dead_state = state / "local" / "1"
    assert live_runs(dead_state) == []
    report = gc(dead_state)
    assert not report.errors and not list((dead_state / "runs").iterdir())
