"""Records of live containers, so ``gc()`` of a later process knows what a dead runner left behind.

One small JSON file per container under ``<state_dir>/container/live/``, written before the first
resource exists (write-ahead: the full path the cgroup will have in every hierarchy, the directory,
the veth name), updated as processes appear, replaced atomically (never fsync'd: see
:func:`write_record`), and removed only after the last resource is gone. A record whose owner
process is still alive belongs to a running runner and is left alone.

Record format history (``version``; a record is versioned data, read by a later isobench):

- 1 (no ``version`` key): ``cgroup`` is a name relative to the driver's ``cgroup_parent``, which gc
  does not know (it looked at the hierarchies' roots); the init pid only once the container is ready.
- 2: ``cgroup_paths`` (the cgroup's full path in every hierarchy, written before it is made),
  ``helper_pid``/``helper_start`` (the native helper, whose session holds the container's init from
  its first moment). Version 1 records still load; gc treats their cgroup as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from isobench.atomic import replacing
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups import host_layout
from isobench.procs import pinned_stat, stat_fields

__all__ = [
    "RECORD_VERSION",
    "Record",
    "current_owner",
    "kill_recorded_init",
    "load_records",
    "owner_alive",
    "planned_cgroup_paths",
    "process_start_time",
    "record_processes",
    "records_dir",
    "write_record",
]

RECORD_VERSION = 2


@dataclass(frozen=True)
class Record:
    ident: str
    run_id: str
    owner_pid: int
    owner_start: str
    dir: str
    cgroup: str | None = None
    veth: str | None = None
    #: Host pid and start time of the container's pid 1 once it runs (gc kills it even without a cgroup).
    init_pid: int | None = None
    init_start: str | None = None
    #: Where the cgroup is (or will be) in every hierarchy: written before it is made.
    cgroup_paths: tuple[str, ...] = ()
    #: The native helper (a session leader; the container's init is in its session until ready).
    helper_pid: int | None = None
    helper_start: str | None = None
    version: int = RECORD_VERSION

    def write(self, state_dir: Path, *, exclusive: bool = False) -> Path:
        """Write (or replace) the record; ``exclusive`` raises FileExistsError if one of that name
        exists (how a container claims its names)."""
        path = records_dir(state_dir) / f"{self.ident}.json"
        # The fields as they are (flat values and a tuple of strings): dataclasses.asdict deep-copies
        # each one, ~70 us of a container's start here.
        write_record(
            path, json.dumps({f.name: getattr(self, f.name) for f in fields(self)}), exclusive=exclusive
        )
        return path


def write_record(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically (a temporary file renamed over it), without fsync;
    ``exclusive``: link it there instead, which fails (FileExistsError) when ``path`` exists.

    A record exists so that gc finds what a runner that died left behind. A runner process that
    dies (SIGKILL, a crash) does not take the page cache with it: the renamed record is there for
    every later reader, whole (a reader sees the old file or the new one, never half of one; a
    runner killed mid-write leaves only a dot-file that :func:`load_records` does not read). What
    an fsync adds is survival of a kernel crash or power loss, and that takes every cgroup, mount,
    namespace, veth and process a record names with it: what is left are the container's
    directories, which gc finds by scanning the work dir for the run's names, record or not (a
    record torn by the crash does not parse and is skipped). Two fsyncs (file and directory)
    forced an ext4 journal commit on every start: 0.9 ms here when quiet, several under load.
    """
    with replacing(path, durable=False, exclusive=exclusive, make_parent=True) as f:
        f.write(text)


def records_dir(state_dir: Path) -> Path:
    return state_dir / "container" / "live"


def _from_json(data: dict[str, object]) -> Record:
    known = {f.name for f in fields(Record)}
    data = {k: v for k, v in data.items() if k in known}
    data.setdefault("version", 1)
    paths = data.get("cgroup_paths")
    if isinstance(paths, list):
        data["cgroup_paths"] = tuple(str(p) for p in paths)
    return Record(**data)  # type: ignore[arg-type]


def load_records(state_dir: Path) -> Iterator[tuple[Path, Record]]:
    d = records_dir(state_dir)
    if not d.is_dir():
        return
    for path in sorted(d.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            yield path, _from_json(data)
        except (OSError, ValueError, TypeError):
            continue


def planned_cgroup_paths(
    host: HostProbe, parent: str, name: str, hierarchies: Iterable[Path] | None = None
) -> tuple[str, ...]:
    """Where a cgroup ``name`` under ``parent`` would be in every mounted hierarchy (a superset of
    the ones the manager uses): known before the cgroup exists, so it can be recorded first.
    ``hierarchies`` saves reading the host's mount table again (the caller's cached copy)."""
    found = host_layout(host).hierarchies() if hierarchies is None else hierarchies
    # Joined as text, as pathlib would (no empty parts): a claim is on a container's start path, and
    # ten Path joins cost ~0.1 ms here.
    tail = "/".join([*(part for part in parent.split("/") if part), name])
    return tuple(f"{str(h).rstrip('/')}/{tail}" for h in found)


def process_start_time(pid: int, proc: Path = Path("/proc")) -> str | None:
    """Field 22 (starttime) of ``pid``: with the pid, which process it is (a reused pid starts
    later). Read without pinning a pidfd (unlike :func:`~isobench.procs.pinned_stat`): the start
    time is itself the identity check, and ``proc`` may be a fake tree."""
    fields = stat_fields(pid, proc)
    return fields[19] if fields is not None and len(fields) > 19 else None


def child_pidfd(pid: int, parent: int, proc: Path = Path("/proc")) -> int | None:
    """A pidfd of ``pid`` if it is, as the pidfd is taken, a child of ``parent`` (None if not).

    The container's init stays the helper's child until the helper reaps it, so a pid number the
    init freed and another process took is never pinned in its place: the parent is read between
    the pidfd_open and a check that the pidfd still signals."""
    pinned = pinned_stat(pid, proc)
    if pinned is None:
        return None
    fd, stat = pinned
    try:
        ppid: int | None = int(stat[1])
    except (ValueError, IndexError):
        ppid = None
    if ppid != parent:
        os.close(fd)
        return None
    return fd


def current_owner(proc: Path = Path("/proc")) -> tuple[int, str]:
    pid = os.getpid()
    return pid, process_start_time(pid, proc) or ""


def owner_alive(record: Record, proc: Path = Path("/proc")) -> bool:
    """Same pid *and* same start time: a recycled pid is not the runner that made the record."""
    if record.owner_pid == os.getpid():
        return False  # gc called by the owner itself: it asked for its leftovers to go
    return process_start_time(record.owner_pid, proc) == record.owner_start


def kill_recorded_init(record: Record, proc: Path = Path("/proc")) -> bool:
    """SIGKILL the recorded pid 1 if it is still that process; its pid namespace dies with it."""
    if record.init_pid is None or process_start_time(record.init_pid, proc) != record.init_start:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.init_pid, signal.SIGKILL)
    return True


def record_processes(record: Record, proc: Path = Path("/proc")) -> list[int]:
    """Host pids that belong to ``record``'s container: helpers whose command line names its
    directory (they are started with it, so this needs no pid written first), every process in
    their sessions (the init before it is ready), and the recorded init if it is still that process.
    """
    needle = (record.dir.rstrip("/") + "/").encode()
    helpers: set[int] = set()
    sessions: dict[int, int] = {}
    try:
        entries = [e for e in proc.iterdir() if e.name.isdigit()]
    except OSError:
        entries = []
    for entry in entries:
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                helpers.add(pid)
        st = stat_fields(pid, proc)
        if st is not None and len(st) > 3:
            sessions[pid] = int(st[3])  # field 6: session id
    if record.helper_pid is not None and process_start_time(record.helper_pid, proc) == record.helper_start:
        helpers.add(record.helper_pid)
    found = set(helpers) | {pid for pid, sid in sessions.items() if sid in helpers}
    if record.init_pid is not None and process_start_time(record.init_pid, proc) == record.init_start:
        found.add(record.init_pid)
    return sorted(found)
