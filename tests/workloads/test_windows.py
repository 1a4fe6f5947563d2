"""Round-trip windows started on a cadence: their order, their timing from the clients' own lines,
overlap refused, and no client outliving the call. Real processes (sh) stand in for sockperf."""

from __future__ import annotations

import time

import psutil
import pytest
from isobench.errors import WorkloadError
from isobench.workloads._windows import Window, gaps, staggered_windows


def client(name: str, lead: float, window: float = 0.2) -> list[str]:
    """A stand-in for sockperf's client: a pause, its window's two lines, a result."""
    script = f"sleep {lead}; echo 'sockperf: Starting test...'; sleep {window}; echo 'sockperf: Test end'; echo {name}"
    return ["sh", "-c", script]


def test_windows_started_on_a_cadence_follow_each_other() -> None:
    t0 = time.monotonic()
    got = staggered_windows([client("a", 0.3), client("b", 0.3), client("c", 0.3)], cadence=0.6, timeout=10)
    assert [w.output.split()[-1] for w in got] == ["a", "b", "c"]
    assert all(w.start is not None and w.end is not None and t0 < w.start < w.end for w in got)
    # each window began after the one before it ended (0.6 s cadence, 0.2 s windows: a 0.4 s gap
    # as planned, room for a loaded host to start a client late)
    assert all(g is not None and g > 0 for g in gaps(got))


def test_overlapping_windows_are_an_error_not_a_figure() -> None:
    with pytest.raises(WorkloadError, match=r"windows 0 and 1 overlapped by 0\.[0-9]+ s"):
        staggered_windows([client("a", 0.0, 0.6), client("b", 0.0, 0.6)], cadence=0.1, timeout=10)


def test_a_client_that_does_not_end_in_time_is_killed() -> None:
    started = time.time() - 1
    with pytest.raises(WorkloadError, match="did not end within 1 s"):
        staggered_windows([client("a", 30.0)], cadence=0.1, timeout=1)
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline", "create_time"])
        if p.info["create_time"] >= started and "Starting test" in " ".join(p.info["cmdline"] or [])
    ]
    assert left == []


def test_gaps_are_unknown_where_a_client_printed_no_window() -> None:
    assert gaps([Window("", 1.0, 2.0), Window("", None, None), Window("", 3.5, 4.0)]) == [None, None]
    assert gaps([Window("", 1.0, 2.0), Window("", 2.1, 3.0)]) == [pytest.approx(0.1)]
