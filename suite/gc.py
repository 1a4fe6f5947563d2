"""``isobench gc``: remove what dead runs left behind, never touching a live run's resources.

A run's state directory (its lock, its drivers' records, its work dir) is removed only once every
driver's gc removed everything of that run; otherwise it is kept, with the records in it, so the
next gc knows what to look for, and every leftover is one line of the report (exit status 1).

Records are never skipped silently: a temp file of an atomic write older than a minute is a killed
writer's and is removed; a record that does not parse is kept and reported (exit status 1).

``--all`` sweeps every isobench resource on the host except the live runs' (from their locks and
the host-wide registry): each driver that can tell a live run's resources (``spares_live_runs``)
sweeps around them and notes what it spared; a driver that cannot is not swept while any run lives.
"""

from __future__ import annotations

import glob
import json
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from isobench.drivers.base import DriverContext, all_drivers
from isobench.drivers.container.state import records_dir
from isobench.errors import GcIncomplete
from isobench.images.builder import remove_interrupted_builds
from isobench.layers import remove_stacks
from isobench.leakage import gc as leakage_gc
from isobench.liveruns import (
    LiveRun,
    Sparing,
    live_elsewhere,
    registry_problems,
    stale_temp_files,
    start_time,
)
from isobench.runstate import dead_runs, live_runs, runs_dir

log = logging.getLogger(__name__)

__all__ = ["SCRATCH_ROOT", "GcReport", "gc"]

#: Where the leakage workload's correlation loads keep their scratch files
#: (``isobench-<run_id>-leak-*``, see isobench.leakage.runner.run_correlations).
SCRATCH_ROOT = Path("/var/tmp")
#: Where the leakage workload plants its host canaries (``isobench-<run_id>-canary-*``).
CANARY_ROOT = Path("/tmp")


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    #: Resources still there after gc tried, one line each (their run's state is kept).
    leftovers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    #: Live runs of other state directories (from the host-wide registry), described.
    live_elsewhere: list[str] = field(default_factory=list)
    #: State directories of dead runs kept because something of theirs is left, and resources a
    #: sweep kept because whose they are could not be told.
    kept: list[str] = field(default_factory=list)
    #: What a sweep left of each live run (one line per run).
    spared: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.leftovers or self.errors)


#: ``[drivers.<name>]`` tables of a config file, by driver name.
DriverOptions = Mapping[str, Mapping[str, Any]]


def _driver_gc(
    state_dir: Path,
    run_id: str | None,
    work_dir: Path,
    report: GcReport,
    options: DriverOptions,
    sparing: Sparing | None = None,
) -> bool:
    """Every driver's gc of ``run_id`` (of every run but ``sparing``'s: None); whether all of them
    finished with nothing left."""
    clean = True
    sparing = sparing or Sparing()
    for name, cls in all_drivers().items():
        # Declared by the drivers whose gc(None) honours ctx.sparing (see DriverContext).
        if run_id is None and sparing.runs and not getattr(cls, "spares_live_runs", False):
            report.kept.append(
                f"{name}: not swept (its gc cannot tell a live run's resources from leftovers); "
                "gc --all again once no run lives"
            )
            continue
        ctx = DriverContext(
            state_dir=state_dir,
            work_dir=work_dir / name,
            run_id=run_id or "gc",
            options=options.get(name, {}),
            sparing=sparing,
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


def _canary_gc(run_id: str | None, report: GcReport, sparing: Sparing | None = None) -> bool:
    """Leakage canaries are planted on the host itself, outside any driver. A sweep while runs
    live collects the canaries of the other runs by id (their directories name it)."""
    try:
        if run_id is not None or sparing is None or not sparing.runs:
            report.removed.extend(f"leakage canary: {r}" for r in leakage_gc(run_id))
            return True
        in_use = _canary_users(CANARY_ROOT)
        for rid in sorted(_canary_run_ids(CANARY_ROOT)):
            if sparing.spares(f"leakage canaries of {rid}", rid.__eq__):
                continue
            users = in_use.get(rid)
            if users:
                # A canary process runs: a run that lives without a registry entry (a test's).
                sparing.keep(f"leakage canaries of {rid}", f"in use by pid {', '.join(map(str, users))}")
                continue
            report.removed.extend(f"leakage canary: {r}" for r in leakage_gc(rid))
    except Exception as err:
        report.errors.append(f"leakage canaries: {err}")
        return False
    return True


def _canary_users(root: Path) -> dict[str, list[int]]:
    """Per run id, the processes running from its canary directories."""
    pattern = re.compile(rb"^" + re.escape(str(root).encode()) + rb"/isobench-(.+?)-canary-")
    users: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                m = pattern.match((entry / "cmdline").read_bytes())
            except OSError:
                continue
            if m:
                users.setdefault(m.group(1).decode(errors="replace"), []).append(int(entry.name))
    return users


def _canary_run_ids(root: Path) -> set[str]:
    found = set()
    for d in root.glob("isobench-*-canary-*"):
        m = re.fullmatch(r"isobench-(.+)-canary-.*", d.name)
        if m:
            found.add(m.group(1))
    return found


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


def scratch_gc(
    run_id: str | None, report: GcReport, root: Path = SCRATCH_ROOT, sparing: Sparing | None = None
) -> bool:
    """The leakage loads' scratch directories (a disk load's file can be large)."""
    clean = True
    for d in sorted(root.glob(f"isobench-{glob.escape(run_id) if run_id else '*'}-leak-*")):
        if sparing is not None and sparing.spares(f"leakage scratch {d}", partial(_scratch_of, d.name)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            report.leftovers.append(f"leakage scratch: {d}")
            clean = False
        else:
            report.removed.append(f"leakage scratch: {d}")
    return clean


def _scratch_of(name: str, run_id: str) -> bool:
    return name.startswith(f"isobench-{run_id}-leak-")


def records_gc(directory: Path, report: GcReport, what: str) -> None:
    """A directory of JSON records written atomically (temp file, then rename or link): removes the
    temp files of killed writers, reports (and keeps) records that do not parse."""
    for tmp in stale_temp_files(directory):
        try:
            tmp.unlink()
            report.removed.append(f"{what}: stale temp file {tmp}")
        except OSError as err:
            report.leftovers.append(f"{what}: stale temp file {tmp}: cannot remove it: {err.strerror}")
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            ok = isinstance(json.loads(path.read_text()), dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            report.leftovers.append(
                f"{what}: unparsable record {path} (kept: gc cannot tell what it names; check that "
                "nothing of it is left (isobench gc --all clears what no live run holds), then delete it)"
            )


def _live_here(state_dir: Path) -> list[LiveRun]:
    """The live runs of this state dir, from their locks (the lock file holds the runner's pid)."""
    found = []
    for run_id in live_runs(state_dir):
        try:
            pid = int((runs_dir(state_dir) / run_id / "lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        found.append(LiveRun(run_id, pid, start_time(pid) or "" if pid else "", str(state_dir.resolve())))
    return found


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

    ``sweep_all`` also removes every isobench-named resource on the host that no live run (here or
    in any state dir) owns, e.g. of a runner killed before its state dir existed; what it spared of
    each live run is in ``report.spared``, what it could not attribute in ``report.kept``.
    """
    options = driver_options or {}
    elsewhere = live_elsewhere(state_dir, registry)
    report = GcReport(live=live_runs(state_dir), live_elsewhere=[r.describe() for r in elsewhere])
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
    records_gc(records_dir(state_dir), report, "container records")
    gone, problems = registry_problems(registry)
    report.removed.extend(f"live-run registry: {g}" for g in gone)
    report.leftovers.extend(f"live-run registry: {p}" for p in problems)
    if sweep_all:
        _sweep(state_dir, report, options, scratch_root, elsewhere)
    return report


def _sweep(
    state_dir: Path, report: GcReport, options: DriverOptions, scratch_root: Path, elsewhere: list[LiveRun]
) -> None:
    here = _live_here(state_dir)
    sparing = Sparing((*here, *elsewhere))
    for run in here:
        sparing.spare(run, f"state {runs_dir(state_dir) / run.run_id}")
    sweep_dir = runs_dir(state_dir) / "gc-sweep"
    _driver_gc(state_dir, None, sweep_dir, report, options, sparing)
    _canary_gc(None, report, sparing)
    scratch_gc(None, report, scratch_root, sparing)
    shutil.rmtree(sweep_dir, ignore_errors=True)
    report.spared.extend(sparing.spared_lines())
    report.kept.extend(sparing.kept_lines())
