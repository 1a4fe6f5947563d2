"""Docker's own view of a container's life: the daemon's events for it, placed on the phase clock.

The client-side phases time the Engine API calls; the daemon's events say when, inside those calls,
dockerd had done its part. Each daemon phase runs from the moment the client sent a request (or from
an earlier event) to an event the daemon logged:

- ``daemon_create``: ``POST /containers/create`` sent -> container ``create`` (config, container
  layer and its mounts made in dockerd);
- ``daemon_start``: ``POST /containers/<id>/start`` sent -> container ``start`` (the init runs); the
  rest of the client's ``start`` phase is the reply and the inspect. It is the sum of
- ``daemon_network``: start sent -> network ``connect`` (dockerd mounts the rootfs and sets up the
  network sandbox, the ``none`` network included), and
- ``daemon_runtime``: ``connect`` -> container ``start`` (dockerd builds the OCI spec; containerd
  starts a shim, runc creates and starts the init);
- ``daemon_die``: ``DELETE /containers/<id>?force`` sent -> container ``die`` (killed and reaped);
- ``daemon_destroy``: ``die`` -> ``destroy`` (network, mounts, layer and state removed).

An event can only be logged while the call that caused it is in flight, so an event outside its
call's interval means the clocks disagree (a stepped wall clock, a daemon on another host): then the
daemon phases are left out with a warning rather than recorded wrong. Missing events are the same:
a warning, never a failed cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isobench.model import PhaseTiming

__all__ = ["TOLERANCE_NS", "ClockOffset", "api_time", "daemon_phases", "event_times"]

log = logging.getLogger(__name__)

#: How far an event may fall outside its call before the clocks are taken to disagree: the offset
#: is read to well under a microsecond; this only absorbs an NTP slew during one sandbox's life.
TOLERANCE_NS = 1_000_000


@dataclass(frozen=True)
class ClockOffset:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, read once per sandbox.

    Events carry ``timeNano``, dockerd's wall clock (Go's ``time.Now()``: CLOCK_REALTIME), while every
    phase is on CLOCK_MONOTONIC, which has no fixed relation to the wall clock. Both clocks advance
    at the same (NTP-slewed) rate, so their difference is constant unless someone steps the wall
    clock; read once when the sandbox starts it maps every event of that sandbox's short life.
    Reading realtime between two monotonic reads and taking their midpoint bounds the error by half
    the gap between them: tens of nanoseconds, unless the process was preempted in between, so the
    tightest of a few readings is kept.
    """

    realtime_minus_monotonic_ns: int

    @classmethod
    def measure(cls, readings: int = 5) -> ClockOffset:
        def reading() -> tuple[int, int]:  # (gap, offset)
            before = time.monotonic_ns()
            real = time.time_ns()
            after = time.monotonic_ns()
            return after - before, real - (before + after) // 2

        return cls(min(reading() for _ in range(max(1, readings)))[1])

    def to_monotonic(self, realtime_ns: int) -> int:
        return realtime_ns - self.realtime_minus_monotonic_ns

    def to_realtime(self, monotonic_ns: int) -> int:
        return monotonic_ns + self.realtime_minus_monotonic_ns


def api_time(realtime_ns: int) -> str:
    """A wall-clock time as the Engine API's ``since``/``until`` take it: ``seconds.nanoseconds``."""
    return f"{realtime_ns // 1_000_000_000}.{realtime_ns % 1_000_000_000:09d}"


def event_times(events: Iterable[Mapping[str, Any]], container_id: str) -> dict[str, int]:
    """The first ``timeNano`` of each action of this container: its own events by action
    (``start``), the network events naming it as ``network <action>`` (``network connect``); events
    of other containers and anything else are ignored."""
    times: dict[str, int] = {}
    for ev in events:
        actor = ev.get("Actor") or {}
        action = ev.get("Action") or ev.get("status")
        when = ev.get("timeNano")
        if not isinstance(action, str) or not isinstance(when, int):
            continue
        kind = ev.get("Type", "container")
        if kind == "container" and actor.get("ID", ev.get("id")) == container_id:
            times.setdefault(action, when)
        elif kind == "network" and (actor.get("Attributes") or {}).get("container") == container_id:
            times.setdefault(f"network {action}", when)
    return times


#: Daemon phase: (name, the client call it happens in, the event it starts at (None: when that call's
#: request was sent), the event it ends at).
_PHASES: tuple[tuple[str, str, str | None, str], ...] = (
    ("daemon_create", "create", None, "create"),
    ("daemon_start", "start", None, "start"),
    ("daemon_network", "start", None, "network connect"),
    ("daemon_runtime", "start", "network connect", "start"),
    ("daemon_die", "remove", None, "die"),
    ("daemon_destroy", "remove", "die", "destroy"),
)


def daemon_phases(
    times: Mapping[str, int], client: Mapping[str, PhaseTiming], offset: ClockOffset, *, what: str
) -> list[PhaseTiming]:
    """The daemon phases (see the module doc) on CLOCK_MONOTONIC; those whose event or call is
    missing are left out, all of them when an event lies outside its call. ``what`` names the
    sandbox in warnings."""
    mono = {action: offset.to_monotonic(t) for action, t in times.items()}
    out: list[PhaseTiming] = []
    missing: list[str] = []
    for name, source, first, last in _PHASES:
        call = client.get(source)
        start = mono.get(first) if first is not None else (call.start_ns if call is not None else None)
        end = mono.get(last)
        if call is None or start is None or end is None:
            missing.append(name)
            continue
        if not call.start_ns - TOLERANCE_NS <= end <= call.end_ns + TOLERANCE_NS:
            off = end - call.end_ns if end > call.end_ns else end - call.start_ns
            log.warning(
                "%s: the daemon's %s event lies %.1f ms outside the %s call; clocks disagree, "
                "no daemon phases",
                what,
                last,
                off / 1e6,
                source,
            )
            return []
        out.append(PhaseTiming(name, start, max(start, end)))
    if missing:
        log.warning("%s: no daemon events for %s; those phases are left out", what, ", ".join(missing))
    return out
