"""What the runc driver needs of the host's cgroups (the host itself is the context's probe)."""

from __future__ import annotations

from isobench.hostsys.cgroups import CgroupManager

__all__ = ["V1_REQUIRED", "V2_REQUIRED", "missing_controllers"]

#: Controllers whose limits the spec sets (cpuacct: v1 CPU accounting for stats).
V1_REQUIRED = ("memory", "cpu", "cpuacct", "cpuset", "pids")
V2_REQUIRED = ("memory", "cpu", "cpuset", "pids")


def missing_controllers(manager: CgroupManager) -> list[str]:
    """The controllers runc needs that this host's hierarchy lacks."""
    need = V2_REQUIRED if manager.mode == "unified" else V1_REQUIRED
    have = manager.controllers()
    return [c for c in need if c not in have]
