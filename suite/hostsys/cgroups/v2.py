"""cgroup v2: one directory per cgroup; controllers enabled in the parent's ``subtree_control``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from isobench.errors import SandboxError
from isobench.hostsys.cgroups import common
from isobench.hostsys.cgroups.common import CgroupLimits, Rmdir
from isobench.hostsys.cgroups.devices import AttachDeviceFilter, attach_device_filter
from isobench.hostsys.cgroups.layout import Mode

log = logging.getLogger(__name__)

__all__ = ["V2_BASE", "V2Cgroup", "V2Manager", "v2_stats"]

#: Controllers every container cgroup gets (stats need them even without limits).
V2_BASE = ("memory", "cpu", "pids")


def v2_stats(path: Path) -> dict[str, float]:
    """What a v2 cgroup's files say of its use, by ``SandboxStats`` names (``path``: the cgroup's
    directory, ours or another runtime's found in /proc/PID/cgroup)."""
    out: dict[str, float] = {"memory_bytes": common.read_number(path / "memory.current")}
    peak = path / "memory.peak"  # Linux >= 5.19
    out["memory_peak_bytes"] = common.read_number(peak) if peak.exists() else out["memory_bytes"]
    out["oom_kills"] = common.read_keyed(path / "memory.events").get("oom_kill", 0.0)
    limit = common.read_number(path / "memory.max", default=float("inf"))  # "max": none
    if limit != float("inf"):
        out["memory_limit_bytes"] = limit
    stat = common.read_keyed(path / "memory.stat")
    if "anon" in stat:
        out["memory_rss_bytes"] = stat["anon"]
    for key, value in stat.items():
        out[f"memory_stat.{key}"] = value
    if (footprint := common.footprint_bytes(stat)) is not None:
        out["memory_footprint_bytes"] = footprint
    out["cpu_seconds"] = common.read_keyed(path / "cpu.stat").get("usage_usec", 0.0) / 1e6
    out["pids"] = common.read_number(path / "pids.current")
    return out


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
        return v2_stats(self._path)

    def pids(self) -> set[int]:
        return common.read_pids(self._path / "cgroup.procs")

    def kill(self) -> None:
        killer = self._path / "cgroup.kill"  # Linux >= 5.14: one write kills the whole subtree
        if killer.exists():
            try:
                killer.write_text("1")
            except OSError as err:
                log.debug("cgroup.kill of %s failed (%s); killing one by one", self._path, err)
        common.kill_loop(self.procs_files)

    def remove(self) -> None:
        if self._removed:
            return
        self.kill()
        common.remove_trees([self._path], self._rmdir)
        self._removed = True


class V2Manager:
    """cgroup v2: one directory; controllers enabled in the parent's ``cgroup.subtree_control``."""

    mode: Mode = "unified"

    def __init__(
        self,
        root: Path,
        *,
        parent: str = "",
        rmdir: Rmdir = os.rmdir,
        attach_devices: AttachDeviceFilter = attach_device_filter,
    ) -> None:
        self._root = root
        self._parent = parent.strip("/")
        self._rmdir = rmdir
        self._attach_devices = attach_devices

    @property
    def base(self) -> Path:
        return self._root / self._parent if self._parent else self._root

    def controllers(self) -> set[str]:
        try:
            return set((self.base / "cgroup.controllers").read_text().split())
        except OSError:
            return set()

    def plan(self, name: str, limits: CgroupLimits) -> V2Cgroup:
        # Which controllers are delegated is known only to ``create`` (it enables them): here the
        # path alone, which does not depend on them.
        del limits
        return V2Cgroup(name, self.base / name, self._rmdir)

    def create(self, name: str, limits: CgroupLimits) -> V2Cgroup:
        wanted = list(V2_BASE) + (["cpuset"] if limits.cpuset is not None else [])
        wanted += ["io"] if limits.io_bps is not None else []
        self._enable(wanted)
        cg = self.plan(name, limits)
        common.make_cgroup([cg.path], self._rmdir, lambda: self._apply(cg.path, limits))
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
            common.write_value(
                base / "cgroup.subtree_control", " ".join(f"+{c}" for c in todo), "subtree controllers"
            )

    def _apply(self, path: Path, limits: CgroupLimits) -> None:
        if limits.memory_bytes is not None:
            common.write_value(path / "memory.max", str(limits.memory_bytes), "memory limit")
            if limits.swap_bytes is not None:
                common.write_swap_limit(
                    path / "memory.swap.max",
                    limits.swap_bytes,
                    "swap limit",
                    "cgroup v2 has no swap controller files (memory.swap.max); enable swap accounting",
                )
        if limits.cpu_quota_us is not None:
            common.write_value(path / "cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}", "cpu quota")
        if limits.cpuset is not None:
            common.write_value(path / "cpuset.cpus", common.cpulist(limits.cpuset), "cpuset")
        if limits.pids_max is not None:
            common.write_value(path / "pids.max", str(limits.pids_max), "pids limit")
        for major, minor in limits.io_devices if limits.io_bps is not None else ():
            bps = limits.io_bps
            common.write_value(path / "io.max", f"{major}:{minor} rbps={bps} wbps={bps}", "disk bandwidth")
        if limits.devices is not None:
            # v2 has no devices controller: a BPF program attached to the cgroup is the allowlist.
            self._attach_devices(path, limits.devices)

    def find(self, match: Callable[[str], bool]) -> list[str]:
        try:
            return sorted(p.name for p in self.base.iterdir() if p.is_dir() and match(p.name))
        except OSError:
            return []

    def open(self, name: str) -> V2Cgroup:
        return V2Cgroup(name, self.base / name, self._rmdir)
