"""Who runs what in a fleet run, and what happens when a host is lost. Pure: no Dask in here.

Every host runs the matrix for the drivers it can run (its *lane*), so every host has its own
native baseline and the same figure can be put side by side across the fleet. A lane is the list of
cells ``isobench.schedule.expand_matrix`` gives for that host's drivers, with the run's seed: the
rounds, the interleaving and the balanced order hold per host exactly as on one machine.

The client keeps one cell per host in flight (the next one is submitted when the previous one's
samples are back), so the order within a lane needs no task dependencies and the scheduler holds
at most one task per host. A lost host's unfinished cells (the one in flight and the queued ones)
are retried once, in their order, at the end of the lane of another live host that has every
capability they need; a cell that was already a retry, or that no live host can run, becomes a
failure sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from isobench.schedule import Cell, expand_matrix

__all__ = [
    "HOST_SLOT",
    "KVM",
    "FleetPlan",
    "Lost",
    "Placed",
    "driver_resource",
    "requirement",
]

#: Every isobench worker offers one of these and every cell takes it: at most one cell per host.
HOST_SLOT = "isobench-host"
#: Offered by a worker whose KVM works (a probe guest booted); a guest cell measured under KVM is
#: retried only where KVM works too, so a retry never turns KVM figures into TCG ones.
KVM = "kvm"


def driver_resource(driver: str) -> str:
    """The worker resource that says a host can run ``driver`` (doctor: available)."""
    return f"driver-{driver}"


def requirement(driver: str, host_resources: Mapping[str, float], guest: bool) -> dict[str, float]:
    """The Dask resources a cell of ``driver`` takes on a host offering ``host_resources``."""
    need = {HOST_SLOT: 1.0, driver_resource(driver): 1.0}
    if guest and host_resources.get(KVM):
        need[KVM] = 1.0
    return need


def covers(offered: Mapping[str, float], needed: Mapping[str, float]) -> bool:
    return all(offered.get(k, 0.0) >= v for k, v in needed.items())


@dataclass(frozen=True)
class Placed:
    """A cell queued on ``host``; ``retry_of`` names the lost host it was first planned on."""

    host: str
    cell: Cell
    resources: Mapping[str, float]
    retry_of: str | None = None


@dataclass(frozen=True)
class Lost:
    """What became of a lost host's unfinished cells."""

    host: str
    retried: tuple[Placed, ...]
    failed: tuple[Placed, ...]


@dataclass
class _Lane:
    resources: Mapping[str, float]
    queue: deque[Placed] = field(default_factory=deque)
    running: Placed | None = None
    alive: bool = True


class FleetPlan:
    """The lanes of a fleet run and their progress (the client's only scheduling state)."""

    def __init__(
        self,
        hosts: Mapping[str, Mapping[str, float]],
        drivers: Sequence[str],
        workloads: Sequence[str],
        *,
        repetitions: int,
        warmups: int,
        caps: Mapping[str, int],
        seed: int,
        guests: Iterable[str] = (),
    ) -> None:
        self._guests = frozenset(guests)
        self._lanes: dict[str, _Lane] = {}
        for host in sorted(hosts):
            offered = dict(hosts[host])
            mine = [d for d in drivers if offered.get(driver_resource(d))]
            cells = expand_matrix(mine, workloads, repetitions, warmups, caps, seed=seed) if mine else []
            lane = _Lane(offered)
            lane.queue.extend(Placed(host, c, self._need(c.driver, offered)) for c in cells)
            self._lanes[host] = lane

    def _need(self, driver: str, offered: Mapping[str, float]) -> dict[str, float]:
        return requirement(driver, offered, driver in self._guests)

    @property
    def hosts(self) -> list[str]:
        return list(self._lanes)

    def drivers_of(self, host: str) -> list[str]:
        return list(dict.fromkeys(p.cell.driver for p in self._lanes[host].queue))

    def total(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    def next_cell(self, host: str) -> Placed | None:
        """The lane's next cell, now marked running; None if one is running or the lane is done."""
        lane = self._lanes[host]
        if not lane.alive or lane.running is not None or not lane.queue:
            return None
        lane.running = lane.queue.popleft()
        return lane.running

    def finished(self, host: str) -> Placed:
        lane = self._lanes[host]
        if lane.running is None:
            raise ValueError(f"no cell is running on {host}")
        done, lane.running = lane.running, None
        return done

    def idle(self) -> list[str]:
        """Live hosts with a cell to start and none running."""
        return [h for h, lane in self._lanes.items() if lane.alive and lane.running is None and lane.queue]

    def done(self) -> bool:
        return all(
            not lane.alive or (lane.running is None and not lane.queue) for lane in self._lanes.values()
        )

    def lose(self, host: str) -> Lost:
        """``host`` is gone: place its unfinished cells (once) on live hosts that can run them."""
        lane = self._lanes[host]
        lane.alive = False
        pending = ([lane.running] if lane.running is not None else []) + list(lane.queue)
        lane.running, lane.queue = None, deque()
        retried: list[Placed] = []
        failed: list[Placed] = []
        for p in pending:
            target = None if p.retry_of is not None else self._taker(p.resources, exclude=host)
            if target is None:
                failed.append(p)
                continue
            moved = Placed(target, p.cell, p.resources, retry_of=host)
            self._lanes[target].queue.append(moved)
            retried.append(moved)
        return Lost(host, tuple(retried), tuple(failed))

    def _taker(self, needed: Mapping[str, float], exclude: str) -> str | None:
        """The live host that can run a cell needing ``needed`` with the least work queued."""
        able = [
            h
            for h, lane in self._lanes.items()
            if h != exclude and lane.alive and covers(lane.resources, needed)
        ]
        return min(able, key=lambda h: (len(self._lanes[h].queue), h), default=None)
