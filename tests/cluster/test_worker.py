"""The host side without Dask: what a worker offers, how it runs a cell, and how it closes a run."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from isobench import __version__
from isobench.cluster import worker as worker_mod
from isobench.cluster.executor import MainThreadExecutor
from isobench.cluster.plan import HOST_SLOT, KVM, driver_resource
from isobench.cluster.probe import host_identity, resources_from_checks, resources_text
from isobench.cluster.worker import HOST_PARAM, CellTask, HostState, close_run, execute_cell
from isobench.config import RunConfig
from isobench.doctor import Check
from isobench.drivers.base import DriverContext
from isobench.model import Measurement
from isobench.runstate import live_runs
from isobench.schedule import Cell
from isobench.testing import FakeDriver
from isobench.workloads.base import WorkloadContext

RUN_ID = "20261130120000abcd"


class Steady:
    """A workload as far as ``Runner.run_cell`` needs one: it names the sandbox it ran in."""

    name: ClassVar[str] = "steady"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox() as sb:
            sb.exec(["true"], timeout=1)
            return [Measurement("steady.value", 1.0, "s", metadata={"sandbox": sb.name})]


@pytest.fixture
def fake_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterable[tuple[HostState, list[FakeDriver]]]:
    made: list[FakeDriver] = []

    def fake(ctx: DriverContext) -> FakeDriver:
        d = FakeDriver.like(FakeDriver.capabilities, name="fake", ctx=ctx, script=[("", "")])
        made.append(d)
        return d

    monkeypatch.setattr(worker_mod, "all_drivers", lambda: {"fake": fake, "other": fake})
    monkeypatch.setattr(worker_mod, "all_workloads", lambda: {"steady": Steady})
    state = HostState("node7", tmp_path / "state", {HOST_SLOT: 1.0, driver_resource("fake"): 1.0})
    with worker_mod._hosting(state):
        yield state, made


def _task(driver: str = "fake", version: str = __version__, retry_of: str | None = None) -> CellTask:
    cell = Cell(round=0, repetition=0, warmup=False, driver=driver, workload="steady", slot=0)
    return CellTask(RUN_ID, version, RunConfig(), ("fake", "other"), ("steady",), cell, retry_of)


def test_a_cell_runs_under_this_hosts_run_and_carries_the_host(fake_host: Any) -> None:
    state, made = fake_host
    (s,) = execute_cell(_task(retry_of="lost-host"))
    assert s.value == 1.0 and s.run_id == RUN_ID
    assert s.params[HOST_PARAM] == "node7" and s.metadata["retry_of"] == "lost-host"
    local_id = s.metadata["host_run_id"]
    assert local_id == state.local_run_id(RUN_ID) and local_id in str(s.metadata["sandbox"])
    assert live_runs(state.state_dir) == [local_id]  # `isobench gc` here sees a live run
    assert [d.name for d in made] == ["fake"]  # "other" is not offered here, so never opened
    execute_cell(_task())
    assert len(made) == 1  # the run stays open between cells
    assert close_run(RUN_ID) == []
    assert made[0].closed and live_runs(state.state_dir) == []
    assert not (state.state_dir / "runs" / local_id).exists()


def test_a_driver_this_host_does_not_offer_is_a_failure_sample(fake_host: Any) -> None:
    (s,) = execute_cell(_task(driver="other"))
    assert s.failed and "not available on node7" in (s.error or "")
    assert s.params[HOST_PARAM] == "node7"


def test_a_sandbox_this_host_cannot_give_is_a_failure_sample_per_cell(fake_host: Any) -> None:
    """The client does not check a fleet's sandbox against its own CPUs; each host does, before
    opening anything."""
    state, made = fake_host
    too_many = len(os.sched_getaffinity(0)) + 1
    for config, said in (
        (RunConfig(vcpus=too_many), f"sandbox.vcpus = {too_many} is more than the"),
        (RunConfig(cpuset=(4096,)), "sandbox.cpuset names CPU 4096, which this host does not offer"),
    ):
        task = _task()
        (s,) = execute_cell(replace(task, config=config))
        assert s.value is None and s.error is not None and s.error.startswith(said)
    assert made == [] and live_runs(state.state_dir) == []


def test_a_client_of_another_version_is_refused_per_cell(fake_host: Any) -> None:
    (s,) = execute_cell(_task(version="0.0.0"))
    assert s.failed and "client runs 0.0.0" in (s.error or "")


def test_the_hosts_open_runs_close_when_it_stops_serving(fake_host: Any) -> None:
    state, made = fake_host
    execute_cell(_task())
    state.close_all()
    assert made[0].closed and not state.runs


def test_a_cell_outside_an_isobench_worker_is_refused() -> None:
    with pytest.raises(RuntimeError, match="isobench worker"):
        execute_cell(_task())


def test_local_workers_on_one_machine_name_their_resources_apart() -> None:
    a = HostState("local-0@m", Path("/x"), {}).local_run_id(RUN_ID)
    b = HostState("local-1@m", Path("/x"), {}).local_run_id(RUN_ID)
    assert a != b and len(a) == len(b) == len(RUN_ID) and a[:14] == b[:14] == RUN_ID[:14]
    assert host_identity(1).startswith("local-1@")


def test_the_doctors_findings_become_resources() -> None:
    checks = [
        Check("driver host", "ok", ""),
        Check("driver vm", "fail", "libvirtd is not running"),
        Check("KVM", "warn", "not usable"),
        Check("driver qemu", "ok", ""),
    ]
    res = resources_from_checks(checks)
    assert res == {HOST_SLOT: 1.0, driver_resource("host"): 1.0, driver_resource("qemu"): 1.0}
    assert KVM in resources_from_checks([Check("KVM", "ok", "usable")])
    assert resources_text(res).startswith("driver-host=1 ")


def test_the_executor_runs_tasks_in_the_serving_thread() -> None:
    ex = MainThreadExecutor()
    ran_in: list[str] = []

    def job(x: int) -> int:
        ran_in.append(threading.current_thread().name)
        return x * 2

    def boom() -> None:
        raise ValueError("cell crashed")

    futures: list[Any] = []

    def client() -> None:
        futures.extend([ex.submit(job, 21), ex.submit(boom)])
        futures[0].result(timeout=10)
        ex.shutdown()

    t = threading.Thread(target=client)
    t.start()
    ex.serve(poll=0.05)
    t.join()
    assert futures[0].result() == 42 and ran_in == [threading.current_thread().name]
    assert isinstance(futures[1].exception(), ValueError)
    with pytest.raises(RuntimeError, match="shutting down"):
        ex.submit(job, 1)


def test_an_interrupted_task_stops_the_executor_and_is_not_handed_to_dask() -> None:
    ex = MainThreadExecutor()

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    interrupted = ex.submit(ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ex.serve(poll=0.05)
    # the worker is stopping: its event loop never sees Ctrl-C as the task's outcome
    assert interrupted.running() and not interrupted.done()
    with pytest.raises(RuntimeError, match="shutting down"):
        ex.submit(ctrl_c)


def test_a_new_run_closes_one_its_client_left_open(fake_host: Any) -> None:
    state, made = fake_host
    execute_cell(_task())
    other = CellTask("20261130130000abcd", __version__, RunConfig(), ("fake",), ("steady",), _task().cell)
    execute_cell(other)
    assert made[0].closed and not made[1].closed
    assert list(state.runs) == [other.run_id]
    assert live_runs(state.state_dir) == [state.local_run_id(other.run_id)]
