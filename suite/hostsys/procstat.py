"""The host's CPU time from ``/proc/stat``: busy time, and *steal* time, the time the hypervisor
under this host ran someone else on its CPUs.

Steal is why a figure on a shared virtual host can be slow for reasons outside every sandbox: on
the development host (a VM on a shared hypervisor) one-second windows of a loopback TCP round trip
took 93-166 us at 3-9% steal and 270-440 us at 10-14%, on the host and through a veth alike. The
runner records the share over every cell (``metadata["host_steal"]``), a workload that knows a
figure's own window over that window (:func:`steal_over`), so a report can say which figures were
measured while the host itself was being held back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from isobench.hostsys.probe import HostProbe

__all__ = [
    "HIGH_STEAL",
    "CpuTimes",
    "host_meanwhile",
    "read_cpu_times",
    "stat_busy",
    "stat_steal",
    "steal_metadata",
    "steal_over",
    "steal_share",
]

_T = TypeVar("_T")

#: A share of steal above which reports name a cell and doctor warns: on the development host a
#: loopback round trip took 2-3x as long at 10-25% steal.
HIGH_STEAL = 0.10

#: Jiffies (all CPUs together) a stretch must span for its steal share to be recorded: 1 CPU-second
#: at USER_HZ 100. Shorter stretches read a handful of ticks, a share of noise.
MIN_TOTAL_JIFFIES = 100.0


def _cpu_jiffies(text: str, at_least: int) -> list[float] | None:
    """The fields of the aggregate ``cpu`` line of /proc/stat, if it has ``at_least`` of them."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            f = [float(x) for x in line.split()[1:]]
            return f if len(f) >= at_least else None
    return None


def stat_busy(text: str) -> tuple[float, float] | None:
    """(busy, total) jiffies of the aggregate ``cpu`` line of /proc/stat."""
    f = _cpu_jiffies(text, 4)
    if f is None:
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0.0)
    # guest/guest_nice (fields 9, 10) are already counted in user/nice.
    total = sum(f[:8])
    return total - idle, total


def stat_steal(text: str) -> tuple[float, float] | None:
    """(steal, total) jiffies: the share of time a hypervisor ran someone else on our CPUs."""
    f = _cpu_jiffies(text, 8)
    return (f[7], sum(f[:8])) if f is not None else None


@dataclass(frozen=True)
class CpuTimes:
    """One reading of the host's aggregate CPU time, in jiffies."""

    steal: float
    total: float


def read_cpu_times(host: HostProbe) -> CpuTimes | None:
    """The host's steal and total jiffies now; None where /proc/stat cannot say (no steal field)."""
    try:
        parsed = stat_steal((host.proc / "stat").read_text())
    except (OSError, ValueError):
        return None
    return CpuTimes(*parsed) if parsed is not None else None


def steal_share(
    before: CpuTimes | None, after: CpuTimes | None, *, min_total: float = MIN_TOTAL_JIFFIES
) -> float | None:
    """The share of CPU time stolen between two readings; None when either is missing or the
    stretch is too short to say."""
    if before is None or after is None:
        return None
    total = after.total - before.total
    if total < min_total:
        return None
    return max(0.0, min(1.0, (after.steal - before.steal) / total))


def steal_over(fn: Callable[[], _T], host: HostProbe | None = None) -> tuple[_T, float | None]:
    """``fn()`` and the steal share over exactly its run: a workload that knows the window a figure
    covers records this one (the runner's reading spans the whole cell, set-up included)."""
    host = host or HostProbe()
    before = read_cpu_times(host)
    out = fn()
    return out, steal_share(before, read_cpu_times(host))


def steal_metadata(share: float | None) -> dict[str, float]:
    """A steal share as a sample's metadata (``host_steal``); nothing where there is no reading."""
    return {} if share is None else {"host_steal": round(share, 4)}


def host_meanwhile(fn: Callable[[], _T], host: HostProbe) -> tuple[_T, dict[str, Any]]:
    """``fn()`` and what the host did meanwhile, as sample metadata: the share of its CPU time lost
    to steal (``host_steal``) and the other isobench runs live on it when ``fn`` started or ended
    (``concurrent_runs``); a key is left out where there is nothing to say."""
    before = host.other_runs()
    out, steal = steal_over(fn, host)
    meta: dict[str, Any] = dict(steal_metadata(steal))
    if others := sorted({*before, *host.other_runs()}):
        meta["concurrent_runs"] = others
    return out, meta
