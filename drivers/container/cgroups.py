"""One cgroup manager interface, a v1 backend (separate controller hierarchies) and a v2 backend.

The host's mode is detected from ``/proc/self/mountinfo`` text by :mod:`isobench.cgroupfs` (a
seam: tests pass fake text whose mount points lie in a temporary tree):

- ``unified``: ``/sys/fs/cgroup`` is cgroup2, controllers live there -> v2 backend;
- ``hybrid``: v1 controller hierarchies plus a cgroup2 mount with no controllers -> v1 backend;
- ``v1``: only v1 hierarchies -> v1 backend.

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

from isobench.cgroupfs import CgroupLayout, Mode, detect_layout
from isobench.errors import SandboxError

log = logging.getLogger(__name__)

__all__ = [
    "Cgroup",
    "CgroupLayout",
    "CgroupLimits",
    "CgroupManager",
    "V1Manager",
    "V2Manager",
    "detect_layout",
    "open_manager",
]

Rmdir = Callable[[Path], None]

#: Controllers every container cgroup gets (stats need them even without limits).
V1_BASE = ("memory", "cpu", "cpuacct", "pids")
V2_BASE = ("memory", "cpu", "pids")


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

    def __post_init__(self) -> None:
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

    def create(self, name: str, limits: CgroupLimits) -> Cgroup: ...

    def find(self, match: Callable[[str], bool]) -> list[str]:
        """Names of existing cgroups (directly under our parent) that ``match`` accepts."""
        ...

    def open(self, name: str) -> Cgroup:
        """An existing cgroup by name (for gc)."""
        ...


# ------------------------------------------------------------------------------------------------ shared


def _write(path: Path, value: str, what: str) -> None:
    try:
        path.write_text(value)
    except OSError as err:
        raise SandboxError(
            f"cgroup: cannot set {what} ({path.name}={value.strip()}): {err.strerror or err}; "
            "lower or drop that limit"
        ) from err


def _read_int(path: Path, default: float = 0.0) -> float:
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


def _read_keyed(path: Path) -> dict[str, float]:
    try:
        return parse_flat_keyed(path.read_text())
    except OSError:
        return {}


def _read_pids(path: Path) -> set[int]:
    try:
        return {int(x) for x in path.read_text().split()}
    except (OSError, ValueError):
        return set()


def _kill_loop(procs_files: Iterable[Path], deadline_s: float = 5.0) -> None:
    """SIGKILL until no process is left; a fork bomb under a pids limit is finite, so this ends."""
    files = list(procs_files)
    end = time.monotonic() + deadline_s
    while True:
        pids: set[int] = set()
        for f in files:
            pids |= _read_pids(f)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            raise SandboxError(f"cgroup still has processes {sorted(pids)} after SIGKILL; check for D-state")
        time.sleep(0.002)


def _rmdir_retry(path: Path, rmdir: Rmdir, deadline_s: float = 5.0) -> None:
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


def _cpulist(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(set(cpus)))


# ------------------------------------------------------------------------------------------------ v1


class V1Cgroup:
    def __init__(self, name: str, dirs: Mapping[str, Path], rmdir: Rmdir) -> None:
        self._name = name
        self._dirs = dict(dirs)  # controller -> directory (co-mounted controllers share one)
        self._rmdir = rmdir
        self._removed = False

    @property
    def name(self) -> str:
        return self._name

    def _unique_dirs(self) -> list[Path]:
        return list(dict.fromkeys(self._dirs.values()))

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self._unique_dirs())

    @property
    def self_attach_files(self) -> tuple[Path, ...]:
        return tuple(d / "tasks" for d in self._unique_dirs())

    def dir(self, controller: str) -> Path | None:
        return self._dirs.get(controller)

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        mem = self._dirs.get("memory")
        if mem is not None:
            out["memory_bytes"] = _read_int(mem / "memory.usage_in_bytes")
            out["memory_peak_bytes"] = _read_int(mem / "memory.max_usage_in_bytes")
            out["oom_kills"] = _read_keyed(mem / "memory.oom_control").get("oom_kill", 0.0)
            for key, value in _read_keyed(mem / "memory.stat").items():
                if not key.startswith("total_"):
                    out[f"memory_stat.{key}"] = value
        acct = self._dirs.get("cpuacct")
        if acct is not None:
            out["cpu_seconds"] = _read_int(acct / "cpuacct.usage") / 1e9
        pids = self._dirs.get("pids")
        if pids is not None:
            out["pids"] = _read_int(pids / "pids.current")
        return out

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            found |= _read_pids(f)
        return found

    def kill(self) -> None:
        _kill_loop(self.procs_files)

    def remove(self) -> None:
        if self._removed:
            return
        self.kill()
        for d in self._unique_dirs():
            _rmdir_retry(d, self._rmdir)
        self._removed = True


class V1Manager:
    """cgroup v1: one directory per controller hierarchy, limits in each controller's own files."""

    mode: Mode

    def __init__(self, layout: CgroupLayout, *, parent: str = "", rmdir: Rmdir = os.rmdir) -> None:
        self.mode = layout.mode
        self._mounts = dict(layout.v1_mounts)
        self._parent = parent.strip("/")
        self._rmdir = rmdir

    def _base(self, controller: str) -> Path:
        mount = self._mounts[controller]
        return mount / self._parent if self._parent else mount

    def controllers_for(self, limits: CgroupLimits) -> tuple[str, ...]:
        wanted = list(V1_BASE)
        if limits.cpuset is not None:
            wanted.append("cpuset")
        return tuple(wanted)

    def create(self, name: str, limits: CgroupLimits) -> V1Cgroup:
        wanted = self.controllers_for(limits)
        missing = [c for c in wanted if c not in self._mounts]
        if missing:
            raise SandboxError(
                f"cgroup v1 controller {missing[0]!r} is not mounted on this host "
                f"(mounted: {', '.join(sorted(self._mounts)) or 'none'}); mount it under /sys/fs/cgroup"
            )
        dirs = {c: self._base(c) / name for c in wanted}
        cg = V1Cgroup(name, dirs, self._rmdir)
        made: list[Path] = []
        try:
            for d in dict.fromkeys(dirs.values()):
                try:
                    d.mkdir()
                except OSError as err:
                    raise SandboxError(f"cannot create cgroup {d}: {err.strerror}") from err
                made.append(d)
            self._apply(dirs, limits)
        except BaseException:
            for d in reversed(made):
                try:
                    _rmdir_retry(d, self._rmdir)
                except SandboxError as err:
                    log.warning("%s", err)
            raise
        return cg

    def _apply(self, dirs: Mapping[str, Path], limits: CgroupLimits) -> None:
        mem = dirs["memory"]
        if limits.memory_bytes is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes), "memory limit")
            if limits.swap_bytes is not None:
                memsw = mem / "memory.memsw.limit_in_bytes"
                if not memsw.exists():
                    raise SandboxError(
                        "cgroup v1 memory controller has no swap accounting (memory.memsw.*); "
                        "boot with swapaccount=1 or set the container option swap_mib to null"
                    )
                _write(memsw, str(limits.memory_bytes + limits.swap_bytes), "memory+swap limit")
        cpu = dirs["cpu"]
        if limits.cpu_quota_us is not None:
            _write(cpu / "cpu.cfs_period_us", str(limits.cpu_period_us), "cpu period")
            _write(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us), "cpu quota")
        if limits.cpuset is not None:
            cs = dirs["cpuset"]
            parent = cs.parent
            # v1 cpusets start empty and refuse tasks until cpus and mems are set.
            mems = (parent / "cpuset.mems").read_text().strip() if (parent / "cpuset.mems").exists() else "0"
            _write(cs / "cpuset.cpus", _cpulist(limits.cpuset), "cpuset")
            _write(cs / "cpuset.mems", mems or "0", "cpuset memory nodes")
        if limits.pids_max is not None:
            _write(dirs["pids"] / "pids.max", str(limits.pids_max), "pids limit")

    def find(self, match: Callable[[str], bool]) -> list[str]:
        names: set[str] = set()
        for controller in self._mounts:
            base = self._base(controller)
            try:
                entries = list(base.iterdir())
            except OSError:
                continue
            names |= {p.name for p in entries if p.is_dir() and match(p.name)}
        return sorted(names)

    def open(self, name: str) -> V1Cgroup:
        dirs = {c: self._base(c) / name for c in self._mounts if (self._base(c) / name).is_dir()}
        return V1Cgroup(name, dirs, self._rmdir)


# ------------------------------------------------------------------------------------------------ v2


class V2Cgroup:
    def __init__(self, name: str, path: Path, rmdir: Rmdir) -> None:
        self._name = name
        self._path = path
        self._rmdir = rmdir
        self._removed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return (self._path / "cgroup.procs",)

    @property
    def self_attach_files(self) -> tuple[Path, ...]:
        return ()  # v2 has no per-thread fast path outside threaded mode

    def stats(self) -> dict[str, float]:
        p = self._path
        out: dict[str, float] = {"memory_bytes": _read_int(p / "memory.current")}
        peak = p / "memory.peak"  # Linux >= 5.19
        out["memory_peak_bytes"] = _read_int(peak) if peak.exists() else out["memory_bytes"]
        out["oom_kills"] = _read_keyed(p / "memory.events").get("oom_kill", 0.0)
        for key, value in _read_keyed(p / "memory.stat").items():
            out[f"memory_stat.{key}"] = value
        out["cpu_seconds"] = _read_keyed(p / "cpu.stat").get("usage_usec", 0.0) / 1e6
        out["pids"] = _read_int(p / "pids.current")
        return out

    def pids(self) -> set[int]:
        return _read_pids(self._path / "cgroup.procs")

    def kill(self) -> None:
        killer = self._path / "cgroup.kill"  # Linux >= 5.14: one write kills the whole subtree
        if killer.exists():
            try:
                killer.write_text("1")
            except OSError as err:
                log.debug("cgroup.kill of %s failed (%s); killing one by one", self._path, err)
        _kill_loop(self.procs_files)

    def remove(self) -> None:
        if self._removed:
            return
        self.kill()
        _rmdir_retry(self._path, self._rmdir)
        self._removed = True


class V2Manager:
    """cgroup v2: one directory; controllers enabled in the parent's ``cgroup.subtree_control``."""

    mode: Mode = "unified"

    def __init__(self, root: Path, *, parent: str = "", rmdir: Rmdir = os.rmdir) -> None:
        self._root = root
        self._parent = parent.strip("/")
        self._rmdir = rmdir

    @property
    def base(self) -> Path:
        return self._root / self._parent if self._parent else self._root

    def create(self, name: str, limits: CgroupLimits) -> V2Cgroup:
        wanted = list(V2_BASE) + (["cpuset"] if limits.cpuset is not None else [])
        self._enable(wanted)
        path = self.base / name
        try:
            path.mkdir()
        except OSError as err:
            raise SandboxError(f"cannot create cgroup {path}: {err.strerror}") from err
        cg = V2Cgroup(name, path, self._rmdir)
        try:
            self._apply(path, limits)
        except BaseException:
            try:
                _rmdir_retry(path, self._rmdir)
            except SandboxError as err:
                log.warning("%s", err)
            raise
        return cg

    def _enable(self, wanted: list[str]) -> None:
        base = self.base
        try:
            available = set((base / "cgroup.controllers").read_text().split())
        except OSError as err:
            raise SandboxError(f"cannot read {base / 'cgroup.controllers'}: {err.strerror}") from err
        missing = [c for c in wanted if c not in available]
        if missing:
            raise SandboxError(
                f"cgroup v2 controller {missing[0]!r} is not available in {base} "
                f"(available: {', '.join(sorted(available)) or 'none'}); delegate it to this cgroup"
            )
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        todo = [c for c in wanted if c not in enabled]
        if todo:
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in todo), "subtree controllers")

    def _apply(self, path: Path, limits: CgroupLimits) -> None:
        if limits.memory_bytes is not None:
            _write(path / "memory.max", str(limits.memory_bytes), "memory limit")
            if limits.swap_bytes is not None:
                swap = path / "memory.swap.max"
                if not swap.exists():
                    raise SandboxError(
                        "cgroup v2 has no swap controller files (memory.swap.max); enable swap "
                        "accounting or set the container option swap_mib to null"
                    )
                _write(swap, str(limits.swap_bytes), "swap limit")
        if limits.cpu_quota_us is not None:
            _write(path / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}", "cpu quota")
        if limits.cpuset is not None:
            _write(path / "cpuset.cpus", _cpulist(limits.cpuset), "cpuset")
        if limits.pids_max is not None:
            _write(path / "pids.max", str(limits.pids_max), "pids limit")

    def find(self, match: Callable[[str], bool]) -> list[str]:
        try:
            return sorted(p.name for p in self.base.iterdir() if p.is_dir() and match(p.name))
        except OSError:
            return []

    def open(self, name: str) -> V2Cgroup:
        return V2Cgroup(name, self.base / name, self._rmdir)


def open_manager(
    mountinfo: str | None = None, *, parent: str = "", rmdir: Rmdir = os.rmdir
) -> V1Manager | V2Manager:
    """The manager for this host (or for ``mountinfo`` text, in tests)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    layout = detect_layout(mountinfo)
    if layout.mode == "unified":
        assert layout.v2_root is not None
        return V2Manager(layout.v2_root, parent=parent, rmdir=rmdir)
    return V1Manager(layout, parent=parent, rmdir=rmdir)
