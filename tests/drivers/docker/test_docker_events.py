"""Docker's own phases without a daemon: the wall clock mapped onto CLOCK_MONOTONIC, the events
picked out of a stream, the phases built from them, and every way of not having them (no events, an
events query that fails, clocks that disagree) being a warning rather than an error."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from isobench.drivers.base import PhaseClock, SandboxSpec, started_or_cleaned
from isobench.drivers.docker.events import TOLERANCE_NS, ClockOffset, api_time, daemon_phases, event_times
from isobench.drivers.docker.sandbox import DockerSandbox, container_config
from isobench.errors import SandboxError
from isobench.model import PhaseTiming

from .conftest import FakeEngine  # type: ignore[import-not-found]

WALL = 1_700_000_000_000_000_000  # an epoch time in ns
OFFSET = ClockOffset(WALL - 1_000)  # monotonic 1_000 is WALL on the wall clock
CLIENT = {
    "create": PhaseTiming("create", 1_000, 2_000),
    "start": PhaseTiming("start", 3_000, 8_000),
    "remove": PhaseTiming("remove", 10_000, 12_000),
}


def _ev(action: str, wall_ns: int, cid: str = "c1") -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "Actor": {"ID": cid, "Attributes": {}},
        "timeNano": wall_ns,
    }


def _net_ev(action: str, wall_ns: int, cid: str | None = "c1") -> dict[str, Any]:
    attributes = {"name": "none", "type": "null"} | ({"container": cid} if cid else {})
    return {
        "Type": "network",
        "Action": action,
        "Actor": {"ID": "n1", "Attributes": attributes},
        "timeNano": wall_ns,
    }


def _wall(mono_ns: int) -> int:
    return OFFSET.to_realtime(mono_ns)


def test_api_time_is_seconds_dot_nanoseconds() -> None:
    assert api_time(1_700_000_000_000_000_042) == "1700000000.000000042"
    assert api_time(5 * 10**9) == "5.000000000"


def test_the_offset_maps_the_wall_clock_onto_monotonic() -> None:
    assert OFFSET.to_monotonic(WALL + 500) == 1_500
    assert OFFSET.to_realtime(OFFSET.to_monotonic(WALL + 7)) == WALL + 7
    offset = ClockOffset.measure()
    before = time.monotonic_ns()
    wall = time.time_ns()
    after = time.monotonic_ns()
    # Read right after measuring: the wall-clock reading lands between the monotonic ones.
    assert before - TOLERANCE_NS <= offset.to_monotonic(wall) <= after + TOLERANCE_NS


def test_event_times_keeps_the_first_lifecycle_event_of_this_container() -> None:
    events = [
        _net_ev("create", 9, cid=None),  # a network's own create is no container's
        _ev("create", 10),
        _ev("create", 11, cid="other"),
        _net_ev("connect", 12, cid="other"),
        _net_ev("connect", 12),
        _ev("start", 13),
        _ev("exec_create: true ", 14),
        _ev("start", 15),  # a restart: the first start is the one create led to
        {"status": "die", "id": "c1", "time": 0, "timeNano": 16},  # the pre-1.22 shape
    ]
    assert event_times(events, "c1") == {
        "create": 10,
        "network connect": 12,
        "start": 13,
        "exec_create: true ": 14,
        "die": 16,
    }


def test_daemon_phases_run_from_the_request_to_the_event_on_monotonic() -> None:
    times = {
        "create": _wall(1_800),
        "network connect": _wall(3_400),
        "start": _wall(7_500),
        "die": _wall(11_000),
        "destroy": _wall(11_900),
    }
    phases = daemon_phases(times, CLIENT, OFFSET, what="sb")
    assert phases == [
        PhaseTiming("daemon_create", 1_000, 1_800),
        PhaseTiming("daemon_start", 3_000, 7_500),
        PhaseTiming("daemon_network", 3_000, 3_400),
        PhaseTiming("daemon_runtime", 3_400, 7_500),
        PhaseTiming("daemon_die", 10_000, 11_000),
        PhaseTiming("daemon_destroy", 11_000, 11_900),
    ]


def test_an_event_a_hair_before_its_request_is_clamped_to_a_zero_phase() -> None:
    (phase,) = daemon_phases({"create": _wall(1_000 - 10)}, {"create": CLIENT["create"]}, OFFSET, what="sb")
    assert phase == PhaseTiming("daemon_create", 1_000, 1_000)


def test_missing_events_leave_their_phases_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    times = {"create": _wall(1_800), "start": _wall(7_500)}
    with caplog.at_level(logging.WARNING):
        phases = daemon_phases(times, CLIENT, OFFSET, what="docker sandbox sb")
    assert [p.name for p in phases] == ["daemon_create", "daemon_start"]
    assert (
        "docker sandbox sb: no daemon events for daemon_network, daemon_runtime, daemon_die, daemon_destroy"
        in caplog.text
    )


def test_an_event_outside_its_call_drops_every_daemon_phase(caplog: pytest.LogCaptureFixture) -> None:
    # A wall clock stepped by a second between the offset reading and the start event.
    times = {"create": _wall(1_800), "start": _wall(7_500) + 1_000_000_000}
    with caplog.at_level(logging.WARNING):
        assert daemon_phases(times, CLIENT, OFFSET, what="sb") == []
    assert "start event lies 1000.0 ms outside the start call; clocks disagree" in caplog.text


# -- the sandbox: daemon phases after destroy, or a warning ------------------------------------------


def _sandbox(engine: FakeEngine) -> DockerSandbox:
    spec = SandboxSpec(name="sb", run_id="r1")
    config = container_config(spec, image="i", network=None, cgroup_parent="p")
    sb = DockerSandbox(spec, PhaseClock(), engine=engine, config=config, timeout=5)
    return started_or_cleaned(sb, sb._start)


def test_a_destroyed_sandbox_shows_the_daemon_phases_within_its_calls() -> None:
    # Looking before destroy makes no query (it would raise here) and shows the client's phases only.
    engine = FakeEngine(fail={"events": AssertionError("events queried before destroy")})
    sb = _sandbox(engine)
    assert [p.name for p in sb.phases] == ["create", "start", "ready", "exec"]
    del engine.fail["events"]
    sb.destroy()
    by = {p.name: p for p in sb.phases}
    names = [p.name for p in sb.phases]
    assert names[-6:] == [
        "daemon_create",
        "daemon_start",
        "daemon_network",
        "daemon_runtime",
        "daemon_die",
        "daemon_destroy",
    ]
    assert len(names) == len(set(names)) == len(sb.phases)  # a second look adds nothing
    create, start, ready = by["create"], by["start"], by["ready"]
    assert create.start_ns == by["daemon_create"].start_ns <= by["daemon_create"].end_ns <= create.end_ns
    assert start.start_ns == by["daemon_start"].start_ns <= by["daemon_start"].end_ns <= start.end_ns
    assert by["daemon_start"].end_ns <= ready.end_ns
    assert by["daemon_network"].end_ns == by["daemon_runtime"].start_ns
    assert by["daemon_network"].seconds + by["daemon_runtime"].seconds == pytest.approx(
        by["daemon_start"].seconds
    )
    remove = by["remove"]
    assert remove.start_ns <= by["daemon_die"].end_ns <= by["daemon_destroy"].end_ns <= remove.end_ns


def test_events_that_cannot_be_read_are_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(fail={"events": SandboxError("docker events: the daemon does not answer")})
    sb = _sandbox(engine)
    sb.destroy()
    with caplog.at_level(logging.WARNING):
        names = [p.name for p in sb.phases]
    assert names == ["create", "start", "ready", "exec", "remove", "destroy"]
    assert "sb: cannot read the daemon's events (docker events: the daemon does not answer)" in caplog.text


def test_a_daemon_that_kept_no_events_gives_no_daemon_phases(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine()
    sb = _sandbox(engine)
    sb.destroy()
    engine.daemon_events.clear()  # a daemon restarted, or its event buffer overrun
    with caplog.at_level(logging.WARNING):
        assert not [p for p in sb.phases if p.name.startswith("daemon_")]
    assert "no daemon events for daemon_create, daemon_start, daemon_network" in caplog.text
