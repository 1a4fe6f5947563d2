"""The runner: expands the matrix, runs every cell with a deadline, and tears down on every path.

Within a repetition round every workload runs on every driver before the next round starts, and the
driver order rotates from round to round, so slow drift of the machine (thermal, page cache, a
neighbour) spreads evenly over drivers instead of biasing whichever always ran first or last.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from isobench.config import RunConfig
from isobench.drivers.base import Driver, DriverContext, Sandbox, SandboxSpec
from isobench.errors import IsobenchError
from isobench.model import Sample
from isobench.results import Journal, Results, finalize
from isobench.runstate import RunLock, run_work_dir
from isobench.signals import deadline, shielded
from isobench.workloads.base import Workload, WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["Cell", "Runner", "config_caps", "expand_matrix", "new_run_id", "repetition_caps"]


def new_run_id() -> str:
    """Sortable and short: resource names (veths: 15 chars) must carry it."""
    return time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]


@dataclass(frozen=True)
class Cell:
    round: int
    repetition: int
    warmup: bool
    driver: str
    workload: str

    @property
    def label(self) -> str:
        kind = "warmup" if self.warmup else f"rep {self.repetition}"
        return f"{self.workload} on {self.driver} ({kind})"


def expand_matrix(
    drivers: Sequence[str],
    workloads: Sequence[str],
    repetitions: int,
    warmups: int,
    max_repetitions: Mapping[str, int] | None = None,
) -> list[Cell]:
    """Rounds of every workload on every driver; ``max_repetitions`` caps some workloads' rounds."""
    caps = max_repetitions or {}
    cells: list[Cell] = []
    for rnd in range(warmups + repetitions):
        warm = rnd < warmups
        rep = rnd - warmups if not warm else rnd
        shift = rnd % len(drivers) if drivers else 0
        order = list(drivers[shift:]) + list(drivers[:shift])
        for workload in workloads:
            # A capped workload aggregates within its cell: warming it up would only burn time.
            if (warm and workload in caps) or (not warm and rep >= caps.get(workload, repetitions)):
                continue
            cells.extend(Cell(rnd, rep, warm, d, workload) for d in order)
    return cells


def repetition_caps(
    workloads: Mapping[str, Workload], *, quick: bool, explicit: int | None = None
) -> dict[str, int]:
    """Per-workload repetition limits: ``max_repetitions`` always, ``quick_repetitions`` under --quick.

    ``explicit`` is a repetition count the user asked for: it overrides the limits, while a capped
    workload stays in the result (it aggregates within its cell, so it is still not warmed up).
    """
    caps: dict[str, int] = {}
    for name, w in workloads.items():
        limits = [c for c in (w.max_repetitions, w.quick_repetitions if quick else None) if c]
        if limits:
            caps[name] = explicit if explicit is not None else min(limits)
    return caps


def config_caps(config: RunConfig, workloads: Mapping[str, Workload]) -> dict[str, int]:
    """The caps a run with ``config`` applies."""
    explicit = config.repetitions if config.repetitions_explicit else None
    return repetition_caps(workloads, quick=config.quick, explicit=explicit)


class Progress:
    """Callbacks the CLI implements to show progress; the default is silent."""

    def start(self, total: int) -> None: ...

    def cell_started(self, cell: Cell, index: int) -> None: ...

    def cell_finished(self, cell: Cell, samples: Sequence[Sample]) -> None: ...


class Runner:
    def __init__(
        self,
        config: RunConfig,
        drivers: Mapping[str, Driver],
        workloads: Mapping[str, Workload],
        *,
        run_id: str,
        run_dir: Path,
        run_info: Mapping[str, Any],
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.drivers = dict(drivers)
        self.workloads = dict(workloads)
        self.run_id = run_id
        self.run_dir = run_dir
        self.run_info = dict(run_info)
        self.progress = progress or Progress()
        self._sandbox_counter = 0
        self._cell_counter = 0
        self._driver_meta = {name: dict(d.metadata()) for name, d in self.drivers.items()}
        self.teardown_errors: list[str] = []
        self._live: dict[str, Sandbox] = {}

    def base_spec(self, driver: str) -> SandboxSpec:
        return SandboxSpec(
            name=f"isobench-{self.run_id}-{driver}",
            run_id=self.run_id,
            vcpus=self.config.vcpus,
            cpuset=self.config.cpuset,
            memory_mib=self.config.memory_mib,
            options=self.config.driver_options.get(driver, {}),
        )

    @contextmanager
    def _sandbox(self, driver: Driver, base: SandboxSpec, **overrides: Any) -> Iterator[Sandbox]:
        self._sandbox_counter += 1
        # A workload may name its sandboxes (victim, aggressor); the counter keeps names unique.
        given = overrides.pop("name", None)
        name = f"{given or f'isobench-{self.run_id}-{driver.name}'}-{self._sandbox_counter}"
        if "options" in overrides:
            overrides["options"] = {**base.options, **overrides["options"]}
        spec = replace(base, name=name, **overrides)
        sandbox: Sandbox | None = None
        try:
            # Ctrl-C is deferred until create() returns, so the finally below always owns the sandbox.
            with shielded():
                sandbox = driver.create(spec)
                self._live[name] = sandbox
            yield sandbox
        finally:
            if sandbox is not None:
                self._destroy(name)

    def _destroy(self, name: str) -> None:
        sandbox = self._live.pop(name, None)
        if sandbox is None:
            return
        with shielded():
            try:
                sandbox.destroy()
            except Exception as err:
                msg = f"teardown of {name} failed: {err}"
                log.error("%s (run `isobench gc` to clear leftovers)", msg)
                self.teardown_errors.append(msg)

    def run_cell(self, cell: Cell) -> list[Sample]:
        driver = self.drivers[cell.driver]
        workload = self.workloads[cell.workload]
        base = self.base_spec(cell.driver)
        meta = self._driver_meta[cell.driver]
        stamp: dict[str, Any] = {
            "run_id": self.run_id,
            "driver": cell.driver,
            "workload": cell.workload,
            "repetition": cell.repetition,
        }

        def factory(**overrides: Any) -> Any:
            return self._sandbox(driver, base, **overrides)

        self._cell_counter += 1
        scratch = run_work_dir(self.config.state_dir, self.run_id) / "cells" / str(self._cell_counter)
        ctx = WorkloadContext(
            driver=driver,
            spec=base,
            sandbox=factory,
            quick=self.config.quick,
            params=self.config.workload_params.get(cell.workload, {}),
            timeout=self.config.timeout,
            scratch=scratch,
        )
        try:
            scratch.mkdir(parents=True)
            with deadline(self.config.timeout, cell.label):
                measurements = list(workload.run(ctx))
            if not measurements:
                raise IsobenchError(f"workload {cell.workload} produced no measurements")
        except IsobenchError as err:
            return [Sample.failure(**stamp, error=str(err), metadata=meta)]
        except OSError as err:
            return [Sample.failure(**stamp, error=f"{type(err).__name__}: {err}", metadata=meta)]
        except Exception as err:  # a bug in a workload or driver: keep the run going, keep the evidence
            log.error("%s crashed:\n%s", cell.label, traceback.format_exc())
            error = f"internal error: {type(err).__name__}: {err}"
            return [Sample.failure(**stamp, error=error, metadata=meta)]
        finally:
            # A workload that entered a sandbox without leaving it still gets it destroyed here.
            for name in list(self._live):
                self._destroy(name)
            # after the sandboxes: a volume in it may have been mounted by one of them
            shutil.rmtree(scratch, ignore_errors=True)
        return [Sample.from_measurement(m, **stamp, warmup=cell.warmup, metadata=meta) for m in measurements]

    def run(self) -> Results:
        caps = config_caps(self.config, self.workloads)
        cells = expand_matrix(
            list(self.drivers), list(self.workloads), self.config.repetitions, self.config.warmups, caps
        )
        journal = Journal(self.run_dir, {**self.run_info, "drivers": self._driver_meta})
        status = "complete"
        self.progress.start(len(cells))
        try:
            for i, cell in enumerate(cells):
                self.progress.cell_started(cell, i)
                samples = self.run_cell(cell)
                for s in samples:
                    journal.append(s)
                self.progress.cell_finished(cell, samples)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            journal.close(status, teardown_errors=self.teardown_errors)
            results = finalize(self.run_dir)
        return results


def driver_context(config: RunConfig, run_id: str, name: str) -> DriverContext:
    """The context a driver of this run gets; its work dir lives under the run's locked state dir."""
    return DriverContext(
        state_dir=config.state_dir,
        work_dir=run_work_dir(config.state_dir, run_id) / name,
        run_id=run_id,
        options=config.driver_options.get(name, {}),
    )


def run_matrix(
    config: RunConfig,
    drivers: Mapping[str, Driver],
    workloads: Mapping[str, Workload],
    *,
    run_id: str,
    run_dir: Path,
    run_info: Mapping[str, Any],
    progress: Progress | None = None,
) -> tuple[Results, list[str]]:
    """Own the run's state (lock + work dir) for its whole life and remove it on every path.

    Returns the finalised results and the teardown errors (resources that may have leaked).
    """
    with RunLock.acquire(config.state_dir, run_id) as lock:
        runner = Runner(
            config,
            drivers,
            workloads,
            run_id=run_id,
            run_dir=run_dir,
            run_info=run_info,
            progress=progress,
        )
        try:
            return runner.run(), runner.teardown_errors
        finally:
            with shielded():
                for driver in drivers.values():
                    try:
                        driver.close()
                    except Exception as err:
                        log.error("closing driver %s failed: %s (run `isobench gc`)", driver.name, err)
                        runner.teardown_errors.append(f"close {driver.name}: {err}")
                shutil.rmtree(lock.work_dir, ignore_errors=True)
