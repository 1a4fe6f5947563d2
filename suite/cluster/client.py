"""The client of a fleet run: submit each host's lane one cell at a time, journal samples as they
arrive, and notice a host that is gone.

The journal stays the crash-safe record: every sample is appended (fsync'd) the moment its cell's
result reaches the client, so a client killed mid-run loses only the cells in flight, and
``isobench finalize`` turns the journal into results.json as for a local run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from isobench import __version__
from isobench.config import RunConfig
from isobench.model import Sample
from isobench.results import Journal
from isobench.runner import Progress

from .fleet import Fleet, Handle
from .plan import FleetPlan, Placed
from .worker import HOST_PARAM, CellTask

log = logging.getLogger(__name__)

__all__ = ["FleetOutcome", "drive"]


@dataclass
class FleetOutcome:
    lost: list[str] = field(default_factory=list)
    retried: int = 0
    failed_lost: int = 0
    teardown_errors: list[str] = field(default_factory=list)
    #: Other isobench runs live on a host while one of this run's cells ran there: {run id: cells}
    #: (``run["concurrent_runs"]``, as a local run records it).
    concurrent: dict[str, int] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"lost_hosts": self.lost, "cells_retried": self.retried, "cells_lost": self.failed_lost}

    def run_record(self) -> dict[str, Any]:
        """What the run's record holds of the outcome: ``fleet``, and ``concurrent_runs`` if any."""
        return {"fleet": self.record()} | (
            {"concurrent_runs": dict(self.concurrent)} if self.concurrent else {}
        )

    def met(self, samples: Sequence[Sample], own: Collection[str]) -> list[Sample]:
        """One cell's samples, counted into :attr:`concurrent`, without the runs in ``own`` (this
        fleet run itself, whose host runs never overlap under ``local:N``: it runs one cell at a
        time, so its workers' live entries are each other's, not load)."""
        out = [_without(s, own) for s in samples]
        for other in sorted({r for s in out for r in s.metadata.get("concurrent_runs", ())}):
            self.concurrent[other] = self.concurrent.get(other, 0) + 1
        return out


def _without(s: Sample, own: Collection[str]) -> Sample:
    others = s.metadata.get("concurrent_runs")
    if not others or not own:
        return s
    kept = [r for r in others if r not in own]
    meta = {k: v for k, v in s.metadata.items() if k != "concurrent_runs"}
    return replace(s, metadata=meta | ({"concurrent_runs": kept} if kept else {}))


def lost_sample(run_id: str, placed: Placed, why: str) -> Sample:
    """A failure sample for a cell a lost host did not finish (and no host could retry)."""
    c = placed.cell
    meta: dict[str, Any] = {"round": c.round, "slot": c.slot}
    if placed.retry_of is not None:
        meta["retry_of"] = placed.retry_of
    failed = Sample.failure(
        run_id=run_id, driver=c.driver, workload=c.workload, repetition=c.repetition, error=why, metadata=meta
    )
    return replace(failed, params={HOST_PARAM: placed.host}, warmup=c.warmup)


def drive(
    fleet: Fleet,
    plan: FleetPlan,
    *,
    run_id: str,
    config: RunConfig,
    drivers: tuple[str, ...],
    workloads: tuple[str, ...],
    journal: Journal,
    progress: Progress,
    poll: float = 2.0,
    max_inflight: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FleetOutcome:
    """Run ``plan`` on ``fleet`` to the end; every sample goes to ``journal`` as it arrives.

    ``max_inflight`` caps the cells running at once over the whole fleet (1 for ``local:N``, whose
    workers share one machine's CPUs); the host that waited longest goes next. At 1, the hosts'
    own runs of this fleet never measure at once, so none counts as another's concurrent run.
    """
    # A worker names a sibling by the fleet's run id (its live entry is part of this run).
    own = {run_id} if max_inflight == 1 else set()
    outcome = FleetOutcome()
    inflight: dict[Any, tuple[str, Placed]] = {}
    last_start: dict[str, int] = {}
    index = 0
    progress.start(plan.total())

    def task(placed: Placed) -> CellTask:
        return CellTask(run_id, __version__, config, drivers, workloads, placed.cell, placed.retry_of)

    def lose(host: str, why: str) -> None:
        for handle, (h, _) in list(inflight.items()):
            if h == host:
                del inflight[handle]
                fleet.forget(handle)
        lost = plan.lose(host)
        outcome.lost.append(host)
        outcome.retried += len(lost.retried)
        outcome.failed_lost += len(lost.failed)
        log.warning(
            "host %s is gone (%s): %d cell(s) retried elsewhere, %d recorded as failed",
            host,
            why,
            len(lost.retried),
            len(lost.failed),
        )
        for placed in lost.failed:
            reason = "no other host has its capabilities" if placed.retry_of is None else "already a retry"
            sample = lost_sample(run_id, placed, f"host {host} was lost ({why}); not retried: {reason}")
            journal.append(sample)
            progress.cell_finished(placed.cell, [sample])

    try:
        checked = -math.inf
        while not plan.done():
            # who is alive, asked at most every `poll` seconds: with 100 hosts the answer is ~100 KB
            if clock() - checked >= poll:
                checked = clock()
                live = fleet.hosts()
                for host in plan.hosts:
                    if host not in live and host not in outcome.lost:
                        lose(host, "it left the scheduler")
            for host in sorted(plan.idle(), key=lambda h: last_start.get(h, -1)):
                if max_inflight is not None and len(inflight) >= max_inflight:
                    break
                placed = plan.next_cell(host)
                if placed is None:
                    continue
                try:
                    handle: Handle = fleet.submit(host, task(placed), placed.resources)
                except LookupError:
                    lose(host, "it left the scheduler")
                    continue
                inflight[handle] = (host, placed)
                last_start[host] = index
                progress.cell_started(placed.cell, index)
                index += 1
            if not inflight:
                continue
            for handle in fleet.wait(list(inflight), poll):
                host, placed = inflight.pop(handle)
                try:
                    samples = fleet.result(handle)
                except Exception as err:
                    # lost with its host (retried above once the host is seen gone), or a result that
                    # could not be gathered in time from a live host (asked again on the next wait)
                    if host not in fleet.hosts() or isinstance(err, TimeoutError):
                        inflight[handle] = (host, placed)
                        checked = -math.inf
                        continue
                    # the task itself failed on a live host (not a cell's failure: those are samples)
                    samples = [
                        lost_sample(run_id, placed, f"task failed on {host}: {type(err).__name__}: {err}")
                    ]
                fleet.forget(handle)
                plan.finished(host)
                samples = outcome.met(samples, own)
                for s in samples:
                    journal.append(s)
                progress.cell_finished(placed.cell, samples)
    finally:
        # interrupted or failed: cells not started are cancelled (one running on a host ends there)
        for handle in inflight:
            fleet.forget(handle)
    live = fleet.hosts()
    closing = [h for h in plan.hosts if h in live and h not in outcome.lost]
    for host, errors in fleet.close_run(run_id, closing).items():
        outcome.teardown_errors += [f"{host}: {e}" for e in errors]
    return outcome


def fleet_header(
    run_info: Mapping[str, Any],
    address: str,
    facts: Mapping[str, Any],
    plan: FleetPlan,
    design: str,
    seed: int,
) -> dict[str, Any]:
    """The journal header of a fleet run: the client's run info, the order, and the hosts."""
    hosts = {h: {**facts.get(h, {}), "drivers": plan.drivers_of(h)} for h in plan.hosts}
    return {
        **run_info,
        "order": {"design": f"{design}; per host", "seed": seed},
        "cluster": {"scheduler": address, "hosts": hosts},
    }
