"""Fixtures shared by workload tests: recorded tool outputs, a host-driver WorkloadContext, and a
disk run whose first fio is stopped for good (on the host or inside a guest)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from isobench.drivers.base import Driver, DriverContext, Sandbox, SandboxSpec
from isobench.testing import workload_context
from isobench.workloads import disk
from isobench.workloads.base import SandboxFactory, WorkloadContext, get_workload

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


#: Inside a guest: a watcher left running on purpose (as a server is; the agent does not wait for
#: it) that stops, once it runs, a job process of the fio with the disk workload's first job (not
#: the probe's) and then that fio: the job has left fio's session, so a kill of fio's process
#: group alone leaves it behind.
GUEST_FIO_STOPPER = (
    "setsid sh -c 'while :; do for p in $(pidof fio); do"
    " read -r _ _ s pp _ < /proc/$p/stat || continue; read -r c < /proc/$pp/comm || continue;"
    " [ $s != Z ] && [ $c = fio ] && grep -qa seq_read-qd1 /proc/$p/cmdline"
    " && { kill -STOP $p $pp; exit; }; done; sleep 0.05; done'"
    " </dev/null >/dev/null 2>&1 &"
)


#: The disk workload's smallest run: eight jobs of 0.3 s + 0.1 s ramp (3.2 s) on an 8 MiB file.
SMALL_DISK = {"size_mib": 8, "runtime": "300ms", "ramp_time": "100ms"}
#: The same on the sandbox's root only, which the stall checks' deadlines and messages (real
#: drivers here, fakes in test_orchestration) are computed from.
STALL_DISK = {**SMALL_DISK, "volume": False}


def check_a_stopped_fio_is_killed_and_run_again(
    ctx: WorkloadContext, monkeypatch: pytest.MonkeyPatch, *, slack: float = 3.0, in_guest: bool = False
) -> None:
    """The disk workload (:data:`STALL_DISK`) through a real driver, its first fio stopped for
    good: killed at its own deadline (``slack`` + 4 x its jobs' time + its file's layout), not the
    cell's, with the processes it had started; its second run gives the figures, noted. On the
    host (and a container's processes are the host's) a thread stops fio and checks the kill
    reached every process it stopped; in a guest, a watcher inside does the stopping."""
    monkeypatch.setattr(disk, "STALL_SLACK_S", slack)
    ctx = dataclasses.replace(ctx, params=STALL_DISK)
    deadline = disk.fio_stall_deadline(disk.DiskParams.of(ctx))
    if in_guest:
        left: list[str] = []
        ms = list(
            get_workload("disk").run(dataclasses.replace(ctx, sandbox=_stopping_fio(ctx.sandbox, left)))
        )
        assert set(left) <= {"Z"}, f"fio processes left in the guest, by state: {left}"
    else:
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
    assert row[1].startswith(f"fio on {row[0]} did not finish within {deadline:.0f} s (its jobs run 3.2 s)")
    assert len([m for m in ms if m.metric == "disk.rand_read.iops"]) == 2  # qd1, qd32: the second run


def _stopping_fio(factory: SandboxFactory, left: list[str]) -> SandboxFactory:
    """``factory``, each of whose guests runs :data:`GUEST_FIO_STOPPER` before the workload has it;
    when the workload is done with it, the states of the fio processes still in it go to ``left``."""

    @contextlib.contextmanager
    def create(**overrides: Any) -> Iterator[Sandbox]:
        with factory(**overrides) as sandbox:
            assert sandbox.exec(["sh", "-c", GUEST_FIO_STOPPER], timeout=30).ok
            yield sandbox
            states = "for p in $(pidof fio); do cut -d' ' -f3 /proc/$p/stat; done"
            left.extend(sandbox.exec(["sh", "-c", states], timeout=30).stdout.split())

    return create
