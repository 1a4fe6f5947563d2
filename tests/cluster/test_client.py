"""The client's loop over a fake fleet: samples journalled as they arrive, a lost host's cells retried
once elsewhere or recorded as failures, one cell per host (or per machine) at a time."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from isobench.cluster.client import drive
from isobench.cluster.plan import HOST_SLOT, FleetPlan, driver_resource
from isobench.cluster.worker import HOST_PARAM, CellTask
from isobench.config import RunConfig
from isobench.model import Sample
from isobench.results import JOURNAL, SCHEMA_VERSION, Journal, finalize, load_results
from isobench.runner import Progress

OFFER = {HOST_SLOT: 1.0, driver_resource("host"): 1.0, driver_resource("container"): 1.0}


@dataclass(eq=False)
class _Handle:
    host: str
    task: CellTask
    n: int


@dataclass
class FakeFleet:
    """Hosts that finish one submitted cell per wait(), oldest first; a host listed in ``die_at``
    vanishes when that many cells have been submitted fleet-wide (its cell in flight never returns)."""

    alive: dict[str, dict[str, float]]
    journal_path: Path | None = None
    die_at: Mapping[int, str] = field(default_factory=dict)
    crash: set[int] = field(default_factory=set)
    #: cells whose host dies after finishing them, before their result is gathered (Dask
    #: reschedules such a task onto the dead host only: gathering it times out)
    gone_before_gather: Mapping[int, str] = field(default_factory=dict)
    #: cells whose result takes longer than the gather timeout once, on a live host
    slow_gather: set[int] = field(default_factory=set)
    #: per cell, the live isobench runs its host's registry listed besides the worker's own
    meanwhile: Mapping[int, list[str]] = field(default_factory=dict)
    submitted: list[tuple[str, CellTask]] = field(default_factory=list)
    concurrent: list[int] = field(default_factory=list)
    journal_lines_seen: list[int] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    _pending: list[_Handle] = field(default_factory=list)

    def hosts(self) -> dict[str, dict[str, float]]:
        return dict(self.alive)

    def submit(self, host: str, task: CellTask, resources: Mapping[str, float]) -> _Handle:
        if host not in self.alive:
            raise LookupError(host)
        assert resources[HOST_SLOT] == 1.0
        assert resources[driver_resource(task.cell.driver)] == 1.0
        h = _Handle(host, task, len(self.submitted))
        self.submitted.append((host, task))
        self._pending.append(h)
        self.concurrent.append(len(self._pending))
        if h.n in self.die_at:
            self.alive.pop(self.die_at[h.n], None)
        return h

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        if self.journal_path is not None:  # how much was on disk before the next result arrives
            self.journal_lines_seen.append(len(self.journal_path.read_text().splitlines()))
        for h in self._pending:
            if h.host in self.alive and h in handles:
                self._pending.remove(h)
                return [h]
        return []

    def result(self, handle: Any) -> list[Sample]:
        t = handle.task
        if handle.n in self.crash:
            raise RuntimeError("worker task blew up")
        if handle.n in self.gone_before_gather:
            self.alive.pop(self.gone_before_gather[handle.n], None)
            raise TimeoutError("no-worker")
        if handle.n in self.slow_gather:
            self.slow_gather.discard(handle.n)
            self._pending.insert(0, handle)  # still finished: the next wait() hands it back
            raise TimeoutError("slow")
        return [
            Sample(
                run_id=t.run_id, driver=t.cell.driver, workload=t.cell.workload, metric="startup.total",
                value=1.0 + handle.n, unit="s", repetition=t.cell.repetition,
                params={HOST_PARAM: handle.host},
                metadata={
                    "round": t.cell.round,
                    **({"retry_of": t.retry_of} if t.retry_of else {}),
                    **({"concurrent_runs": self.meanwhile[handle.n]} if handle.n in self.meanwhile else {}),
                },
            )
        ]  # fmt: skip

    def forget(self, handle: Any) -> None:
        if handle in self._pending:
            self._pending.remove(handle)

    def facts(self) -> dict[str, Any]:
        return {h: {"name": h} for h in self.alive}

    def close_run(self, run_id: str, hosts: Sequence[str]) -> dict[str, list[str]]:
        self.closed += hosts
        return {h: [] for h in hosts}


class Recorder(Progress):
    def __init__(self) -> None:
        self.total = 0
        self.finished: list[Sequence[Sample]] = []

    def start(self, total: int) -> None:
        self.total = total

    def cell_finished(self, cell: Any, samples: Sequence[Sample]) -> None:
        self.finished.append(samples)


def _run(
    tmp_path: Path, fleet: FakeFleet, hosts: Mapping[str, Mapping[str, float]], **kw: Any
) -> tuple[Any, Recorder, list[Sample]]:
    plan = FleetPlan(hosts, ["host", "container"], ["startup"], repetitions=2, warmups=0, caps={}, seed=1)
    journal = Journal(tmp_path, {"run_id": "r1"})
    fleet.journal_path = tmp_path / JOURNAL
    progress = Recorder()
    outcome = drive(
        fleet,
        plan,
        run_id="r1",
        config=RunConfig(),
        drivers=("host", "container"),
        workloads=("startup",),
        journal=journal,
        progress=progress,
        poll=0.0,
        **kw,
    )
    journal.close("complete", **outcome.run_record())
    return outcome, progress, finalize(tmp_path).samples


def test_every_host_runs_its_lane_and_samples_are_journalled_as_they_arrive(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)})
    outcome, progress, samples = _run(tmp_path, fleet, fleet.hosts())
    assert progress.total == 2 * 2 * 2 and len(progress.finished) == 8
    assert {(s.params[HOST_PARAM], s.driver) for s in samples} == {
        (h, d) for h in "ab" for d in ("host", "container")
    }
    # the journal grew by one line per result before the next one arrived: nothing waits for the end
    seen = fleet.journal_lines_seen
    assert seen == sorted(seen) and seen[-1] - seen[0] >= 6
    assert sorted(fleet.closed) == ["a", "b"] and not outcome.lost
    # one cell per host in flight: two hosts, never more than two cells
    assert max(fleet.concurrent) == 2


def test_a_lost_hosts_cells_are_retried_on_a_capable_host(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)}, die_at={3: "b"})
    outcome, _, samples = _run(tmp_path, fleet, fleet.hosts())
    assert outcome.lost == ["b"] and outcome.retried >= 1 and outcome.failed_lost == 0
    retried = [s for s in samples if s.metadata.get("retry_of") == "b"]
    assert retried and all(s.params[HOST_PARAM] == "a" for s in retried)  # the host that ran them
    assert not [s for s in samples if s.failed]
    # b's lane was 4 cells: those it finished plus those retried on a make 4 again
    from_b = [s for s in samples if s.params[HOST_PARAM] == "b"]
    assert len(from_b) + len(retried) == 4
    assert fleet.closed == ["a"]  # a lost host is not asked to close: `isobench gc` there cleans up


def test_without_a_capable_host_the_lost_cells_are_failure_samples(tmp_path: Path) -> None:
    only_host = {HOST_SLOT: 1.0, driver_resource("host"): 1.0}
    fleet = FakeFleet({"a": only_host, "b": dict(OFFER)}, die_at={1: "b"})
    outcome, progress, samples = _run(tmp_path, fleet, fleet.hosts())
    failed = [s for s in samples if s.failed]
    assert failed and all(s.driver == "container" and s.params[HOST_PARAM] == "b" for s in failed)
    assert all("host b was lost" in (s.error or "") for s in failed)
    assert outcome.failed_lost == len(failed)
    assert len(progress.finished) == progress.total  # every planned cell ended exactly once


def test_a_task_that_raises_on_a_live_host_is_a_failure_sample(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER)}, crash={0})
    _, _, samples = _run(tmp_path, fleet, fleet.hosts())
    (failed,) = [s for s in samples if s.failed]
    assert "worker task blew up" in (failed.error or "") and failed.params[HOST_PARAM] == "a"
    assert len(samples) == 4


def test_a_host_lost_between_finishing_a_cell_and_its_gathering_has_that_cell_retried(tmp_path: Path) -> None:
    # seen in CI: local-1 was SIGKILLed right after its cell finished; the gather never returned
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)}, gone_before_gather={1: "b"})
    outcome, progress, samples = _run(tmp_path, fleet, fleet.hosts())
    assert outcome.lost == ["b"] and outcome.retried >= 1 and not [s for s in samples if s.failed]
    assert len(progress.finished) == progress.total
    assert [s for s in samples if s.metadata.get("retry_of") == "b"]


def test_a_slow_gather_on_a_live_host_is_asked_again_not_recorded_as_a_failure(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER)}, slow_gather={0})
    outcome, progress, samples = _run(tmp_path, fleet, fleet.hosts())
    assert not outcome.lost and not [s for s in samples if s.failed]
    assert len(samples) == 4 and len(progress.finished) == progress.total


def test_the_dask_fleet_gathers_a_result_with_a_deadline() -> None:
    from isobench.cluster.fleet import RESULT_TIMEOUT, DaskFleet

    class Future:
        def result(self, timeout: float | None = None) -> list[Sample]:
            if timeout is None:
                raise AssertionError("an unbounded gather can hang the whole run")
            assert timeout == RESULT_TIMEOUT
            return []

    assert DaskFleet.result(object.__new__(DaskFleet), Future()) == []


def test_local_workers_take_turns_one_cell_at_a_time(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)})
    _run(tmp_path, fleet, fleet.hosts(), max_inflight=1)
    assert max(fleet.concurrent) == 1
    order = [h for h, _ in fleet.submitted]
    assert order == ["a", "b"] * 4  # the host that waited longest goes next


def test_local_workers_are_not_each_others_concurrent_runs_but_a_stranger_is(tmp_path: Path) -> None:
    """``local:N`` workers each hold a live entry for the run, so each cell's registry lists the
    other workers (by the fleet's run id); their cells never overlap (one at a time), so only
    another run counts."""
    stranger = "20261202073542ffff"
    meanwhile = {n: ["r1"] for n in range(8)} | {5: ["r1", stranger]}
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)}, meanwhile=meanwhile)
    outcome, _, samples = _run(tmp_path, fleet, fleet.hosts(), max_inflight=1)
    assert outcome.concurrent == {stranger: 1}
    assert [s.metadata["concurrent_runs"] for s in samples if "concurrent_runs" in s.metadata] == [[stranger]]
    assert load_results(tmp_path).run["concurrent_runs"] == {stranger: 1}


def test_a_fleet_of_machines_keeps_every_concurrent_run(tmp_path: Path) -> None:
    # Hosts that measure at once: a worker of this run beside another on one machine is load too.
    meanwhile = {n: ["r1"] for n in range(8)}
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)}, meanwhile=meanwhile)
    outcome, _, samples = _run(tmp_path, fleet, fleet.hosts())
    assert outcome.concurrent == {"r1": 8}
    assert all(s.metadata["concurrent_runs"] == ["r1"] for s in samples)


def test_the_fleet_record_lands_in_results(tmp_path: Path) -> None:
    fleet = FakeFleet({"a": dict(OFFER), "b": dict(OFFER)}, die_at={2: "a"})
    _run(tmp_path, fleet, fleet.hosts())
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["run"]["fleet"]["lost_hosts"] == ["a"]


@pytest.mark.parametrize("n", [0, 9])
def test_local_n_is_bounded(n: int) -> None:
    from isobench.cluster.local import parse_local
    from isobench.errors import UsageError

    with pytest.raises(UsageError, match="local:N"):
        parse_local(f"local:{n}")
    assert parse_local("local:2") == 2
    assert parse_local("tcp://127.0.0.1:8786") is None
