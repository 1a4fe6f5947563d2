"""A function called at an interval in a background thread while a ``with`` block runs: the host
samplers and watchers that run beside a measurement."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

__all__ = ["periodically"]


@contextlib.contextmanager
def periodically(
    tick: Callable[[], None], interval: float, *, name: str, join_timeout: float | None = None
) -> Iterator[None]:
    """``tick()`` at once and then every ``interval`` seconds in a daemon thread, until the block
    exits; leaving it stops the thread and waits for the tick in progress (at most ``join_timeout``
    seconds, so a hung tick cannot hold up a teardown)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            tick()
            stop.wait(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
