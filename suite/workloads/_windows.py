"""Round-trip windows back to back: sockperf clients started on a cadence so that each one's measured
window follows the previous one's, without paying sockperf's start-up pause for every window.

sockperf's client (3.7, strace): it pauses 0.1 s, connects, sends a few warm-up messages, sleeps
2 s, and only then runs its ``-t`` window, whose first 0.4 s and last 0.05 s it does not count. Run
one after the other, a 1 s window costs 3.2 s of wall time. Started every :data:`CADENCE_S` instead,
client *i*'s window begins ~0.1 s after client *i-1*'s ends, and its own start-up and warm-up fall in
client *i-2*'s uncounted first 0.4 s. The clients' "Starting test" and "Test end" lines are timed as
they arrive, and windows that overlapped anyway (another sockperf, a stalled host) are an error,
never a figure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from isobench.errors import WorkloadError

__all__ = ["CADENCE_S", "OVERLAP_SLACK_S", "Window", "connect_once", "gaps", "staggered_windows"]

#: Seconds between client starts: a 1 s window plus a 0.1 s gap.
CADENCE_S = 1.1
#: How far a window's start may precede the previous window's end as the reader threads saw them
#: (a line read late is not an overlap) before the windows count as overlapping.
OVERLAP_SLACK_S = 0.05


@dataclass(frozen=True)
class Window:
    """One client's output and when (CLOCK_MONOTONIC, as read) its window started and ended."""

    output: str
    start: float | None
    end: float | None


def connect_once(address: str, port: int, timeout: float = 2.0) -> None:
    """Open and close one TCP connection: a server that is up. Raises ConnectionRefusedError while
    nothing listens (a server still starting)."""
    with socket.create_connection((address, port), timeout=timeout):
        pass


def staggered_windows(argvs: Sequence[Sequence[str]], *, cadence: float, timeout: float) -> list[Window]:
    """Start ``argvs[i]`` at ``i * cadence`` s, wait for all (at most ``timeout`` s after the last
    start), and return their windows in order. Every client runs in its own process group and none
    outlives the call. Raises WorkloadError when one did not finish in time or two windows
    overlapped."""
    procs: list[subprocess.Popen[str]] = []
    outs: list[list[str]] = []
    times: list[dict[str, float]] = []
    readers: list[threading.Thread] = []

    def read(proc: subprocess.Popen[str], out: list[str], seen: dict[str, float]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic()
            if "Starting test" in line:
                seen.setdefault("start", now)
            elif "Test end" in line:
                seen.setdefault("end", now)
            out.append(line)

    t0 = time.monotonic()
    try:
        for i, argv in enumerate(argvs):
            time.sleep(max(0.0, t0 + i * cadence - time.monotonic()))
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            procs.append(proc)
            outs.append([])
            times.append({})
            readers.append(threading.Thread(target=read, args=(proc, outs[-1], times[-1]), daemon=True))
            readers[-1].start()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as err:
                raise WorkloadError(
                    f"sockperf: a round-trip window did not end within {timeout:.0f} s"
                ) from err
        for reader in readers:
            reader.join(5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    windows = [
        Window("".join(out), seen.get("start"), seen.get("end"))
        for out, seen in zip(outs, times, strict=True)
    ]
    for i, gap in enumerate(gaps(windows)):
        if gap is not None and gap < -OVERLAP_SLACK_S:
            raise WorkloadError(
                f"round-trip windows {i} and {i + 1} overlapped by {-gap:.2f} s: this sockperf does not"
                " pause ~2 s before its window as 3.7 does (set [workloads.network] paired_windows = 0)"
            )
    return windows


def gaps(windows: Sequence[Window]) -> list[float | None]:
    """How long after each window ended the next one began (negative: they overlapped), as the
    clients' lines were read; None where a client printed no such line."""
    return [
        None if a.end is None or b.start is None else b.start - a.end for a, b in itertools.pairwise(windows)
    ]
