from __future__ import annotations

import threading

import pytest
from isobench.periodic import periodically


def test_ticks_at_once_and_stops_with_the_block() -> None:
    ticks: list[str] = []
    first = threading.Event()

    def tick() -> None:
        ticks.append(threading.current_thread().name)
        first.set()

    with periodically(tick, 0.01, name="test-ticker"):
        assert first.wait(5)
    n = len(ticks)
    assert n >= 1 and set(ticks) == {"test-ticker"}
    assert not any(t.name == "test-ticker" for t in threading.enumerate())
    assert len(ticks) == n


def test_an_error_in_the_block_still_stops_the_thread() -> None:
    with pytest.raises(RuntimeError, match="boom"), periodically(lambda: None, 0.01, name="test-boom"):
        raise RuntimeError("boom")
    assert not any(t.name == "test-boom" for t in threading.enumerate())
