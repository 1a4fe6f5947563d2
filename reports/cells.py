"""Cells: the samples of one (driver, workload, metric, params variant), the unit every table,
plot and comparison summarises."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isobench.drivers.base import presentation_order
from isobench.hostsys.procstat import HIGH_STEAL
from isobench.model import Better, Sample
from isobench.results import Results

__all__ = [
    "HIGH_STEAL",
    "LEAK_AGGREGATES",
    "NATIVE",
    "PAIRED_RATIOS",
    "STEAL_GAP",
    "Cell",
    "CellKey",
    "driver_labels",
    "driver_order",
    "group_cells",
    "is_leak_probe",
    "median_steal",
    "steal_may_explain",
    "variant_of",
]

#: The native baseline every ratio is taken against.
NATIVE = "host"


#: Figures that are a ratio to native themselves, measured in adjacent windows (the sandbox's, then
#: the host's reference), keyed to the figure whose ratio they stand for: their ratio to native is
#: their own value, and where a driver has one it replaces the ratio of cells measured apart, which
#: the host's slow stretches decide (README "Round-trip drift").
PAIRED_RATIOS = {"network.tcp_rtt.p50_paired_ratio": "network.tcp_rtt.p50"}

#: How much more steal than the other side a ratio's slower side must have run under (and above
#: HIGH_STEAL) before a report says the host may explain the ratio.
STEAL_GAP = 0.05


#: Leakage metrics that summarise the probes rather than being one (0/1) probe: the score, the
#: count of leaking probes, and the counts of probes left out of the score (could not run / decide).
LEAK_AGGREGATES = frozenset({"leakage.score", "leakage.count", "leakage.errors", "leakage.inconclusive"})


def is_leak_probe(metric: str) -> bool:
    return metric.startswith("leakage.") and metric not in LEAK_AGGREGATES


def driver_order(name: str) -> tuple[int, str]:
    """Sort key of a driver's rows and bars: the order its capabilities declare (Felter et al.: native,
    then containers, then virtual machines), drivers this isobench does not have last by name."""
    return presentation_order(name)


def _scalar(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def variant_of(params: Mapping[str, Any]) -> str:
    """A stable, readable name for a params combination (``"path=veth, storage=overlay"``)."""
    return ", ".join(f"{k}={_scalar(params[k])}" for k in sorted(params))


@dataclass(frozen=True, order=True)
class CellKey:
    workload: str
    metric: str
    variant: str
    driver: str

    def without_driver(self) -> tuple[str, str, str]:
        return (self.workload, self.metric, self.variant)


@dataclass(frozen=True)
class Cell:
    key: CellKey
    unit: str
    better: Better
    phase: str | None
    params: Mapping[str, Any]
    values: tuple[float, ...]
    #: The median share of the host's CPU time its hypervisor took (steal) while the cell's
    #: repetitions ran; NaN where no repetition recorded one (results before schema 9, short cells).
    host_steal: float = math.nan
    #: A paired figure's (PAIRED_RATIOS) every pair ratio, from its samples' ``pair_ratios`` (each
    #: value is one repetition's median of them), or its values where the samples kept no pairs.
    pairs: tuple[float, ...] = ()


def group_cells(samples: Results | Iterable[Sample]) -> dict[CellKey, Cell]:
    """Measured, non-warm-up samples grouped by cell, in a deterministic order."""
    it = (
        samples.measured()
        if isinstance(samples, Results)
        else (s for s in samples if s.value is not None and not s.warmup)
    )
    acc: dict[CellKey, list[Sample]] = {}
    for s in it:
        key = CellKey(s.workload, s.metric, variant_of(s.params), s.driver)
        acc.setdefault(key, []).append(s)
    cells: dict[CellKey, Cell] = {}
    for key in sorted(acc, key=lambda k: (k.workload, k.metric, k.variant, driver_order(k.driver))):
        group = acc[key]
        first = group[0]
        cells[key] = Cell(
            key=key,
            unit=first.unit,
            better=first.better,
            phase=first.phase,
            params=dict(first.params),
            values=tuple(float(s.value) for s in group if s.value is not None),
            host_steal=median_steal(group),
            pairs=_pairs(key.metric, group),
        )
    return cells


def _pairs(metric: str, group: list[Sample]) -> tuple[float, ...]:
    if metric not in PAIRED_RATIOS:
        return ()
    kept = [s.metadata.get("pair_ratios") for s in group]
    pairs = tuple(
        float(r) for got in kept if isinstance(got, list) for r in got if isinstance(r, int | float) and r > 0
    )
    return pairs or tuple(float(s.value) for s in group if s.value is not None)


def steal_may_explain(slower: float, faster: float) -> bool:
    """Whether the host's steal may have made the slower of two sides slower: it ran above
    HIGH_STEAL and more than STEAL_GAP above the faster side (a side without a reading, NaN: no).
    Steal on the faster side only shrinks a gap, so it never explains one."""
    return slower > HIGH_STEAL and slower - faster > STEAL_GAP


def median_steal(samples: Iterable[Sample]) -> float:
    """The median ``host_steal`` the samples' cells recorded, NaN where none did."""
    shares = [float(v) for s in samples if isinstance(v := s.metadata.get("host_steal"), int | float)]
    return statistics.median(shares) if shares else math.nan


def driver_labels(results: Results | None) -> dict[str, str]:
    """``driver (micro kernel)`` for each driver whose samples name the kernel their guests booted
    (``kernel_flavour``); ``driver (micro + stock kernels)`` when a run mixed them."""
    flavours: dict[str, set[str]] = {}
    for s in results.samples if results is not None else ():
        flavour = s.metadata.get("kernel_flavour")
        if isinstance(flavour, str) and flavour:
            flavours.setdefault(s.driver, set()).add(flavour)
    return {
        d: f"{d} ({' + '.join(sorted(fs))} kernel{'s' if len(fs) > 1 else ''})" for d, fs in flavours.items()
    }
