"""What one container owns on the host, and the one way it is released (on every path: a
destroy, a failed create, a cold run's end, gc of a dead run)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from isobench.drivers.container import names as naming
from isobench.drivers.container.network import VethPair
from isobench.drivers.container.state import Record
from isobench.errors import IsobenchError
from isobench.hostsys.cgroups import Cgroup
from isobench.hostsys.links import Links

log = logging.getLogger(__name__)

__all__ = ["Resources", "cgroup_args", "seccomp_args"]


@dataclass
class Resources:
    """Everything one container owns, filled in as it is made; ``release`` undoes what is there."""

    names: naming.ContainerNames
    record: Record | None = None
    record_path: Path | None = None
    base_dir: Path | None = None
    cgroup: Cgroup | None = None
    monitor: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    veth: VethPair | None = None
    links: Links = field(default_factory=Links)
    errors: list[str] = field(default_factory=list)

    def _step(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (OSError, IsobenchError, subprocess.SubprocessError) as err:
            self.errors.append(f"{what}: {err}")
            log.warning("teardown of %s: %s: %s", self.names.ident, what, err)

    def release(self) -> None:
        """Tear down in reverse order; every step runs even if an earlier one failed."""
        if self.pidfd is not None:
            self._step("kill init", lambda: _pidfd_kill(self.pidfd))
        if self.monitor is not None:
            self._step("reap helper", lambda: _reap(self.monitor))
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.cgroup is not None:
            self._step("remove cgroup", self.cgroup.remove)
        veth = self.veth
        if veth is not None:
            self._step("delete veth", lambda: self.links.delete(veth.host))
        if self.base_dir is not None:
            self._step("remove overlay dirs", lambda: _rmtree(self.base_dir))
        record_path = self.record_path
        if record_path is not None and not self.errors:
            # Kept when anything failed above, so a later gc() still knows what to look for.
            self._step("remove record", lambda: record_path.unlink(missing_ok=True))
        self.monitor = None
        self.cgroup = None
        self.veth = None
        self.base_dir = None
        self.record_path = None


def _pidfd_kill(pidfd: int | None) -> None:
    if pidfd is None:
        return
    with contextlib.suppress(ProcessLookupError):  # already gone
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes] | None) -> None:
    """Wait for the helper to exit, at most 10 s (then SIGKILL its group). Through a pidfd: it wakes
    the moment the helper exits, where ``Popen.wait(timeout)`` polls with sleeps of 1, 2, 4 ... ms."""
    if proc is None or proc.returncode is not None:
        return
    try:
        pidfd = os.pidfd_open(proc.pid)  # not reaped yet, so the pid is still the helper's
    except ProcessLookupError:
        pidfd = None
    if pidfd is not None:
        try:
            select.select([pidfd], [], [], 10)
        finally:
            os.close(pidfd)
    try:
        proc.wait(timeout=0 if pidfd is not None else 10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _rmtree(path: Path | None) -> None:
    if path is None:
        return
    # A cold run whose upper layer lived in memory left its directory empty: one rmdir.
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    # A container that wrote nothing leaves only empty directories (overlayfs's work dirs
    # included, and the marker file of a ``volatile`` upper): remove them directly, cheaper than
    # rmtree's walk; anything with content falls through to rmtree.
    with contextlib.suppress(OSError):
        os.unlink(path / "work/work/incompat/volatile/dirty")
    empty = ("work/work/incompat/volatile", "work/work/incompat", "work/work", "work", "upper/isobench-work")
    for sub in (*empty, "upper", ""):
        try:
            os.rmdir(path / sub)
        except FileNotFoundError:
            continue
        except OSError:
            break
    if path.exists():
        shutil.rmtree(path)


def cgroup_args(cg: Cgroup | None) -> list[str]:
    if cg is None:
        return []
    own = cg.self_attach_files
    if own:
        return [a for f in own for a in ("--cgroup-tasks", str(f))]
    return [a for f in cg.procs_files for a in ("--cgroup-procs", str(f))]


def seccomp_args(hardening: bool, filter_path: Path | None) -> list[str]:
    """The helper's hardening switch and the compiled filter it loads (read before any setns)."""
    if not hardening:
        return []
    assert filter_path is not None, "hardening without a compiled seccomp filter"
    return ["--harden", "--seccomp", str(filter_path)]
