"""Who owns what on this host: a run holds an flock on its state directory for its whole life.

``<state_dir>/runs/<run_id>/lock`` is locked while the runner lives; the kernel drops the lock when the
process dies, however it dies. So ``isobench gc`` can tell a dead run's leftovers (lock free) from a
live run's resources (lock held) without trusting pids. A run also registers in the host-wide
registry (:mod:`isobench.liveruns`) for as long as it holds the lock, so a gc of another state dir
sees it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import UsageError
from isobench.liveruns import register

__all__ = ["RunLock", "dead_runs", "is_locked", "live_runs"]


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "runs"


def run_work_dir(state_dir: Path, run_id: str) -> Path:
    return runs_dir(state_dir) / run_id / "work"


@dataclass
class RunLock:
    run_id: str
    dir: Path
    fd: int
    #: Set when a teardown failed: the state dir outlives the run (its lock freed), so ``isobench
    #: gc`` sees a dead run and removes what it left.
    keep: bool = False

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"  # == run_work_dir(state_dir, run_id)

    @classmethod
    @contextlib.contextmanager
    def acquire(cls, state_dir: Path, run_id: str, *, part_of: str = "") -> Iterator[RunLock]:
        """Lock ``run_id``'s state in ``state_dir`` and register it host-wide (a fleet worker's run
        with the fleet run it is ``part_of``) until the block ends; its state goes with it."""
        d = runs_dir(state_dir) / run_id
        try:
            d.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise UsageError(f"run id {run_id} already has state in {d}") from None
        except OSError as err:
            raise UsageError(f"cannot create state directory {d}: {err.strerror}") from err
        fd = os.open(d / "lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        lock = cls(run_id, d, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n".encode())
            (d / "work").mkdir()
            # The lock shows the run to gc of this state dir; the registry to every other one.
            with register(run_id, state_dir, part_of=part_of):
                yield lock
        finally:
            if not lock.keep:
                shutil.rmtree(d, ignore_errors=True)
            os.close(fd)


def is_locked(lock: Path) -> bool:
    """Whether a live process holds an flock on ``lock`` (a missing file is not locked)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def live_runs(state_dir: Path) -> list[str]:
    base = runs_dir(state_dir)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if is_locked(p / "lock"))


def dead_runs(state_dir: Path) -> list[Path]:
    base = runs_dir(state_dir)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not is_locked(p / "lock"))
