"""A Docker container's resource use, read from its cgroup (the figures every container driver
reports), and the Engine's stats API document parsed into the same names (a cross-check).

The cgroup is found from ``/proc/<init pid>/cgroup`` rather than from the daemon's configuration,
so it is right for the private daemon (cgroupfs driver, our cgroup parent) and for an existing one
(systemd slices, cgroup v2) alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isobench.cgroupfs import CgroupLayout, detect_layout
from isobench.drivers.container.cgroups import V1Cgroup, V2Cgroup
from isobench.errors import SandboxError

__all__ = ["cgroup_of", "parse_api_stats", "parse_proc_cgroup"]


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> path; the v2 entry (``0::/path``) is keyed ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for c in controllers.split(","):
            if c and not c.startswith("name="):
                out[c] = path
    return out


def cgroup_of(
    pid: int, *, name: str, proc_root: Path = Path("/proc"), layout: CgroupLayout | None = None
) -> V1Cgroup | V2Cgroup:
    """The cgroup of process ``pid`` (a container's init), as the container driver's readers."""
    try:
        paths = parse_proc_cgroup((proc_root / str(pid) / "cgroup").read_text())
        if layout is None:
            layout = detect_layout((proc_root / "self" / "mountinfo").read_text())
    except OSError as err:
        raise SandboxError(f"cannot read the cgroup of container init {pid}: {err.strerror}") from err
    if layout.mode == "unified":
        if layout.v2_root is None or "" not in paths:
            raise SandboxError(f"container init {pid} has no cgroup v2 path")
        return V2Cgroup(name, layout.v2_root / paths[""].lstrip("/"), os.rmdir)
    dirs = {
        c: mount / paths[c].lstrip("/")
        for c, mount in layout.v1_mounts.items()
        if c in paths and c in ("memory", "cpu", "cpuacct", "pids", "cpuset")
    }
    if "memory" not in dirs:
        raise SandboxError(f"container init {pid} is in no memory cgroup")
    return V1Cgroup(name, dirs, os.rmdir)


def _num(doc: Any, *path: str) -> float | None:
    cur = doc
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    if isinstance(cur, int | float) and not isinstance(cur, bool):
        return float(cur)
    return None


def parse_api_stats(doc: Mapping[str, Any]) -> dict[str, float]:
    """One document of ``GET /containers/<id>/stats?stream=false`` in the cgroup readers' names."""
    out: dict[str, float] = {}
    usage = _num(doc, "memory_stats", "usage")
    if usage is not None:
        out["memory_bytes"] = usage
    peak = _num(doc, "memory_stats", "max_usage")
    if peak is not None:
        out["memory_peak_bytes"] = peak
    cpu = _num(doc, "cpu_stats", "cpu_usage", "total_usage")
    if cpu is not None:
        out["cpu_seconds"] = cpu / 1e9  # nanoseconds on v1 and v2 alike (the daemon converts)
    pids = _num(doc, "pids_stats", "current")
    if pids is not None:
        out["pids"] = pids
    return out
