"""The fleet as the client sees it: live hosts, a cell submitted to one, results as they arrive.

``Fleet`` is the seam between the client's loop (``isobench.cluster.client``) and Dask, so the
loop is tested with a fake fleet; ``DaskFleet`` is the real one, over a ``distributed.Client``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from isobench.errors import UsageError
from isobench.model import Sample

from .worker import CellTask, close_run, execute_cell, worker_facts

log = logging.getLogger(__name__)

#: How long gathering a finished cell's samples may take (a few KB) before the client looks again
#: at who is alive; see :meth:`DaskFleet.result`.
RESULT_TIMEOUT = 20.0

__all__ = ["DaskFleet", "Fleet", "Handle"]


class Handle(Protocol):
    """A submitted cell (a Dask future)."""


class Fleet(Protocol):
    def hosts(self) -> dict[str, dict[str, float]]:
        """Live hosts: name -> resources offered."""

    def submit(self, host: str, task: CellTask, resources: Mapping[str, float]) -> Handle: ...

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        """Those of ``handles`` that finished (empty after ``timeout`` seconds without one)."""

    def result(self, handle: Handle) -> list[Sample]:
        """The cell's samples; raises what the task raised."""

    def forget(self, handle: Handle) -> None:
        """Release a finished or abandoned cell, so the scheduler never recomputes it."""

    def facts(self) -> dict[str, Any]:
        """Per host: its name, resources and hostinfo."""

    def close_run(self, run_id: str, hosts: Sequence[str]) -> dict[str, list[str]]:
        """Close the run on each live host of ``hosts``; per host its teardown errors."""


class DaskFleet:
    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        from distributed import Client

        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
        except OSError as err:
            raise UsageError(f"cannot reach the Dask scheduler at {address}: {err}") from None
        self.address = address
        self._addresses: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def _identity(self) -> dict[str, Any]:
        # Asked of the scheduler each time: Client.scheduler_info() returns a cache that the
        # client's own periodic refresh may have just replaced with one without the workers.
        rpc = self.client.scheduler
        if rpc is None:
            raise UsageError(f"the Dask client lost the scheduler at {self.address}")
        return dict(self.client.sync(rpc.identity, n_workers=-1)["workers"])  # type: ignore[no-untyped-call]

    def _workers(self) -> dict[str, Any]:
        return {str(w.get("name")): addr for addr, w in self._identity().items()}

    def hosts(self) -> dict[str, dict[str, float]]:
        workers = self._identity()
        self._addresses = {str(w.get("name")): addr for addr, w in workers.items()}
        return {str(w.get("name")): dict(w.get("resources") or {}) for w in workers.values()}

    def submit(self, host: str, task: CellTask, resources: Mapping[str, float]) -> Any:
        # the addresses as of the last hosts(): the client asks that every few seconds, not per cell
        addr = self._addresses.get(host)
        if addr is None:
            raise LookupError(host)
        return self.client.submit(
            execute_cell,
            task,
            key=f"isobench-{task.run_id}-{host}-{task.cell.round}-{task.cell.slot}-{task.cell.driver}"
            f"-{task.cell.workload}" + (f"-retry-{task.retry_of}" if task.retry_of else ""),
            resources=dict(resources),
            workers=[addr],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        from distributed import wait

        try:
            with self.client.as_current():
                done, _ = wait(list(handles), timeout=timeout, return_when="FIRST_COMPLETED")  # type: ignore[no-untyped-call]
        except TimeoutError:
            return []
        return list(done)

    def result(self, handle: Any) -> list[Sample]:
        # Bounded: a task that finished on a host killed before its result was gathered is
        # rescheduled by Dask, but only onto that (dead) host, so an unbounded result() never returns.
        return list(handle.result(timeout=RESULT_TIMEOUT))

    def forget(self, handle: Any) -> None:
        handle.cancel()
        handle.release()

    def facts(self) -> dict[str, Any]:
        by_addr = self.client.run(worker_facts)
        return {str(f["name"]): f for f in by_addr.values()}

    def close_run(self, run_id: str, hosts: Sequence[str]) -> dict[str, list[str]]:
        workers = self._workers()
        futures = {
            h: self.client.submit(
                close_run,
                run_id,
                key=f"isobench-{run_id}-close-{h}",
                workers=[workers[h]],
                allow_other_workers=False,
                pure=False,
            )
            for h in hosts
            if h in workers
        }
        errors: dict[str, list[str]] = {}
        for host, fut in futures.items():
            try:
                errors[host] = list(fut.result(timeout=300))
            except Exception as err:  # a host lost while closing: `isobench gc` there cleans up
                errors[host] = [f"closing the run on {host} failed: {err} (run `isobench gc` there)"]
        return errors
