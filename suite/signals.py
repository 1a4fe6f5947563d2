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

    The first signal received inside is re-delivered as KeyboardInterrupt when the block exits.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def _defer(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    old_int = signal.signal(signal.SIGINT, _defer)
    old_term = signal.signal(signal.SIGTERM, _defer)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if pending:
            raise KeyboardInterrupt(f"signal {pending[0]} during teardown")
