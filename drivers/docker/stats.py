"""A Docker container's resource use, read from its cgroup (the figures every container driver
reports), and the Engine's stats API document parsed into the same names (a cross-check).

The cgroup is found from ``/proc/<init pid>/cgroup`` rather than from the daemon's configuration,
so it is right for the private daemon (cgroupfs driver, our cgroup parent) and for an existing one
(systemd slices, cgroup v2) alike; what it says is read by the suite's own cgroup readers
(:mod:`isobench.hostsys.cgroups`), so a Docker container's figures are the container driver's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isobench.errors import SandboxError
from isobench.hostsys.cgroups import CgroupLayout, detect_layout
from isobench.hostsys.cgroups.v1 import v1_stats
from isobench.hostsys.cgroups.v2 import v2_stats

__all__ = [
    "ContainerCgroup",
    "cgroup_of",
    "parse_api_stats",
    "parse_proc_cgroup",
]


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


@dataclass(frozen=True)
class ContainerCgroup:
    """Where one container's cgroup files are: v1 per controller, or one v2 directory."""

    v1: Mapping[str, Path] | None = None
    v2: Path | None = None

    def stats(self) -> dict[str, float]:
        """The figures of the suite's own cgroup readers (:mod:`isobench.hostsys.cgroups`), read
        from wherever the daemon put the container."""
        where = self.v2 if self.v2 is not None else (self.v1 or {}).get("memory")
        if where is None or not where.is_dir():
            raise SandboxError("the container's memory cgroup is gone (has the container stopped?)")
        return v2_stats(self.v2) if self.v2 is not None else v1_stats(self.v1 or {})


def cgroup_of(
    pid: int, *, proc_root: Path = Path("/proc"), layout: CgroupLayout | None = None
) -> ContainerCgroup:
    """The cgroup of process ``pid`` (a container's init)."""
    try:
        paths = parse_proc_cgroup((proc_root / str(pid) / "cgroup").read_text())
        if layout is None:
            layout = detect_layout((proc_root / "self" / "mountinfo").read_text())
    except OSError as err:
        raise SandboxError(f"cannot read the cgroup of container init {pid}: {err.strerror}") from err
    if layout.mode == "unified":
        if layout.v2_root is None or "" not in paths:
            raise SandboxError(f"container init {pid} has no cgroup v2 path")
        return ContainerCgroup(v2=layout.v2_root / paths[""].lstrip("/"))
    dirs = {
        c: mount / paths[c].lstrip("/")
        for c, mount in layout.v1_mounts.items()
        if c in paths and c in ("memory", "cpuacct", "pids")
    }
    if "memory" not in dirs:
        raise SandboxError(f"container init {pid} is in no memory cgroup")
    return ContainerCgroup(v1=dirs)


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
    pairs = {
        "memory_bytes": _num(doc, "memory_stats", "usage"),
        "memory_peak_bytes": _num(doc, "memory_stats", "max_usage"),
        "memory_rss_bytes": _num(doc, "memory_stats", "stats", "total_rss"),
        # Nanoseconds on v1 and v2 alike (the daemon converts).
        "cpu_seconds": _num(doc, "cpu_stats", "cpu_usage", "total_usage"),
        "pids": _num(doc, "pids_stats", "current"),
    }
    out = {k: v for k, v in pairs.items() if v is not None}
    if "cpu_seconds" in out:
        out["cpu_seconds"] /= 1e9
    return out
