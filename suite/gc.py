"""``isobench gc``: remove what dead runs left behind, never touching a live run's resources.

A run's state directory (its lock, its drivers' records, its work dir) is removed only once every
driver's gc removed everything of that run; otherwise it is kept, with the records in it, so the
next gc knows what to look for, and every leftover is one line of the report (exit status 1).
"""

from __future__ import annotations

import glob
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isobench.drivers.base import DriverContext, all_drivers
from isobench.errors import GcIncomplete, UsageError
from isobench.images.builder import remove_interrupted_builds
from isobench.layers import remove_stacks
from isobench.leakage import gc as leakage_gc
from isobench.liveruns import live_elsewhere
from isobench.runstate import dead_runs, live_runs

log = logging.getLogger(__name__)

__all__ = ["SCRATCH_ROOT", "GcReport", "gc"]

#: Where the leakage workload's correlation loads keep their scratch files
#: (``isobench-<run_id>-leak-*``, see isobench.leakage.runner.run_correlations).
SCRATCH_ROOT = Path("/var/tmp")


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    #: Resources still there after gc tried, one line each (their run's state is kept).
    leftovers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    #: Live runs of other state directories (from the host-wide registry), described.
    live_elsewhere: list[str] = field(default_factory=list)
    #: State directories of dead runs kept because something of theirs is left.
    kept: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.leftovers or self.errors)


#: ``[drivers.<name>]`` tables of a config file, by driver name.
DriverOptions = Mapping[str, Mapping[str, Any]]


def _driver_gc(
    state_dir: Path, run_id: str | None, work_dir: Path, report: GcReport, options: DriverOptions
) -> bool:
    """Every driver's gc of ``run_id``; whether all of them finished with nothing left."""
    clean = True
    for name, cls in all_drivers().items():
        ctx = DriverContext(
            state_dir=state_dir,
            work_dir=work_dir / name,
            run_id=run_id or "gc",
            options=options.get(name, {}),
        )
        try:
            removed = cls(ctx).gc(run_id)
        except GcIncomplete as err:
            report.removed.extend(f"{name}: {r}" for r in err.removed)
            report.leftovers.extend(f"{name}: {r}" for r in err.leftovers)
            clean = False
            continue
        except Exception as err:
            report.errors.append(f"{name}: {err}")
            clean = False
            continue
        report.removed.extend(f"{name}: {r}" for r in removed)
    return clean


def _canary_gc(run_id: str | None, report: GcReport) -> bool:
    """Leakage canaries are planted on the host itself, outside any driver."""
    try:
        report.removed.extend(f"leakage canary: {r}" for r in leakage_gc(run_id))
    except Exception as err:
        report.errors.append(f"leakage canaries: {err}")
        return False
    return True


def _stack_gc(state_dir: Path, report: GcReport) -> None:
    """Layer stacks (isobench.layers) of images that are gone, and builds whose builder died; a
    stack of an existing image is a cache and stays."""
    from isobench.images import images_dir

    try:
        base = images_dir(state_dir)
        builds = sorted(base.iterdir()) if base.is_dir() else []
        keep = [p.name.rsplit("-", 1)[-1] for p in builds if (p / ".complete").exists()]
        report.removed.extend(f"layer stack: {p}" for p in remove_stacks(state_dir, keep_images=keep))
    except OSError as err:
        report.errors.append(f"layer stacks: {err}")


def scratch_gc(run_id: str | None, report: GcReport, root: Path = SCRATCH_ROOT) -> bool:
    """The leakage loads' scratch directories (a disk load's file can be large)."""
    clean = True
    for d in sorted(root.glob(f"isobench-{glob.escape(run_id) if run_id else '*'}-leak-*")):
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            report.leftovers.append(f"leakage scratch: {d}")
            clean = False
        else:
            report.removed.append(f"leakage scratch: {d}")
    return clean


def gc(
    state_dir: Path,
    *,
    sweep_all: bool = False,
    scratch_root: Path = SCRATCH_ROOT,
    driver_options: DriverOptions | None = None,
    registry: Path | None = None,
) -> GcReport:
    """Clear what dead runs left: a run whose lock is free is dead, and its resources are found by
    its run id. Live runs are never touched. ``driver_options`` are the runs' ``[drivers.*]``
    tables (e.g. the libvirt URI their guests were defined on).

    Locks only show the runs of *this* state dir; the host-wide registry (``registry``, see
    :mod:`isobench.liveruns`) shows the live runs of every other one. A dead run here whose id is
    live elsewhere (one run id in two state dirs) is left alone: its resources are found by that id.

    ``sweep_all`` also removes every isobench-named resource on the host, whichever run made it
    (e.g. a runner killed before its state dir existed). Names do not say which of them a live run
    owns, so the sweep is refused while any run is alive, here or in any state dir, naming them.
    """
    options = driver_options or {}
    elsewhere = live_elsewhere(state_dir, registry)
    report = GcReport(live=live_runs(state_dir), live_elsewhere=[r.describe() for r in elsewhere])
    if sweep_all and (report.live or elsewhere):
        alive = [f"run {r} (this state dir)" for r in report.live] + report.live_elsewhere
        raise UsageError(
            f"refusing to sweep: {'; '.join(alive)} alive, and a sweep cannot tell their resources from"
            " leftovers; stop them or run without --all"
        )
    _stack_gc(state_dir, report)
    busy_ids = {r.run_id: r for r in elsewhere}
    for run_dir in dead_runs(state_dir):
        run_id = run_dir.name
        if run_id in busy_ids:
            report.kept.append(
                f"state: {run_dir} (kept: its resources carry id {run_id}, which {busy_ids[run_id].describe()}"
                " uses now; gc again once that run ended)"
            )
            continue
        clean = _driver_gc(state_dir, run_id, run_dir / "work", report, options)
        clean = _canary_gc(run_id, report) and clean
        clean = scratch_gc(run_id, report, scratch_root) and clean
        if clean:
            shutil.rmtree(run_dir, ignore_errors=True)
            report.removed.append(f"state: {run_dir}")
        else:
            report.kept.append(
                f"state: {run_dir} (kept: run {run_id} has leftovers; gc again once they are freed)"
            )
    report.removed.extend(f"image build: {p}" for p in remove_interrupted_builds(state_dir))
    if sweep_all:
        sweep_dir = state_dir / "runs" / "gc-sweep"
        _driver_gc(state_dir, None, sweep_dir, report, options)
        _canary_gc(None, report)
        scratch_gc(None, report, scratch_root)
        shutil.rmtree(sweep_dir, ignore_errors=True)
    return report
