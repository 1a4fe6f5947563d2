"""Parser of ``runc events --stats`` output: the container's cgroup as runc reads it.

runc normalises cgroup v1 and v2 files into one JSON shape, so this one parser covers both modes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from isobench.errors import SandboxError
from isobench.hostsys.cgroups.common import footprint_bytes

__all__ = ["parse_events_stats"]


def _get(d: Mapping[str, Any], *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def parse_events_stats(text: str) -> dict[str, float]:
    """Metrics of one ``runc events --stats`` document.

    ``memory_bytes`` is the cgroup's charged memory (v1 ``memory.usage_in_bytes`` includes page
    cache), ``memory_footprint_bytes`` the same without the per-CPU charge reserve (from its
    memory.stat, :func:`~isobench.hostsys.cgroups.common.footprint_bytes`), ``memory_rss_bytes`` the
    anonymous part, ``cpu_seconds`` the cgroup's total CPU time.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise SandboxError(f"runc events printed no JSON ({err}); is the container running?") from err
    data = _get(doc, "data")
    if not isinstance(data, Mapping):
        raise SandboxError("runc events output has no 'data' object; is the container running?")
    out: dict[str, float] = {}
    pairs: list[tuple[str, Any]] = [
        ("memory_bytes", _get(data, "memory", "usage", "usage")),
        ("memory_peak_bytes", _get(data, "memory", "usage", "max")),
        ("cpu_seconds", _ns_to_s(_get(data, "cpu", "usage", "total"))),
        ("cpu_user_seconds", _ns_to_s(_get(data, "cpu", "usage", "user"))),
        ("cpu_system_seconds", _ns_to_s(_get(data, "cpu", "usage", "kernel"))),
        ("pids", _get(data, "pids", "current")),
    ]
    limit = _get(data, "memory", "usage", "limit")
    # An unlimited v1 cgroup reports PAGE_COUNTER_MAX pages in bytes; that is not a limit.
    if isinstance(limit, int | float) and limit < 2**62:
        pairs.append(("memory_limit_bytes", limit))
    raw = _get(data, "memory", "raw")
    if isinstance(raw, Mapping):
        # v1 names it total_rss (hierarchical), v2 anon.
        pairs.append(("memory_rss_bytes", raw.get("total_rss", raw.get("anon"))))
        # runc's raw is the cgroup's memory.stat; its v1 "kernel" the kmem counter (absent on v2)
        kmem = _get(data, "memory", "kernel", "usage")
        stat = {k: float(v) for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        pairs.append(("memory_footprint_bytes", footprint_bytes(stat, kmem if "anon" not in raw else None)))
    for key, value in pairs:
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _ns_to_s(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1e9
    return None
