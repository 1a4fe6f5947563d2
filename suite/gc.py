"""``isobench gc``: remove what dead runs left behind, never touching a live run's resources."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from isobench.drivers.base import DriverContext, all_drivers
from isobench.errors import UsageError
from isobench.images.builder import remove_interrupted_builds
from isobench.leakage import gc as leakage_gc
from isobench.runstate import dead_runs, live_runs

log = logging.getLogger(__name__)

__all__ = ["GcReport", "gc"]


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)


def _driver_gc(state_dir: Path, run_id: str | None, work_dir: Path, report: GcReport) -> None:
    for name, cls in all_drivers().items():
        ctx = DriverContext(state_dir=state_dir, work_dir=work_dir / name, run_id=run_id or "gc")
        try:
            removed = cls(ctx).gc(run_id)
        except Exception as err:
            report.errors.append(f"{name}: {err}")
            continue
        report.removed.extend(f"{name}: {r}" for r in removed)


def _canary_gc(run_id: str | None, report: GcReport) -> None:
    """Leakage canaries are planted on the host itself, outside any driver."""
    try:
        report.removed.extend(f"leakage canary: {r}" for r in leakage_gc(run_id))
    except Exception as err:
        report.errors.append(f"leakage canaries: {err}")


def gc(state_dir: Path, *, sweep_all: bool = False) -> GcReport:
    """Clear what dead runs left: a run whose lock is free is dead, and its resources are found by
    its run id. Live runs are never touched.

    ``sweep_all`` also removes every isobench-named resource on the host, whichever run made it
    (e.g. a runner killed before its state dir existed). Locks only show the runs of *this* state
    dir, so a sweep would destroy a live run that uses another one: it is refused while any run here
    is alive, and the caller must know no other isobench run is active on the host.
    """
    report = GcReport(live=live_runs(state_dir))
    for run_dir in dead_runs(state_dir):
        _driver_gc(state_dir, run_dir.name, run_dir / "work", report)
        _canary_gc(run_dir.name, report)
        shutil.rmtree(run_dir, ignore_errors=True)
        report.removed.append(f"state: {run_dir}")
    report.removed.extend(f"image build: {p}" for p in remove_interrupted_builds(state_dir))
    if sweep_all:
        if report.live:
            raise UsageError(
                f"refusing to sweep: run(s) {', '.join(report.live)} are alive; stop them or run without --all"
            )
        sweep_dir = state_dir / "runs" / "gc-sweep"
        _driver_gc(state_dir, None, sweep_dir, report)
        _canary_gc(None, report)
        shutil.rmtree(sweep_dir, ignore_errors=True)
    return report
