"""Signal plumbing for the runner: per-cell deadlines and teardown that Ctrl-C cannot cut short."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from isobench.errors import CellTimeout

__all__ = ["deadline", "shielded"]


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise CellTimeout in the main thread once ``seconds`` pass (SIGALRM; no-op off the main thread).

    Raising from the handler interrupts blocking waits (PEP 475 retries only if the handler returns),
    and every blocking helper in isobench kills what it started when an exception passes through it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: FrameType | None) -> None:
        raise CellTimeout(f"{what} exceeded its {seconds:.0f}s deadline")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends, so teardown is never left half done.

    The first signal received inside is re-delivered as KeyboardInterrupt when the block exits. A
    signal the process ignores (a job started in the background by a non-interactive shell starts
    with SIGINT ignored, as POSIX shells do) stays ignored: a run that Ctrl-C cannot stop between
    cells must not stop at the next teardown instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def _defer(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {
        signum: signal.signal(signum, _defer)
        for signum in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            raise KeyboardInterrupt(f"signal {pending[0]} during teardown")
