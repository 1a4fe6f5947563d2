"""cgroup v1: one directory per controller hierarchy, limits in each controller's own files."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from isobench.errors import SandboxError
from isobench.hostsys.cgroups import common, devices
from isobench.hostsys.cgroups.common import CgroupLimits, Rmdir
from isobench.hostsys.cgroups.layout import CgroupLayout, Mode

__all__ = ["V1_BASE", "V1Cgroup", "V1Manager", "v1_stats"]

#: Controllers every container cgroup gets (stats need them even without limits).
V1_BASE = ("memory", "cpu", "cpuacct", "pids")


#: An unlimited v1 memory cgroup reports PAGE_COUNTER_MAX pages in bytes; that is not a limit.
_NO_LIMIT = 2**62


def v1_stats(dirs: Mapping[str, Path]) -> dict[str, float]:
    """What a v1 cgroup's files say of its use, by ``SandboxStats`` names: ``dirs`` maps a controller
    to the cgroup's directory in its hierarchy (ours, or another runtime's found in /proc/PID/cgroup).
    A controller missing from ``dirs`` gives no figures."""
    out: dict[str, float] = {}
    mem = dirs.get("memory")
    if mem is not None:
        out["memory_bytes"] = common.read_number(mem / "memory.usage_in_bytes")
        out["memory_peak_bytes"] = common.read_number(mem / "memory.max_usage_in_bytes")
        out["oom_kills"] = common.read_keyed(mem / "memory.oom_control").get("oom_kill", 0.0)
        limit = common.read_number(mem / "memory.limit_in_bytes", default=float("inf"))
        if limit < _NO_LIMIT:
            out["memory_limit_bytes"] = limit
        stat = common.read_keyed(mem / "memory.stat")
        if "total_rss" in stat:
            out["memory_rss_bytes"] = stat["total_rss"]
        for key, value in stat.items():
            if not key.startswith("total_"):
                out[f"memory_stat.{key}"] = value
        kmem = mem / "memory.kmem.usage_in_bytes"
        footprint = common.footprint_bytes(stat, common.read_number(kmem) if kmem.exists() else None)
        if footprint is not None:
            out["memory_footprint_bytes"] = footprint
    acct = dirs.get("cpuacct")
    if acct is not None:
        out["cpu_seconds"] = common.read_number(acct / "cpuacct.usage") / 1e9
    pids = dirs.get("pids")
    if pids is not None:
        out["pids"] = common.read_number(pids / "pids.current")
    return out


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
        return v1_stats(self._dirs)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            found |= common.read_pids(f)
        return found

    def kill(self) -> None:
        common.kill_loop(self.procs_files)

    def remove(self) -> None:
        if self._removed:
            return
        common.remove_trees(self._unique_dirs(), self._rmdir)
        self._removed = True


class V1Manager:
    """cgroup v1: one directory per controller hierarchy, limits in each controller's own files."""

    mode: Mode

    def __init__(self, layout: CgroupLayout, *, parent: str = "", rmdir: Rmdir = os.rmdir) -> None:
        self.mode = layout.mode
        self._mounts = dict(layout.v1_mounts)
        #: Hierarchies without a controller of ours (name=systemd, a hybrid's cgroup2): we never
        #: make cgroups there, but other runtimes do, and gc removes them by name.
        self._others = [h for h in layout.hierarchies() if h not in self._mounts.values()]
        self._parent = parent.strip("/")
        self._rmdir = rmdir

    def _under(self, mount: Path) -> Path:
        return mount / self._parent if self._parent else mount

    def _base(self, controller: str) -> Path:
        return self._under(self._mounts[controller])

    def controllers(self) -> set[str]:
        return set(self._mounts)

    def controllers_for(self, limits: CgroupLimits) -> tuple[str, ...]:
        wanted = list(V1_BASE)
        if limits.cpuset is not None:
            wanted.append("cpuset")
        if limits.io_bps is not None:
            wanted.append("blkio")
        if limits.devices is not None:
            wanted.append("devices")
        return tuple(wanted)

    def plan(self, name: str, limits: CgroupLimits) -> V1Cgroup:
        wanted = self.controllers_for(limits)
        missing = [c for c in wanted if c not in self._mounts]
        if missing:
            raise SandboxError(
                f"cgroup v1 controller {missing[0]!r} is not mounted on this host "
                f"(mounted: {', '.join(sorted(self._mounts)) or 'none'}); mount it under /sys/fs/cgroup"
            )
        return V1Cgroup(name, {c: self._base(c) / name for c in wanted}, self._rmdir)

    def create(self, name: str, limits: CgroupLimits) -> V1Cgroup:
        cg = self.plan(name, limits)
        dirs = cg._dirs
        common.make_cgroup(dict.fromkeys(dirs.values()), self._rmdir, lambda: self._apply(dirs, limits))
        return cg

    def _apply(self, dirs: Mapping[str, Path], limits: CgroupLimits) -> None:
        mem = dirs["memory"]
        if limits.memory_bytes is not None:
            common.write_value(mem / "memory.limit_in_bytes", str(limits.memory_bytes), "memory limit")
            if limits.swap_bytes is not None:
                common.write_swap_limit(
                    mem / "memory.memsw.limit_in_bytes",
                    limits.memory_bytes + limits.swap_bytes,
                    "memory+swap limit",
                    "cgroup v1 memory controller has no swap accounting (memory.memsw.*); boot with swapaccount=1",
                )
        cpu = dirs["cpu"]
        if limits.cpu_quota_us is not None:
            common.write_value(cpu / "cpu.cfs_period_us", str(limits.cpu_period_us), "cpu period")
            common.write_value(cpu / "cpu.cfs_quota_us", str(limits.cpu_quota_us), "cpu quota")
        if limits.cpuset is not None:
            cs = dirs["cpuset"]
            parent = cs.parent
            # v1 cpusets start empty and refuse tasks until cpus and mems are set.
            mems = (parent / "cpuset.mems").read_text().strip() if (parent / "cpuset.mems").exists() else "0"
            common.write_value(cs / "cpuset.cpus", common.cpulist(limits.cpuset), "cpuset")
            common.write_value(cs / "cpuset.mems", mems or "0", "cpuset memory nodes")
        if limits.pids_max is not None:
            common.write_value(dirs["pids"] / "pids.max", str(limits.pids_max), "pids limit")
        if limits.io_bps is not None:
            # Only direct and writeback-less I/O is throttled: v1 blkio cannot charge page-cache
            # writeback to the cgroup that dirtied the pages.
            for major, minor in limits.io_devices:
                for rw in ("read", "write"):
                    common.write_value(
                        dirs["blkio"] / f"blkio.throttle.{rw}_bps_device",
                        f"{major}:{minor} {limits.io_bps}",
                        f"disk {rw} bandwidth",
                    )
        if limits.devices is not None:
            devices.write_v1_rules(dirs["devices"], limits.devices)

    def _hierarchy_bases(self) -> list[Path]:
        return list(dict.fromkeys(self._under(m) for m in [*self._mounts.values(), *self._others]))

    def find(self, match: Callable[[str], bool]) -> list[str]:
        names: set[str] = set()
        for base in self._hierarchy_bases():
            try:
                entries = list(base.iterdir())
            except OSError:
                continue
            names |= {p.name for p in entries if p.is_dir() and match(p.name)}
        return sorted(names)

    def open(self, name: str) -> V1Cgroup:
        dirs = {c: self._base(c) / name for c in self._mounts if (self._base(c) / name).is_dir()}
        for other in self._others:
            if (self._under(other) / name).is_dir():
                dirs[str(other)] = self._under(other) / name
        return V1Cgroup(name, dirs, self._rmdir)
