"""The host-wide registry of live runs: which run is alive, with which state directory.

A run's flock (:mod:`isobench.runstate`) tells a gc of the *same* state directory that the run
lives; a gc of another state directory (a test's temporary one, another user's) cannot see it, and
resources carry run ids, not state directories. So every run also registers itself here, in one
place per host: ``/run/isobench/live`` (0700; ``ISOBENCH_LIVE_DIR`` moves it), one file per run
with its id, pid, the process's start time and its state directory, removed when the run ends.

An entry of a killed run stays behind and is ignored (and pruned by the next reader): its pid is
dead, or is now another process with another start time. The start time is read between a
``pidfd_open`` and a check that the pidfd still signals, so it is the registered process's own
even if the pid was recycled meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from isobench.procs import pinned_stat

__all__ = ["LiveRun", "default_registry", "live_elsewhere", "live_runs_anywhere", "register", "start_time"]

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = Path("/run/isobench/live")


def default_registry() -> Path:
    return Path(os.environ.get("ISOBENCH_LIVE_DIR", str(DEFAULT_REGISTRY)))


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    pid: int
    #: Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, one process.
    start: str
    state_dir: str

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid}, state dir {self.state_dir})"


def start_time(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The start time of the process ``pid`` is now, or None if there is none."""
    pinned = pinned_stat(pid, proc)
    if pinned is None:
        return None
    pidfd, stat = pinned
    os.close(pidfd)
    # Field 22 (starttime), counted from field 3.
    return stat[19] if len(stat) > 19 else None


def _entry_name(run_id: str, pid: int, state_dir: str) -> str:
    # One run id may be live in two state dirs at once (a benchmark's legs, a fleet's hosts).
    return f"{run_id}.{pid}.{hashlib.sha256(state_dir.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def register(run_id: str, state_dir: Path, registry: Path | None = None) -> Iterator[Path | None]:
    """This process is run ``run_id`` of ``state_dir`` until the block ends (on every path). A
    registry that cannot be written (not root) is a warning: the run is then visible to gc of its
    own state dir only, as before the registry."""
    base = registry or default_registry()
    me = os.getpid()
    entry = LiveRun(run_id, me, start_time(me) or "", str(state_dir.resolve()))
    path = base / _entry_name(run_id, me, entry.state_dir)
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(entry), fh)
        os.replace(tmp, path)
    except OSError as err:
        log.warning(
            "cannot register run %s in %s (%s): a gc of another state dir will not see it", run_id, base, err
        )
        yield None
        return
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _read(path: Path) -> LiveRun | None:
    try:
        doc = json.loads(path.read_text())
        return LiveRun(str(doc["run_id"]), int(doc["pid"]), str(doc["start"]), str(doc["state_dir"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_runs_anywhere(registry: Path | None = None, proc: Path = Path("/proc")) -> list[LiveRun]:
    """Every registered run whose process still lives (same pid, same start time); the entries
    of dead runs are removed on the way."""
    base = registry or default_registry()
    try:
        paths = sorted(p for p in base.iterdir() if not p.name.startswith("."))
    except OSError:
        return []
    found = []
    for path in paths:
        run = _read(path)
        if run is not None and run.start and start_time(run.pid, proc) == run.start:
            found.append(run)
            continue
        log.debug("pruning stale live-run entry %s", path)
        with contextlib.suppress(OSError):
            path.unlink()
    return found


def live_elsewhere(state_dir: Path, registry: Path | None = None) -> list[LiveRun]:
    """The live runs of every state directory but ``state_dir`` (whose runs its locks show)."""
    here = str(state_dir.resolve())
    return [r for r in live_runs_anywhere(registry) if r.state_dir != here]
