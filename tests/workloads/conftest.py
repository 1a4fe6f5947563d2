"""Fixtures shared by workload tests: recorded tool outputs, a host-driver WorkloadContext, and a
disk run whose first fio is stopped for good."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.testing import workload_context
from isobench.workloads import disk
from isobench.workloads.base import WorkloadContext, get_workload

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data() -> Callable[[str], str]:
    def read(name: str) -> str:
        return (DATA / name).read_text()

    return read


def make_context(driver: Driver, spec: SandboxSpec, **kwargs: Any) -> WorkloadContext:
    """A WorkloadContext whose factory creates through the driver and destroys in finally, like the
    runner does."""
    return workload_context(driver, spec=spec, **kwargs)


@pytest.fixture
def host_ctx(tmp_path: Path) -> Callable[..., WorkloadContext]:
    from isobench.drivers.host import HostDriver

    run_id = "wl" + uuid.uuid4().hex[:8]
    driver = HostDriver(
        DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    )

    def build(**kwargs: Any) -> WorkloadContext:
        spec = SandboxSpec(name=f"isobench-{run_id}-host", run_id=run_id, vcpus=2, memory_mib=512)
        kwargs.setdefault("quick", True)
        kwargs.setdefault("timeout", 300.0)
        return make_context(driver, spec, **kwargs)

    return build


def stop_fio_once(stopped: list[int], done: threading.Event) -> None:
    """SIGSTOP the first fio that runs the disk workload's jobs (and its job processes): a fio that
    never finishes, as a stalled disk leaves it."""
    while not done.wait(0.05):
        procs = [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "fio" and "--name=seq_read-qd1" in (p.info["cmdline"] or [])
        ]
        if procs:
            time.sleep(0.3)  # let it lay out its file and fork its job
            for proc in procs + [c for p in procs for c in p.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGSTOP)
                    stopped.append(proc.pid)
            return


def check_a_stopped_fio_is_killed_and_run_again(
    ctx: WorkloadContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk workload through a real driver, its first fio stopped for good: killed at its own
    deadline (a 3 s slack here: 3 + 4 x 3.2 + 8 MiB at 4 MiB/s), not the cell's, with the processes
    it had started; its second run gives the figures, noted."""
    monkeypatch.setattr(disk, "STALL_SLACK_S", 3.0)
    stopped: list[int] = []
    done = threading.Event()
    watcher = threading.Thread(target=stop_fio_once, args=(stopped, done), daemon=True)
    watcher.start()
    try:
        ms = list(get_workload("disk").run(ctx))
    finally:
        done.set()
        watcher.join()
    assert stopped, "fio was never seen running"
    for pid in stopped:
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"stopped fio {pid} lives on"
    (row,) = {(m.metadata["directory"], m.metadata["fio_stall"]) for m in ms}
    assert row[1].startswith(f"fio on {row[0]} did not finish within 18 s (its jobs run 3.2 s)")
    assert len([m for m in ms if m.metric == "disk.rand_read.iops"]) == 2  # qd1, qd32: the second run
