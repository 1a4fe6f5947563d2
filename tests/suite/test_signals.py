"""The runner's signal plumbing: deferred Ctrl-C around teardown, per-cell deadlines."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from isobench.errors import CellTimeout
from isobench.signals import deadline, shielded


@pytest.fixture
def sigint_default() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler runs at the next bytecode boundary of the main thread


def test_shielded_defers_ctrl_c_until_the_block_ends(sigint_default: None) -> None:
    done: list[str] = []

    def teardown() -> None:
        with shielded():
            _deliver(signal.SIGINT)
            done.append("rest of the teardown")

    with pytest.raises(KeyboardInterrupt, match="signal 2 during teardown"):
        teardown()
    assert done == ["rest of the teardown"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_shielded_defers_sigterm_too(sigint_default: None) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt, match="signal 15"), shielded():
            _deliver(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_shielded_leaves_an_ignored_sigint_ignored() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored: the shield must not
    # turn a Ctrl-C the run never sees between cells into a stop at the next teardown.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with shielded():
            _deliver(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_shielded_is_a_no_op_off_the_main_thread(sigint_default: None) -> None:
    seen: list[object] = []

    def worker() -> None:
        with shielded():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]


def test_deadline_raises_cell_timeout_and_clears_its_timer() -> None:
    with pytest.raises(CellTimeout, match="the cell exceeded its 0s deadline"), deadline(0.05, "the cell"):
        time.sleep(2)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_deadline_not_reached_leaves_no_timer() -> None:
    with deadline(5, "the cell"):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
