"""The host-wide registry of live runs: which run is alive, with which state directory.

A run's flock (:mod:`isobench.runstate`) tells a gc of the *same* state directory that the run
lives; a gc of another state directory (a test's temporary one, another user's) cannot see it, and
resources carry run ids, not state directories. So every run also registers itself here, in one
place per host: ``/run/isobench/live`` (0700; ``ISOBENCH_LIVE_DIR`` moves it), one file per run
with its id, pid, the process's start time and its state directory, removed when the run ends.

An entry of a killed run stays behind and is ignored (and pruned by the next reader): its pid is
dead, or is now another process with another start time. The start time is read between a
``pidfd_open`` and a check that the pidfd still signals, so it is the registered process's own
even if the pid was recycled meanwhile. An entry that does not parse (torn by a crash) is never
pruned, since it may be a live run's: its name still says which run and pid (``<id>.<pid>.<hash>``),
and :func:`registry_problems` reports it. A temp file of a writer killed mid-write is removed once
it is a minute old.

:class:`Sparing` is what ``isobench gc --all`` hands every driver: the live runs whose resources a
sweep must leave alone, and a note of what it left of each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isobench.procs import pinned_stat

__all__ = [
    "TEMP_MAX_AGE_S",
    "LiveRun",
    "Sparing",
    "default_registry",
    "find_live",
    "live_elsewhere",
    "live_runs_anywhere",
    "register",
    "registry_problems",
    "stale_temp_files",
    "start_time",
]

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = Path("/run/isobench/live")
#: A temp file of an atomic write older than this is a killed writer's (a write takes milliseconds).
TEMP_MAX_AGE_S = 60.0


def default_registry() -> Path:
    return Path(os.environ.get("ISOBENCH_LIVE_DIR", str(DEFAULT_REGISTRY)))


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    pid: int
    #: Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, one process.
    start: str
    state_dir: str
    #: The fleet run this is one host's part of (a worker's run id is the fleet's with its host's
    #: digits, :func:`isobench.cluster.worker.host_run_id`); "" for a run of its own.
    part_of: str = ""

    @property
    def known_as(self) -> str:
        """The id a user knows this run by (its results directory's): a fleet run's, for a host's part."""
        return self.part_of or self.run_id

    def describe(self) -> str:
        fleet = f", part of fleet run {self.part_of}" if self.part_of else ""
        return f"run {self.run_id} (pid {self.pid}, state dir {self.state_dir}{fleet})"


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
def register(
    run_id: str, state_dir: Path, registry: Path | None = None, *, part_of: str = ""
) -> Iterator[Path | None]:
    """This process is run ``run_id`` of ``state_dir`` until the block ends (on every path); a fleet
    worker's run names its fleet run in ``part_of``. A registry that cannot be written (not root) is
    a warning: the run is then visible to gc of its own state dir only, as before the registry."""
    base = registry or default_registry()
    me = os.getpid()
    entry = LiveRun(run_id, me, start_time(me) or "", str(state_dir.resolve()), part_of)
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
        return LiveRun(
            str(doc["run_id"]),
            int(doc["pid"]),
            str(doc["start"]),
            str(doc["state_dir"]),
            str(doc.get("part_of") or ""),  # absent from entries written before it
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _named(path: Path) -> tuple[str, int] | None:
    """Run id and pid from an entry's name (``<id>.<pid>.<hash>``; ids may hold dots)."""
    parts = path.name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _entries(base: Path) -> list[Path]:
    try:
        return sorted(p for p in base.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def stale_temp_files(directory: Path, now: float | None = None) -> Iterator[Path]:
    """Temp files of atomic writes (``.<name>.<suffix>``) older than :data:`TEMP_MAX_AGE_S`."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.startswith(".") and p.is_file())
    except OSError:
        return
    now = time.time() if now is None else now
    for path in paths:
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > TEMP_MAX_AGE_S:
                yield path


def live_runs_anywhere(registry: Path | None = None, proc: Path = Path("/proc")) -> list[LiveRun]:
    """Every registered run whose process still lives (same pid, same start time); the entries
    of dead runs are removed on the way. An unparsable entry whose named pid lives counts as that
    run (its start time and state dir unknown): it may be a live run's, so it is never pruned."""
    found = []
    for path in _entries(registry or default_registry()):
        run = _read(path)
        if run is None:
            named = _named(path)
            if named is not None and start_time(named[1], proc) is not None:
                found.append(LiveRun(named[0], named[1], "", "?"))
            continue
        if run.start and start_time(run.pid, proc) == run.start:
            found.append(run)
            continue
        log.debug("pruning stale live-run entry %s", path)
        with contextlib.suppress(OSError):
            path.unlink()
    return found


def find_live(run_id: str, registry: Path | None = None) -> LiveRun | None:
    """The live process of run ``run_id``, if one is registered on this host."""
    return next((r for r in live_runs_anywhere(registry) if r.run_id == run_id), None)


def registry_problems(registry: Path | None = None, now: float | None = None) -> tuple[list[str], list[str]]:
    """Removes the registry's stale temp files; returns (what went, what is wrong and kept: one
    line per unparsable entry, saying what to do)."""
    base = registry or default_registry()
    removed, problems = [], []
    for tmp in stale_temp_files(base, now):
        try:
            tmp.unlink()
            removed.append(f"stale temp file {tmp}")
        except OSError as err:
            problems.append(f"stale temp file {tmp}: cannot remove it: {err.strerror}")
    for path in _entries(base):
        if _read(path) is None and path.exists():
            problems.append(
                f"unparsable live-run entry {path} (kept: it may be a live run's; once no isobench "
                "run of that id and pid lives, delete it)"
            )
    return removed, problems


def live_elsewhere(state_dir: Path, registry: Path | None = None) -> list[LiveRun]:
    """The live runs of every state directory but ``state_dir`` (whose runs its locks show)."""
    here = str(state_dir.resolve())
    return [r for r in live_runs_anywhere(registry) if r.state_dir != here]


@dataclass
class Sparing:
    """The live runs a sweep of every run's resources leaves alone, and what it left: resources of
    each live run, and resources whose owner could not be told (kept, with why)."""

    runs: tuple[LiveRun, ...] = ()
    spared: dict[LiveRun, set[str]] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)

    def owner(self, owns: Callable[[str], bool]) -> LiveRun | None:
        """The live run ``owns`` accepts the id of (the resource's name carries it), if any."""
        return next((r for r in self.runs if owns(r.run_id)), None)

    def owner_of_pids(self, pids: Iterable[int]) -> LiveRun | None:
        """The live run whose runner is one of ``pids`` (say, the holders of a lock)."""
        held = set(pids)
        return next((r for r in self.runs if r.pid in held), None)

    def spares(self, what: str, owns: Callable[[str], bool]) -> bool:
        """Whether ``what`` belongs to a live run (``owns`` its id); noted as spared if so."""
        run = self.owner(owns)
        if run is not None:
            self.spare(run, what)
        return run is not None

    def spare(self, run: LiveRun, what: str) -> None:
        self.spared.setdefault(run, set()).add(what)

    def keep(self, what: str, why: str) -> None:
        """``what`` is kept because whose it is cannot be told."""
        self.unknown[what] = why

    def spared_lines(self) -> list[str]:
        """One line per live run: how many of its resources were spared, and which (a kind with
        several, e.g. a cgroup in each hierarchy, as a count)."""
        return [
            f"spared {len(items)} resource{'s' if len(items) != 1 else ''} of live run {run.run_id} "
            f"(pid {run.pid}): {_summary(items)}"
            for run, items in sorted(self.spared.items(), key=lambda kv: kv[0].run_id)
        ]

    def kept_lines(self) -> list[str]:
        """One line per resource kept because whose it is could not be told."""
        return [f"{what} (kept: {why})" for what, why in sorted(self.unknown.items())]


def _summary(items: Iterable[str]) -> str:
    """``cgroup /a``, ``cgroup /b``, ``docker slot 3`` -> ``2 cgroup, docker slot 3``: by kind (all
    but an item's last word)."""
    kinds: dict[str, list[str]] = {}
    for item in sorted(items):
        kinds.setdefault(item.rsplit(" ", 1)[0] if " " in item else item, []).append(item)
    return ", ".join(found[0] if len(found) == 1 else f"{len(found)} {kind}" for kind, found in kinds.items())
