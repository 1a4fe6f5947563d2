"""Records of live containers, so ``gc()`` of a later process knows what a dead runner left behind.

One small JSON file per container under ``<state_dir>/container/live/``, written before the first
resource exists and removed after the last one is gone. A record whose owner process is still alive
belongs to a running runner and is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "Record",
    "current_owner",
    "kill_recorded_init",
    "load_records",
    "owner_alive",
    "process_start_time",
    "records_dir",
]


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

    def write(self, state_dir: Path) -> Path:
        path = records_dir(state_dir) / f"{self.ident}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)
        return path


def records_dir(state_dir: Path) -> Path:
    return state_dir / "container" / "live"


def load_records(state_dir: Path) -> Iterator[tuple[Path, Record]]:
    d = records_dir(state_dir)
    if not d.is_dir():
        return
    for path in sorted(d.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            yield path, Record(**data)
        except (OSError, ValueError, TypeError):
            continue


def process_start_time(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counted after the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[19]


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
