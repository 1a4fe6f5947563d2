"""What both cgroup backends share: the manager and cgroup interfaces, limits, and the file
helpers (read a value, write a limit, kill everything inside, remove a tree).

Creating a cgroup either applies every limit or raises one :class:`SandboxError` naming the
controller or file, having removed whatever it made (youki's ``libcgroups`` split, in small).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from isobench.errors import IsobenchError, SandboxError
from isobench.hostsys.cgroups.devices import DeviceRule
from isobench.hostsys.cgroups.files import write_lines
from isobench.hostsys.cgroups.layout import Mode

log = logging.getLogger(__name__)

__all__ = ["Cgroup", "CgroupLimits", "CgroupManager", "Rmdir", "parse_flat_keyed", "remove_matching"]

Rmdir = Callable[[Path], None]


@dataclass(frozen=True)
class CgroupLimits:
    """What to enforce. None means "no limit" for that resource."""

    memory_bytes: int | None = None
    #: Swap allowed *on top of* memory_bytes; 0 forbids swapping, None leaves swap unlimited.
    swap_bytes: int | None = 0
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    cpuset: tuple[int, ...] | None = None
    pids_max: int | None = None
    #: Disk bandwidth, bytes/s read and write each, on every device of ``io_devices``
    #: (``(major, minor)`` of whole disks); None: no limit.
    io_bps: int | None = None
    io_devices: tuple[tuple[int, int], ...] = ()
    #: Devices the cgroup may use (v1 devices controller, v2 device program); None: no control.
    devices: tuple[DeviceRule, ...] | None = None

    def __post_init__(self) -> None:
        if self.io_bps is not None and not self.io_devices:
            raise SandboxError("cgroup disk bandwidth limit needs at least one device")
        if self.cpu_quota_us is not None and self.cpu_quota_us < 1000:
            raise SandboxError(f"cgroup cpu quota {self.cpu_quota_us}us is below the kernel minimum 1000us")
        if self.swap_bytes is not None and self.memory_bytes is None and self.swap_bytes > 0:
            raise SandboxError("cgroup swap limit needs a memory limit as well")


class Cgroup(Protocol):
    """One container's cgroup (in every hierarchy it spans)."""

    @property
    def name(self) -> str: ...

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Files another process writes a pid to so that pid joins the cgroup everywhere."""
        ...

    @property
    def self_attach_files(self) -> tuple[Path, ...]:
        """Files a single-threaded process writes "0" to in order to move *itself* (v1's cheap path);
        a process uses either these or :attr:`procs_files`, not both."""
        ...

    def stats(self) -> dict[str, float]: ...

    def pids(self) -> set[int]: ...

    def kill(self) -> None:
        """SIGKILL everything inside until it is empty."""
        ...

    def remove(self) -> None:
        """Kill what is left and remove the directories. Idempotent."""
        ...


class CgroupManager(Protocol):
    mode: Mode

    def controllers(self) -> set[str]:
        """Controllers a cgroup made here can use."""
        ...

    def create(self, name: str, limits: CgroupLimits) -> Cgroup: ...

    def plan(self, name: str, limits: CgroupLimits) -> Cgroup:
        """The cgroup ``create`` would make, not made yet: its files' paths, so a process can be
        told where to attach while the cgroup is being made. Raises what ``create`` would for a
        controller the host lacks."""
        ...

    def find(self, match: Callable[[str], bool]) -> list[str]:
        """Names of existing cgroups (directly under our parent) that ``match`` accepts."""
        ...

    def open(self, name: str) -> Cgroup:
        """An existing cgroup by name, in every hierarchy it exists in (for gc)."""
        ...


# ------------------------------------------------------------------------------------------------ shared


def remove_matching(manager: CgroupManager, match: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """Remove every cgroup of ``manager`` that ``match`` accepts (gc): ``(removed, left)``, each as
    ``cgroup <name>``, a left one followed by why it could not go."""
    removed: list[str] = []
    left: list[str] = []
    for name in manager.find(match):
        try:
            manager.open(name).remove()
            removed.append(f"cgroup {name}")
        except IsobenchError as err:
            left.append(f"cgroup {name}: {err}")
    return removed, left


def write_value(path: Path, value: str, what: str) -> None:
    write_lines(path, (value,), what, "; lower or drop that limit")


def write_swap_limit(path: Path, value: int, what: str, no_accounting: str) -> None:
    """A swap limit, which needs the kernel's swap accounting: without it the file is missing, and a
    limit silently left off would measure something else than was asked."""
    if not path.exists():
        raise SandboxError(f"{no_accounting} or set the container option swap_mib to null")
    write_value(path, str(value), what)


def read_number(path: Path, default: float = 0.0) -> float:
    try:
        text = path.read_text().strip()
    except OSError:
        return default
    if text == "max":
        return float("inf")
    try:
        return float(text)
    except ValueError:
        return default


def parse_flat_keyed(text: str) -> dict[str, float]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def footprint_bytes(stat: Mapping[str, float], kmem: float | None = None) -> float | None:
    """The memory a cgroup's pages and kernel objects take, from its ``memory.stat`` (v2: anon +
    file + kernel + sock; v1: total_rss + total_cache + ``memory.kmem.usage_in_bytes`` as
    ``kmem``), without the per-CPU charge reserve that the usage counters (v1
    ``memory.usage_in_bytes``, v2 ``memory.current``) include: up to 64 pages a CPU, which is most
    of what an idle sandbox's few hundred KiB read. None where a part is missing (v2 before Linux
    5.18 has no ``kernel``; a v1 kernel without kmem accounting no kmem file)."""
    if "anon" in stat:
        if "file" not in stat or "kernel" not in stat:
            return None
        return stat["anon"] + stat["file"] + stat["kernel"] + stat.get("sock", 0.0)
    if "total_rss" in stat and "total_cache" in stat and kmem is not None:
        return stat["total_rss"] + stat["total_cache"] + kmem
    return None


def read_keyed(path: Path) -> dict[str, float]:
    try:
        return parse_flat_keyed(path.read_text())
    except OSError:
        return {}


def read_pids(path: Path) -> set[int]:
    try:
        return {int(x) for x in path.read_text().split()}
    except (OSError, ValueError):
        return set()


def kill_loop(procs_files: Iterable[Path], deadline_s: float = 5.0) -> None:
    """SIGKILL until no process is left; a fork bomb under a pids limit is finite, so this ends."""
    files = list(procs_files)
    end = time.monotonic() + deadline_s
    while True:
        pids: set[int] = set()
        for f in files:
            pids |= read_pids(f)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            raise SandboxError(f"cgroup still has processes {sorted(pids)} after SIGKILL; check for D-state")
        time.sleep(0.002)


def make_cgroup(dirs: Iterable[Path], rmdir: Rmdir, apply: Callable[[], None]) -> None:
    """mkdir each of ``dirs``, then ``apply()`` the limits; on any failure (Ctrl-C included) what was
    made is removed again, newest first, so a half-made cgroup never outlives its error."""
    made: list[Path] = []
    try:
        for d in dirs:
            try:
                d.mkdir()
            except OSError as err:
                raise SandboxError(f"cannot create cgroup {d}: {err.strerror}") from err
            made.append(d)
        apply()
    except BaseException:
        for d in reversed(made):
            try:
                rmdir_retry(d, rmdir)
            except SandboxError as err:
                log.warning("%s", err)
        raise


def rmdir_retry(path: Path, rmdir: Rmdir, deadline_s: float = 5.0) -> None:
    """rmdir a cgroup; EBUSY lasts until killed tasks have fully exited."""
    end = time.monotonic() + deadline_s
    delay = 0.0005
    while True:
        try:
            rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > end:
                raise SandboxError(f"cannot remove cgroup {path}: {err.strerror}") from err
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def cpulist(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(set(cpus)))


def cgroup_tree(top: Path) -> list[Path]:
    """``top`` and every cgroup below it, deepest first: the order they can be removed in."""
    try:
        below = [p for p in top.rglob("*") if p.is_dir()]
    except OSError:
        below = []
    return [*sorted(below, key=lambda p: len(p.parts), reverse=True), top]


def find_anywhere(bases: Iterable[Path], match: Callable[[str], bool]) -> list[Path]:
    """Cgroups at any depth below ``bases`` whose name ``match`` accepts, not looking inside a match.
    For cgroups placed relative to another process's cgroup (Docker's cgroupfs driver puts a relative
    parent under the *daemon's* cgroup, which may be nested), so only a walk finds them."""
    found: list[Path] = []
    for base in bases:
        for top, dirs, _ in os.walk(base):
            hits = [d for d in dirs if match(d)]
            found += [Path(top) / d for d in hits]
            dirs[:] = [d for d in dirs if d not in hits]
    return found


def remove_trees(tops: Iterable[Path], rmdir: Rmdir) -> None:
    """Kill every process in the cgroups ``tops`` and below them, then remove them deepest first
    (another runtime may have made children; ours never do).

    The kernel refuses to remove a cgroup that still holds a process or a child cgroup (EBUSY),
    so one plain rmdir first is the whole job for an empty cgroup, the usual case at teardown: no
    walk of its control files (a ``stat`` of each, ~100 per v1 container, 3.5 ms of a start here
    under load) and no read of its ``cgroup.procs``. Anything else goes the long way."""
    rest: list[Path] = []
    for top in tops:
        try:
            rmdir(top)
        except FileNotFoundError:
            continue
        except OSError:
            rest.append(top)
    if not rest:
        return
    trees = [cgroup_tree(top) for top in rest]
    kill_loop(node / "cgroup.procs" for tree in trees for node in tree)
    for tree in trees:
        for node in tree:
            rmdir_retry(node, rmdir)
