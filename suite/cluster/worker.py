"""The host side of a fleet run: ``isobench worker`` and the tasks it runs.

A worker is one host. It probes the host (``isobench.cluster.probe``), joins the scheduler with
those resources, and runs each cell it is given in its main thread through the same
``Runner.run_cell`` a local run uses. The first cell of a run opens the run on this host: its lock
and work dir under this host's state dir (so ``isobench gc`` here tells a dead run's leftovers from
a live one's) and the drivers; ``close_run`` (or the worker's exit) closes it. The samples go back
to the client as the task's result; nothing measured is kept here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from isobench import __version__
from isobench.config import RunConfig
from isobench.drivers.base import Driver, all_drivers
from isobench.errors import UsageError
from isobench.launch import check_sandbox_cpus
from isobench.model import Sample
from isobench.runner import Runner, close_drivers, driver_context
from isobench.runstate import RunLock
from isobench.schedule import Cell
from isobench.workloads.base import all_workloads

from .executor import MainThreadExecutor
from .plan import driver_resource

log = logging.getLogger(__name__)

__all__ = ["CellTask", "HostState", "close_run", "execute_cell", "host_run_id", "serve"]

#: The param every sample of a fleet run carries: the host it was measured on.
HOST_PARAM = "host"


@dataclass(frozen=True)
class CellTask:
    """One cell of a fleet run, as sent to a worker (small: the config and a cell)."""

    run_id: str
    version: str
    config: RunConfig
    #: Every driver of the run: a host opens those it offers (a retried cell may need any of them).
    drivers: tuple[str, ...]
    workloads: tuple[str, ...]
    cell: Cell
    #: The lost host this cell was first planned on, when it is a retry.
    retry_of: str | None = None


def host_run_id(run_id: str, host: str) -> str:
    """The id host ``host``'s resources of fleet run ``run_id`` carry (its live-run entry too): the
    run's, with its last four hex digits drawn from the host's name, so that N workers on one machine
    (``local:N``) never name a cgroup, netns or veth alike; still sortable and as short as a run id
    must be."""
    return run_id[:-4] + hashlib.sha256(f"{run_id}/{host}".encode()).hexdigest()[:4]


@dataclass
class _OpenRun:
    runner: Runner
    stack: contextlib.ExitStack


@dataclass
class HostState:
    """What one ``isobench worker`` process holds: its identity, its state dir, its open runs."""

    name: str
    state_dir: Path
    resources: Mapping[str, float]
    runs: dict[str, _OpenRun] = field(default_factory=dict)

    def local_run_id(self, run_id: str) -> str:
        return host_run_id(run_id, self.name)

    def open(self, task: CellTask) -> Runner:
        if task.run_id in self.runs:
            return self.runs[task.run_id].runner
        # One run open at a time: a run whose client went away without closing it (interrupted,
        # killed) is closed by the next run's first cell rather than holding its lock, drivers and
        # daemons until the worker stops. (Were it alive, its next cell would open it again.)
        self.close_all()
        config = replace(task.config, state_dir=self.state_dir)
        local_id = self.local_run_id(task.run_id)
        stack = contextlib.ExitStack()
        try:
            lock = stack.enter_context(RunLock.acquire(self.state_dir, local_id, part_of=task.run_id))
            known = all_drivers()
            drivers: dict[str, Driver] = {}
            for name in task.drivers:
                if not self.resources.get(driver_resource(name)):
                    continue
                driver = known[name](driver_context(config, local_id, name))
                # probes the driver as a local run does (e.g. a guest driver's accelerator)
                avail = driver.availability()
                if avail.ok:
                    drivers[name] = driver
                else:
                    log.warning("driver %s is unavailable on %s now: %s", name, self.name, avail.reason)
            runner = Runner(
                config,
                drivers,
                {w: all_workloads()[w]() for w in task.workloads},
                run_id=local_id,
                run_dir=lock.dir,
                run_info={},
            )
            stack.callback(_close_runner, runner, lock)
        except BaseException:
            stack.close()
            raise
        self.runs[task.run_id] = _OpenRun(runner, stack)
        return runner

    def close(self, run_id: str) -> list[str]:
        run = self.runs.pop(run_id, None)
        if run is None:
            return []
        run.stack.close()
        return list(run.runner.teardown_errors)

    def close_all(self) -> None:
        for run_id in list(self.runs):
            self.close(run_id)


def _close_runner(runner: Runner, lock: RunLock) -> None:
    close_drivers(runner, lock.work_dir)


#: The HostState of this process while it serves as an ``isobench worker`` (one at most).
_HOSTING: list[HostState] = []


def _host() -> HostState:
    if not _HOSTING:
        raise RuntimeError(
            "this task runs only on an `isobench worker` (a plain dask worker has no host state)"
        )
    return _HOSTING[0]


def execute_cell(task: CellTask) -> list[Sample]:
    """Run one cell on this host; its samples carry the host's name (and the retry's origin)."""
    host = _host()
    stamp: dict[str, Any] = {"host_run_id": host.local_run_id(task.run_id)}
    if task.retry_of is not None:
        stamp["retry_of"] = task.retry_of
    if task.version != __version__:
        error = f"isobench {__version__} on {host.name}, but the client runs {task.version}"
        samples = [_failure(task, error)]
    elif misfit := _sandbox_misfit(task.config):
        samples = [_failure(task, misfit)]
    else:
        runner = host.open(task)
        if task.cell.driver not in runner.drivers:
            samples = [_failure(task, f"driver {task.cell.driver} is not available on {host.name}")]
        else:
            samples = runner.run_cell(task.cell)
    return [
        replace(
            s,
            run_id=task.run_id,
            params={**s.params, HOST_PARAM: host.name},
            metadata={**s.metadata, **stamp},
        )
        for s in samples
    ]


def _sandbox_misfit(config: RunConfig) -> str | None:
    """Why this host cannot give the run's sandbox what it asks (a cpuset it lacks, more vCPUs than
    its CPUs), or None: the client checks only a local run, on its own CPUs."""
    try:
        check_sandbox_cpus(config)
    except UsageError as err:
        return str(err)
    return None


def _failure(task: CellTask, error: str) -> Sample:
    c = task.cell
    return Sample.failure(
        run_id=task.run_id, driver=c.driver, workload=c.workload, repetition=c.repetition, error=error
    )


def close_run(run_id: str) -> list[str]:
    """Close a run on this host (drivers, work dir, lock); returns its teardown errors."""
    return _host().close(run_id)


def worker_facts() -> dict[str, Any]:
    """What the run records about this host (kernel, CPU, memory, virtualisation)."""
    from isobench import hostinfo

    host = _host()
    return {"name": host.name, "resources": dict(host.resources), "info": hostinfo.collect()}


@contextlib.contextmanager
def _hosting(state: HostState) -> Iterator[None]:
    _HOSTING.append(state)
    try:
        yield
    finally:
        _HOSTING.remove(state)
        state.close_all()


def serve(scheduler: str, state: HostState, *, on_ready: Any = None) -> None:
    """Join ``scheduler`` as ``state.name`` and run cells in this (main) thread until the worker
    stops (the scheduler closes, or SIGINT/SIGTERM here); every run still open is closed."""
    from distributed import Worker

    executor = MainThreadExecutor()
    stopped = threading.Event()
    failure: list[BaseException] = []

    async def _run() -> None:
        async with Worker(
            scheduler,
            name=state.name,
            nthreads=1,
            resources=dict(state.resources),
            executor=executor,
            dashboard=False,
            local_directory=str(state.state_dir / "dask"),
        ) as worker:
            if on_ready is not None:
                on_ready(worker.address)
            await worker.finished()

    def _loop() -> None:
        try:
            asyncio.run(_run())
        except BaseException as err:
            failure.append(err)
        finally:
            stopped.set()
            executor.shutdown()

    with _hosting(state):
        thread = threading.Thread(target=_loop, name="dask-worker-loop", daemon=True)
        thread.start()
        executor.serve(stop=stopped.is_set)
    if failure:
        raise failure[0]
