"""What an idle sandbox costs the host in memory, as disjoint parts that add up.

The idle-memory workload records the driver's host-side view (``idle-memory.host_view``) and the
figures behind it. Only some of them are *overhead*, and some overlap:

* guests: ``host_view`` = the qemu process's PSS *excluding* the guest-RAM mapping (device models,
  TCG's translation cache, libraries, heap) + the guest RAM the host has backed so far. Those two
  are disjoint and are the parts. The host's MemAvailable drop over the guest's life is a separate
  cross-check, not a part (it also counts page cache and kernel allocations on the guest's behalf).
* containers (own runtime, runc, docker): ``host_view`` = the cgroup's pages and kernel objects
  (``memory.stat``; before results schema 12 its usage counter, which also holds a per-CPU charge
  reserve, kept since as ``host_view.memory_bytes``); that is the single part. A limit
  (``memory_limit_bytes``) is not usage, the peak is not the idle figure, and
  ``idle-memory.inside_used`` of a container is the *host's* MemTotal - MemAvailable read through
  /proc/meminfo, so none of them is stacked.
* the native baseline has no overhead by definition; a driver without a host-side figure (bwrap
  makes no cgroup) gets none, and says so.

So that the stacked parts are real observations, they are taken from one repetition: the one whose
total is the median (the lower middle for an even count), not as medians of each part, which would
not add up to any measured total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from isobench.model import Sample
from isobench.results import Results

from .cells import NATIVE, driver_order

__all__ = ["GUEST_PARTS", "TOTAL", "MemoryOverhead", "idle_overhead"]

#: The measured host-side total of one idle sandbox.
TOTAL = "idle-memory.host_view"
_PREFIX = "idle-memory.host_view."
#: Disjoint parts of a guest's total, with the labels a reader sees.
GUEST_PARTS = (
    ("vm.qemu_pss_bytes", "hypervisor process (excl. guest RAM)"),
    ("vm.guest_ram_rss_bytes", "guest RAM backed by the host"),
)
_MEMAVAILABLE = "vm.host_memavailable_delta_bytes"
CGROUP_PART = "cgroup memory"


@dataclass(frozen=True)
class MemoryOverhead:
    driver: str
    #: Disjoint parts (label, bytes) from the median repetition; they sum to ``total``.
    parts: tuple[tuple[str, float], ...]
    #: Host-side total of the median repetition (bytes).
    total: float
    #: Every repetition's total, for an interval.
    totals: tuple[float, ...]
    #: The host's MemAvailable drop over the guest's life in the same repetition (bytes), if measured.
    memavailable_delta: float | None
    #: How the total was measured, in words.
    method: str


def _by_repetition(samples: Iterable[Sample]) -> dict[str, dict[int, dict[str, float]]]:
    acc: dict[str, dict[int, dict[str, float]]] = {}
    for s in samples:
        if s.workload != "idle-memory" or s.value is None or s.warmup or s.params:
            continue
        if s.metric == TOTAL or s.metric.startswith(_PREFIX):
            key = "total" if s.metric == TOTAL else s.metric[len(_PREFIX) :]
            acc.setdefault(s.driver, {}).setdefault(s.repetition, {})[key] = float(s.value)
    return acc


def _median_repetition(reps: Mapping[int, Mapping[str, float]]) -> int:
    ranked = sorted((figs["total"], rep) for rep, figs in reps.items())
    return ranked[(len(ranked) - 1) // 2][1]


def idle_overhead(results: Results | Iterable[Sample]) -> dict[str, MemoryOverhead]:
    """Per driver (native excluded), the idle host-side memory overhead as disjoint parts."""
    samples = results.measured() if isinstance(results, Results) else results
    out: dict[str, MemoryOverhead] = {}
    by_driver = _by_repetition(samples)
    for driver in sorted(by_driver, key=driver_order):
        if driver == NATIVE:
            continue
        reps = {rep: figs for rep, figs in by_driver[driver].items() if "total" in figs}
        if not reps:
            continue
        figs = reps[_median_repetition(reps)]
        total = figs["total"]
        if all(key in figs for key, _ in GUEST_PARTS):
            parts = tuple((label, figs[key]) for key, label in GUEST_PARTS)
            method = "qemu PSS excluding guest RAM + guest RAM backed by the host (smaps)"
        else:
            parts = ((CGROUP_PART, total),)
            method = "the sandbox cgroup's memory (memory.stat: its pages and kernel objects; the usage counter before results schema 12)"
        out[driver] = MemoryOverhead(
            driver=driver,
            parts=parts,
            total=total,
            totals=tuple(sorted(f["total"] for f in reps.values())),
            memavailable_delta=figs.get(_MEMAVAILABLE),
            method=method,
        )
    return out
