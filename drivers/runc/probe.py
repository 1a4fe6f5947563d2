"""What the runc driver needs to know about the host, behind one seam so tests can fake it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from isobench.procs import tool_version

__all__ = ["CgroupMode", "HostProbe", "cgroup_mode", "missing_controllers"]

CgroupMode = Literal["unified", "hybrid", "v1", "none"]

#: Controllers whose limits the spec sets (cpuacct: v1 CPU accounting for stats).
V1_REQUIRED = ("memory", "cpu", "cpuacct", "cpuset", "pids")
V2_REQUIRED = ("memory", "cpu", "cpuset", "pids")


@dataclass(frozen=True)
class HostProbe:
    """The host facts the driver reads. Defaults are the real host; tests pass fakes."""

    which: Callable[[str], str | None] = shutil.which
    geteuid: Callable[[], int] = os.geteuid
    version: Callable[[str], str] = tool_version
    cgroup_root: Path = field(default=Path("/sys/fs/cgroup"))
    proc_root: Path = field(default=Path("/proc"))
    sys_class_net: Path = field(default=Path("/sys/class/net"))


def cgroup_mode(root: Path) -> CgroupMode:
    """unified: cgroup2 at ``root``; hybrid: v1 controllers plus cgroup2 at ``root/unified``;
    v1: v1 only (the names isobench.cgroupfs uses); none: no cgroup hierarchy found."""
    if (root / "cgroup.controllers").is_file():
        return "unified"
    if any((root / c / "cgroup.procs").is_file() for c in V1_REQUIRED):
        return "hybrid" if (root / "unified" / "cgroup.controllers").is_file() else "v1"
    return "none"


def missing_controllers(root: Path, mode: CgroupMode) -> list[str]:
    if mode == "none":
        return list(V1_REQUIRED)
    if mode == "unified":
        try:
            have = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            have = set()
        return [c for c in V2_REQUIRED if c not in have]
    return [c for c in V1_REQUIRED if not (root / c / "cgroup.procs").is_file()]
