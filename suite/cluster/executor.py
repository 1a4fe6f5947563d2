"""Run a Dask worker's tasks in the process's main thread.

A cell needs the main thread: its deadline is a SIGALRM timer and its teardown defers SIGINT and
SIGTERM (``isobench.signals``), both of which Python allows only there. ``isobench worker`` runs
the Dask worker's event loop in a thread and hands it this executor, whose tasks the main thread
runs one at a time (a host runs one cell at a time anyway).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

__all__ = ["MainThreadExecutor"]

T = TypeVar("T")

_STOP = object()


class MainThreadExecutor(Executor):
    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed.is_set():
            raise RuntimeError("the worker is shutting down")
        future: Future[T] = Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        self._work.put(_STOP)

    def serve(self, poll: float = 1.0, stop: Callable[[], bool] = lambda: False) -> None:
        """Run submitted work in the calling thread until ``shutdown`` (or ``stop()`` is true)."""
        while not stop():
            try:
                item = self._work.get(timeout=poll)
            except queue.Empty:
                continue
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except Exception as err:
                future.set_exception(err)
            except BaseException:
                # Ctrl-C or SIGTERM: the worker stops, and the scheduler reschedules the task when
                # it loses the worker. The future stays unresolved: handed a KeyboardInterrupt,
                # Dask's event loop logs it as an "unhandled exception" with a screen of traceback.
                self._closed.set()
                raise
            else:
                future.set_result(result)
