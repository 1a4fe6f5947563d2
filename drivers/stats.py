"""One sandbox's resource use as the host sees it: the one type every ``Sandbox.stats()`` returns.

A figure a driver cannot measure is None (the host driver and bwrap make no cgroup: they know
nothing). Each field has the name it has always been recorded under (``SandboxStats.as_dict``), so
the idle-memory samples keep their metric names: ``idle-memory.host_view`` is
``memory_footprint_bytes`` where a cgroup's ``memory.stat`` gives it, else ``memory_bytes``, and every
other byte figure becomes ``idle-memory.host_view.<name>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEMCG_STATS_LAG_S", "SandboxStats", "memcg_lag_left"]

_MEMORY_STAT = "memory_stat."

#: How long after a change a cgroup's ``memory.stat`` may still not show it, with a margin. The
#: kernel keeps memory cgroup statistics per CPU and adds them up (rstat) every 2 s, and on a read
#: only when some 64 pages a CPU of updates are pending: a small cgroup's figures lag by up to 2 s.
#: Seen here (kernel 6.18, v1, six fresh idle containers read every 0.5 s): the init's 20-28 KiB of
#: anonymous memory appeared 1.0-2.0 s after create, 0 before; a 1 s settle read it in 3 of 6.
MEMCG_STATS_LAG_S = 2.5


def _named(key: str) -> Any:
    """A figure recorded under ``key`` rather than its field name (a guest's ``vm.`` figures)."""
    return field(default=None, metadata={"key": key})


@dataclass(frozen=True)
class SandboxStats:
    """What ``Sandbox.stats()`` returns: None where the driver cannot tell."""

    #: What the sandbox costs the host's memory now: cgroup usage, or qemu's PSS + guest RAM RSS.
    memory_bytes: float | None = None
    #: A cgroup's pages and kernel objects alone (its ``memory.stat``), without the per-CPU charge
    #: reserve its usage counter (``memory_bytes``) holds: an idle sandbox's host view where known.
    memory_footprint_bytes: float | None = None
    #: The cgroup's high-water mark since creation.
    memory_peak_bytes: float | None = None
    #: The cgroup's memory limit, when it has one.
    memory_limit_bytes: float | None = None
    #: The anonymous part of ``memory_bytes``.
    memory_rss_bytes: float | None = None
    cpu_seconds: float | None = None
    cpu_user_seconds: float | None = None
    cpu_system_seconds: float | None = None
    #: Processes in the sandbox's cgroup now.
    pids: int | None = None
    #: Processes the OOM killer ended in the sandbox's cgroup so far.
    oom_kills: int | None = None
    #: A guest: the hypervisor process's own memory (PSS, USS), without the guest RAM.
    qemu_pss_bytes: float | None = _named("vm.qemu_pss_bytes")
    qemu_uss_bytes: float | None = _named("vm.qemu_uss_bytes")
    #: A guest: its RAM backed by host pages so far.
    guest_ram_rss_bytes: float | None = _named("vm.guest_ram_rss_bytes")
    #: A guest: MemTotal - MemAvailable of its own kernel.
    guest_used_bytes: float | None = _named("vm.guest_used_bytes")
    #: A guest: how far the host's MemAvailable dropped since it was created.
    host_memavailable_delta_bytes: float | None = _named("vm.host_memavailable_delta_bytes")
    #: The cgroup's ``memory.stat`` as the kernel names its fields (recorded as ``memory_stat.<field>``).
    memory_stat: Mapping[str, float] = field(default_factory=dict)

    @property
    def host_memory_bytes(self) -> float | None:
        """What the sandbox's memory costs the host, as exactly as the driver knows it: a cgroup's
        footprint where its ``memory.stat`` gives one, else ``memory_bytes``."""
        return self.memory_footprint_bytes if self.memory_footprint_bytes is not None else self.memory_bytes

    def as_dict(self) -> dict[str, float]:
        """Every known figure by its recorded name, as floats."""
        out: dict[str, float] = {}
        for f in dataclasses.fields(self):
            if f.name == "memory_stat":
                continue
            value = getattr(self, f.name)
            if value is not None:
                out[f.metadata.get("key", f.name)] = float(value)
        out.update({_MEMORY_STAT + k: float(v) for k, v in self.memory_stat.items()})
        return out

    def memory_figures(self) -> dict[str, float]:
        """The byte figures (``memory_bytes`` and every other ``*_bytes``) by their recorded names."""
        return {k: v for k, v in self.as_dict().items() if k.endswith("_bytes")}

    @classmethod
    def from_dict(cls, flat: Mapping[str, float]) -> SandboxStats:
        """The inverse of :meth:`as_dict`, for parsers that collect figures by name (cgroup files,
        ``runc events``, /proc of a qemu). An unknown name is a bug in the parser: ValueError."""
        by_key = {
            f.metadata.get("key", f.name): f for f in dataclasses.fields(cls) if f.name != "memory_stat"
        }
        given: dict[str, Any] = {}
        memory_stat: dict[str, float] = {}
        for key, value in flat.items():
            if key.startswith(_MEMORY_STAT):
                memory_stat[key.removeprefix(_MEMORY_STAT)] = float(value)
            elif key in by_key:
                f = by_key[key]
                given[f.name] = int(value) if f.name in ("pids", "oom_kills") else float(value)
            else:
                raise ValueError(f"no sandbox stat is named {key!r}; known: {', '.join(sorted(by_key))}")
        return cls(**given, memory_stat=memory_stat)


def memcg_lag_left(since: float, stats: Iterable[SandboxStats], now: float) -> float:
    """Seconds still to wait (0 if none) before figures from ``memory.stat`` (a sandbox's
    ``memory_footprint_bytes``) count every page made up to ``since``; ``since`` and ``now`` on
    ``time.monotonic()``. Figures from elsewhere (a guest's, a usage counter) are current at once."""
    if not any(s.memory_footprint_bytes is not None for s in stats):
        return 0.0
    return max(0.0, since + MEMCG_STATS_LAG_S - now)
