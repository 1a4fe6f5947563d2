"""The order cells run in: rounds, a seeded random driver order in each, and warm-ups.

Within a round every selected workload runs on every selected driver (and, in an A/B run, under
every configuration) before the next round starts, so slow drift of the machine (thermal, page
cache, a neighbour) spreads over drivers instead of biasing whichever always ran first or last.

Inside a round the workloads keep their configured order (cheapest first, so a short run still
covers start-up and CPU), and for each workload the (driver, configuration) pairs run in a random
permutation drawn from the run's seed. A cyclic rotation would make every driver always follow the
same one (host right after a qemu teardown, whose page-cache and CPU-frequency aftermath it then
inherits every time); independent permutations make each driver follow each other one equally often
on average, and the seed (recorded in ``results.run["order"]``) replays the exact order. Every sample
carries its round in ``metadata["round"]`` and its place in the round in ``metadata["slot"]``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from isobench.workloads.base import Workload

__all__ = [
    "ORDER_DESIGN",
    "Cell",
    "Unit",
    "expand_matrix",
    "first_use_round",
    "order_round",
    "repetition_caps",
    "warmup_round",
]

ORDER_DESIGN = "rounds; per round and workload, a seeded random permutation of (driver, configuration)"


@dataclass(frozen=True, order=True)
class Unit:
    """What a cell measures: one workload on one driver, under one A/B configuration (or None)."""

    driver: str
    workload: str
    variant: str | None = None


@dataclass(frozen=True)
class Cell:
    round: int
    repetition: int
    warmup: bool
    driver: str
    workload: str
    #: The A/B configuration's label; None outside an A/B run.
    variant: str | None = None
    #: Place within its round (0-based), recorded so the order can be audited from the samples.
    slot: int = 0

    @property
    def unit(self) -> Unit:
        return Unit(self.driver, self.workload, self.variant)

    @property
    def label(self) -> str:
        kind = "warmup" if self.warmup else f"rep {self.repetition}"
        where = f"{self.driver} [{self.variant}]" if self.variant is not None else self.driver
        return f"{self.workload} on {where} ({kind})"


def order_round(units: Iterable[Unit], workloads: Sequence[str], rng: random.Random) -> list[Unit]:
    """``units`` grouped by workload in ``workloads`` order, each group in a random permutation."""
    by_workload: dict[str, list[Unit]] = {}
    for u in units:
        by_workload.setdefault(u.workload, []).append(u)
    ordered: list[Unit] = []
    for w in sorted(by_workload, key=lambda name: workloads.index(name) if name in workloads else 1 << 30):
        group = sorted(by_workload[w])  # a canonical start, so the seed alone decides the order
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


def _cells(rnd: int, units: Sequence[Unit], reps: Mapping[Unit, int], warm: bool) -> list[Cell]:
    return [
        Cell(rnd, 0 if warm else reps[u], warm, u.driver, u.workload, u.variant, slot)
        for slot, u in enumerate(units)
    ]


def warmup_round(
    rnd: int,
    units: Sequence[Unit],
    workloads: Sequence[str],
    capped: Iterable[str],
    rng: random.Random,
    *,
    first: bool,
) -> list[Cell]:
    """One warm-up round. A capped workload (one that aggregates within its cell) gets its single
    warm-up cell per unit in the first warm-up round only: it pays first-use costs (tool binaries
    and image pages into the page cache, a driver's lazy set-up) that would otherwise land on
    whichever driver ran it first, without doubling its cost for every extra warm-up round."""
    capped = set(capped)
    chosen = [u for u in units if first or u.workload not in capped]
    return _cells(rnd, order_round(chosen, workloads, rng), {}, warm=True)


def first_use_round(
    units: Sequence[Unit], primed: Iterable[str], workloads: Sequence[str], rng: random.Random
) -> list[Cell]:
    """A budgeted run's one warm-up round: one unrecorded cell per unit of the ``primed``
    workloads (those with ``first_use_warmup``), so their first-use costs stay out of rep 0 without
    the whole warm-up round a fixed-count run pays. Empty when none is primed."""
    primed = set(primed)
    chosen = [u for u in units if u.workload in primed]
    return _cells(0, order_round(chosen, workloads, rng), {}, warm=True) if chosen else []


def expand_matrix(
    drivers: Sequence[str],
    workloads: Sequence[str],
    repetitions: int,
    warmups: int,
    max_repetitions: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    variants: Sequence[str | None] = (None,),
) -> list[Cell]:
    """The fixed-repetition matrix: ``warmups`` warm-up rounds, then ``repetitions`` measured rounds;
    ``max_repetitions`` caps some workloads' measured rounds."""
    caps = max_repetitions or {}
    rng = random.Random(seed)
    units = [Unit(d, w, v) for w in workloads for d in drivers for v in variants]
    cells: list[Cell] = []
    for rnd in range(warmups):
        cells += warmup_round(rnd, units, workloads, caps, rng, first=rnd == 0)
    for rep in range(repetitions):
        chosen = [u for u in units if rep < caps.get(u.workload, repetitions)]
        cells += _cells(warmups + rep, order_round(chosen, workloads, rng), dict.fromkeys(chosen, rep), False)
    return cells


def repetition_caps(
    workloads: Mapping[str, Workload], *, quick: bool, explicit: int | None = None
) -> dict[str, int]:
    """Per-workload repetition limits: ``max_repetitions`` always, ``quick_repetitions`` under --quick.

    ``explicit`` is a repetition count the user asked for: it overrides the limits, while a capped
    workload stays in the result.
    """
    caps: dict[str, int] = {}
    for name, w in workloads.items():
        limits = [c for c in (w.max_repetitions, w.quick_repetitions if quick else None) if c]
        if limits:
            caps[name] = explicit if explicit is not None else min(limits)
    return caps
