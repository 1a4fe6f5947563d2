"""The runner: expands the matrix, runs every cell with a deadline, and tears down on every path.

Two modes. With a fixed repetition count (``-n N``, ``[run] repetitions``, ``--quick``) the matrix is
expanded up front (``isobench.schedule``). With a budget (the default: ``isobench.budget``) every unit
first gets its minimum n, then rounds of extra repetitions go where they buy the most precision per
second until every counted figure meets the target or the budget would be exceeded. Either way cells
run in rounds, in a seeded random order within each round, and in an A/B run (``variants``) every
round holds every configuration of each chosen unit, so the two sides are measured interleaved.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from isobench.budget import (
    AB_JUDGED_N,
    CHEAP_SHARE,
    JUDGED_N,
    BudgetClock,
    GroupState,
    Ledger,
    budget_limits,
    budget_record,
    cheap_groups,
    choose_round,
    driving_half_width,
    needed_repetitions,
)
from isobench.config import RunConfig
from isobench.drivers.base import Driver, DriverContext, Sandbox, SandboxSpec
from isobench.errors import IsobenchError, UsageError
from isobench.hostsys import HostProbe
from isobench.hostsys.procstat import host_meanwhile
from isobench.model import Sample
from isobench.results import Journal, Results, finalize
from isobench.runstate import RunLock, run_work_dir
from isobench.schedule import (
    ORDER_DESIGN,
    Cell,
    Unit,
    expand_matrix,
    first_use_round,
    order_round,
    repetition_caps,
    warmup_round,
)
from isobench.signals import deadline, shielded
from isobench.workloads.base import Workload, WorkloadContext

log = logging.getLogger(__name__)

__all__ = [
    "Cell",
    "Progress",
    "Runner",
    "close_drivers",
    "config_caps",
    "expand_matrix",
    "new_run_id",
    "repetition_caps",
    "run_matrix",
]


def new_run_id() -> str:
    """Sortable and short: resource names (veths: 15 chars) must carry it."""
    return time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]


def config_caps(config: RunConfig, workloads: Mapping[str, Workload]) -> dict[str, int]:
    """The caps a fixed-repetition run with ``config`` applies."""
    explicit = config.repetitions if config.repetitions_explicit else None
    return repetition_caps(workloads, quick=config.quick, explicit=explicit)


def first_use_workloads(config: RunConfig, workloads: Mapping[str, Workload]) -> list[str]:
    """The workloads a run with ``config`` gives one unrecorded first-use cell per driver: those
    asking for ``first_use_warmup``, when the run has no warm-up rounds and the user did not choose
    that (a budgeted run without --warmups; the runner runs it only when budgeted)."""
    if config.warmups or config.warmups_explicit:
        return []
    return [w for w, wl in workloads.items() if getattr(wl, "first_use_warmup", False)]


def quick_sized(config: RunConfig) -> bool:
    """Whether workloads run at their quick sizes in a run with ``config``: under --quick, and in
    a budgeted run unless ``sizes = "full"``. On the reference 2-core TCG host one full-size round
    of the default matrix takes ~27 min (a qemu cpu cell alone ~2 min), more than a whole default
    budget; at quick sizes a first pass of every cell just fits it (the 7 x 13 default's took 19:41
    of 20:00 on 2026-12-02, at up to 29% steal), and whatever is left buys repetitions, which sharpen
    a median more than longer cells do (they also spread drift)."""
    if config.quick or config.sizes == "quick":
        return True
    return config.sizes == "auto" and config.budget is not None


class Progress:
    """Callbacks the CLI implements to show progress; the default is silent."""

    def start(self, total: int) -> None: ...

    def extend(self, more: int) -> None:
        """A budgeted run planned ``more`` cells (another round)."""

    def cell_started(self, cell: Cell, index: int, budget_left: float | None = None) -> None: ...

    def cell_finished(self, cell: Cell, samples: Sequence[Sample]) -> None: ...

    def cell_skipped(self, cell: Cell) -> None:
        """A budgeted run did not start ``cell``: it could not have finished in time."""

    def first_pass_done(self, spent: float, left: float) -> None:
        """A budgeted run gave every unit its minimum n in ``spent`` seconds; ``left`` remain for
        the extra rounds that buy precision."""


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
        variants: Mapping[str, RunConfig] | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: HostProbe | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        #: Where the host's /proc/stat is read (every cell records the CPU time the host lost to steal).
        self._host = host or HostProbe()
        self.drivers = dict(drivers)
        self.workloads = dict(workloads)
        self.run_id = run_id
        self.run_dir = run_dir
        self.run_info = dict(run_info)
        self.progress = progress or Progress()
        #: Per A/B label its configuration; one unlabelled configuration outside an A/B run.
        self.configs: dict[str | None, RunConfig] = {None: config}
        if variants:
            self.configs = {label: cfg for label, cfg in variants.items()}
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
        self._sandbox_counter = 0
        self._cell_counter = 0
        self._driver_meta = {name: dict(d.metadata()) for name, d in self.drivers.items()}
        self.teardown_errors: list[str] = []
        #: Per other isobench run live on this host meanwhile, how many of this run's cells it met.
        self.concurrent: dict[str, int] = {}
        self._live: dict[str, Sandbox] = {}
        self._ledger = Ledger()
        #: Per workload, the figures its precision is judged by (glob patterns; isobench.budget).
        self._patterns = {w: tuple(getattr(wl, "precision_figures", ())) for w, wl in self.workloads.items()}
        self._index = 0

    def base_spec(self, driver: str, variant: str | None = None) -> SandboxSpec:
        config = self.configs[variant]
        return SandboxSpec(
            name=f"isobench-{self.run_id}-{driver}",
            run_id=self.run_id,
            vcpus=config.vcpus,
            cpuset=config.cpuset,
            memory_mib=config.memory_mib,
            options=config.driver_options.get(driver, {}),
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
        if spec.io_bps is not None and not driver.capabilities.io_throttle:
            raise UsageError(f"driver {driver.name} cannot limit disk bandwidth (io_bps); leave it unset")
        if spec.cpu_quota is not None and not driver.capabilities.cpu_quota:
            raise UsageError(f"driver {driver.name} cannot express a CPU quota (cpu_quota); leave it unset")
        if spec.layers is not None:
            kind = driver.capabilities.layer_stack
            if kind is None or not spec.layers.has(kind):
                raise UsageError(
                    f"driver {driver.name} cannot stack these layers ({kind or 'no layer stacks'}); leave them unset"
                )
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
        samples, held = host_meanwhile(lambda: self._measure(cell), self._host)
        # Where the cell stood in the run, so the order can be audited from the samples alone; an
        # A/B label is a param, so each configuration's figures form cells of their own. The host's
        # steal share over the cell (none under a CPU-second) unless a figure has its own window's,
        # and the other isobench runs live on this host when it started or ended.
        order = {"round": cell.round, "slot": cell.slot}
        for other in held.get("concurrent_runs", ()):
            self.concurrent[other] = self.concurrent.get(other, 0) + 1
        ab = {"ab": cell.variant} if cell.variant is not None else {}
        return [
            replace(s, params={**s.params, **ab}, metadata={**held, **s.metadata, **order}) for s in samples
        ]

    def _measure(self, cell: Cell) -> list[Sample]:
        driver = self.drivers[cell.driver]
        workload = self.workloads[cell.workload]
        config = self.configs[cell.variant]
        base = self.base_spec(cell.driver, cell.variant)
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
            quick=quick_sized(self.config),
            params=config.workload_params.get(cell.workload, {}),
            timeout=self.config.timeout,
            scratch=scratch,
            state_dir=self.config.state_dir,
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

    # ------------------------------------------------------------------------------ running

    @property
    def labels(self) -> list[str | None]:
        return list(self.configs)

    def _header(self) -> dict[str, Any]:
        info: dict[str, Any] = {**self.run_info, "drivers": self._driver_meta}
        info["order"] = {"design": ORDER_DESIGN, "seed": self.seed}
        if None not in self.configs:
            info["ab"] = {
                "labels": list(self.configs),
                "configs": {label: cfg.options() for label, cfg in self.configs.items()},
            }
        return info

    def _execute(self, cell: Cell, journal: Journal, budget_left: float | None = None) -> None:
        self.progress.cell_started(cell, self._index, budget_left)
        self._index += 1
        started = self._clock()
        samples = self.run_cell(cell)
        self._ledger.record(cell, samples, self._clock() - started)
        for s in samples:
            journal.append(s)
        self.progress.cell_finished(cell, samples)

    def run(self) -> Results:
        journal = Journal(self.run_dir, self._header())
        status = "complete"
        extra: dict[str, Any] = {}
        try:
            if self.config.budget is None:
                self._run_fixed(journal)
            else:
                extra["budget"] = self._run_budgeted(journal, self.config.budget)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if self.concurrent:
                extra["concurrent_runs"] = dict(self.concurrent)
            journal.close(status, teardown_errors=self.teardown_errors, **extra)
            if journal.failed is None:  # else the journal's own error propagates, not a second one
                results = finalize(self.run_dir)
        return results

    def _run_fixed(self, journal: Journal) -> None:
        cells = expand_matrix(
            list(self.drivers),
            list(self.workloads),
            self.config.repetitions,
            self.config.warmups,
            config_caps(self.config, self.workloads),
            seed=self.seed,
            variants=self.labels,
        )
        self.progress.start(len(cells))
        for cell in cells:
            self._execute(cell, journal)

    def _run_budgeted(self, journal: Journal, budget: float) -> dict[str, Any]:
        """Minimum n for every unit, then rounds chosen by isobench.budget.choose_round."""
        rng = random.Random(self.seed)
        workloads = list(self.workloads)
        limits = budget_limits(self.workloads, self.config.cap(ab=len(self.labels) > 1))
        units = [Unit(d, w, v) for w in workloads for d in self.drivers for v in self.labels]
        run = BudgetClock(budget, self._clock)
        capped = [w for w, wl in self.workloads.items() if wl.max_repetitions or wl.quick_repetitions]
        first_n = max(low for low, _ in limits.values())
        # made up front (the same draws of rng, in the same order) to count their cells
        warm = [
            warmup_round(r, units, workloads, capped, rng, first=r == 0) for r in range(self.config.warmups)
        ]
        primed = first_use_workloads(self.config, self.workloads)
        # its own rng: a seed orders the measured rounds as it did before this round existed
        first_use = first_use_round(units, primed, workloads, random.Random(f"first-use:{self.seed}"))
        if first_use:  # only when there are no warm-up rounds (first_use_workloads)
            warm.append(first_use)
        low = {u: limits[u.workload][0] for u in units}
        self.progress.start(sum(map(len, warm)) + sum(low.values()))
        rnd = 0
        grace = self.config.first_pass_grace
        for cells in warm:
            self._run_round(cells, journal, run, grace=grace)
            rnd += 1
        # The first pass is aligned to its end: a unit whose minimum is k repetitions runs in the
        # last k rounds of it. The cheap units that need 3 (start-up, cpu, ...) come first and the
        # one-shot, costly ones (disk, leakage, density, ...) last, so a budget too small for the
        # whole pass (a loaded host) leaves some costly cells unrun, which the budget summary
        # names, rather than the headline's cheap figures at n=1 with no interval. The default
        # budget lets the pass run ``first_pass_grace`` seconds past it, so a default run measures
        # every cell on a slower host too; the extra rounds get what is left, if anything.
        for rep in range(first_n):
            if rep and rep == first_n - 1:  # the cheap figures' need, before the costly cells
                rnd, _ = self._allocate(rnd, limits, journal, run, rng, cheap=CHEAP_SHARE * budget)
            # a unit the cheap rounds already gave its minimum sits the rest of the pass out (and
            # its cell, counted at the start, leaves the progress bar's total)
            due = [u for u in units if rep >= first_n - low[u]]
            chosen = [u for u in due if self._ledger.attempts(u) < low[u]]
            if len(chosen) < len(due):
                self.progress.extend(len(chosen) - len(due))
            self._run_round(self._round(rnd, order_round(chosen, workloads, rng)), journal, run, grace=grace)
            rnd += 1
        first_pass = run.spent()
        self.progress.first_pass_done(first_pass, run.left())
        _, stopped = self._allocate(rnd, limits, journal, run, rng)
        return budget_record(
            self._ledger, self._patterns, self.drivers, self.labels, limits, self.config.precision
        ) | {
            "seconds": budget,
            "spent": round(run.spent(), 1),
            "stopped": stopped,
            "first_pass_s": round(first_pass, 1),
            "first_pass_grace_s": grace,
        }

    def _allocate(
        self,
        rnd: int,
        limits: Mapping[str, tuple[int, int]],
        journal: Journal,
        run: BudgetClock,
        rng: random.Random,
        cheap: float | None = None,
    ) -> tuple[int, str]:
        """Rounds chosen by isobench.budget.choose_round until it chooses none, or, with ``cheap``
        seconds, only for groups whose whole need fits what is left of them; (next round, why it stopped)."""
        target, start = self.config.precision, run.spent()
        while True:
            groups = self._groups(limits)
            left = run.left() if cheap is None else min(run.left(), cheap - (run.spent() - start))
            keys = choose_round(groups if cheap is None else cheap_groups(groups, target, left), target, left)
            if not keys:
                if any(needed_repetitions(g, target) for g in groups):
                    return rnd, "budget spent"
                if any(g.worst is not None and g.worst > target for g in groups):
                    return rnd, "repetition caps or failed cells"
                return rnd, "every counted figure met the target"
            chosen = [Unit(d, w, v) for d, w in keys for v in self.labels]
            self.progress.extend(len(chosen))
            ran = self._run_round(
                self._round(rnd, order_round(chosen, list(self.workloads), rng)), journal, run
            )
            rnd += 1
            if not ran:  # the slowest cells seen say none of the chosen fits any more
                return rnd, "budget spent"

    def _round(self, rnd: int, units: Sequence[Unit]) -> list[Cell]:
        """Cells for ``units`` in this order; a unit listed k times gets k consecutive repetition
        numbers."""
        given: dict[Unit, int] = {}
        cells = []
        for slot, u in enumerate(units):
            rep = self._ledger.attempts(u) + given.get(u, 0)
            given[u] = given.get(u, 0) + 1
            cells.append(Cell(rnd, rep, False, u.driver, u.workload, u.variant, slot))
        return cells

    def _run_round(
        self, cells: Sequence[Cell], journal: Journal, run: BudgetClock, *, grace: float = 0.0
    ) -> int:
        """Run what fits of ``cells`` in the budget and ``grace`` seconds past it; returns how many
        ran."""
        ran = 0
        for cell in cells:
            predicted = self._ledger.predict(cell.unit)
            left = run.left()
            # Never start what cannot finish in time; a never-seen workload cannot be predicted.
            if left + grace <= 0 or (predicted is not None and predicted > left + grace):
                self._ledger.skip(cell)
                self.progress.cell_skipped(cell)
                continue
            self._execute(cell, journal, left)
            ran += 1
        return ran

    def _groups(self, limits: Mapping[str, tuple[int, int]]) -> list[GroupState]:
        groups = []
        for driver in self.drivers:
            for workload, patterns in self._patterns.items():
                units = [Unit(driver, workload, v) for v in self.labels]
                if len(units) > 1:  # A/B: what the gate tests is each change against the first
                    figures = [f for u in units[1:] for f in self._ledger.changes(units[0], u, patterns)]
                else:
                    figures = self._ledger.figures(units[0], patterns)
                costs = [self._ledger.typical_cost(u) for u in units]
                n = min(self._ledger.measured(u) for u in units)
                max_n = limits[workload][1]
                min_n = AB_JUDGED_N if len(self.labels) > 1 else JUDGED_N
                groups.append(
                    GroupState(
                        key=(driver, workload),
                        n=n,
                        max_n=max_n,
                        worst=driving_half_width(figures, n, max_n, self.config.precision, min_n),
                        cost=sum(c if c is not None else math.inf for c in costs),
                        failed=any(self._ledger.failed(u) for u in units),
                        figures=tuple(figures),
                        min_n=min_n,
                    )
                )
        return groups


def driver_context(config: RunConfig, run_id: str, name: str) -> DriverContext:
    """The context a driver of this run gets; its work dir lives under the run's locked state dir."""
    return DriverContext(
        state_dir=config.state_dir,
        work_dir=run_work_dir(config.state_dir, run_id) / name,
        run_id=run_id,
        options=config.driver_options.get(name, {}),
    )


def run_matrix(runner: Runner, *, lock: RunLock | None = None) -> tuple[Results, list[str]]:
    """Own the run's state (lock + work dir) for the runner's whole life and remove it on every path.

    ``lock`` is the run's lock when the caller took it already: drivers probe the host when they
    are selected (a probe guest lives under the run's work dir), so the CLI locks the run first.
    Returns the finalised results and the teardown errors (resources that may have leaked).
    """
    state_dir = runner.config.state_dir
    owned = RunLock.acquire(state_dir, runner.run_id) if lock is None else contextlib.nullcontext(lock)
    with owned as held:
        try:
            return runner.run(), runner.teardown_errors
        finally:
            close_drivers(runner, held.work_dir)
            if runner.teardown_errors:
                held.keep = True  # what leaked is found by `isobench gc` from the kept state


def close_drivers(runner: Runner, work_dir: Path) -> None:
    """Close the runner's drivers and remove the run's work dir (a fleet worker's run ends so too),
    unless a teardown failed: then the work dir stays for ``isobench gc`` (records in it)."""
    with shielded():
        for driver in runner.drivers.values():
            try:
                driver.close()
            except Exception as err:
                log.error("closing driver %s failed: %s (run `isobench gc`)", driver.name, err)
                runner.teardown_errors.append(f"close {driver.name}: {err}")
        if not runner.teardown_errors:
            shutil.rmtree(work_dir, ignore_errors=True)
