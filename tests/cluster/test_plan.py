"""The fleet plan: a lane per host in the runner's own order, and a lost host's cells retried once."""

from __future__ import annotations

from isobench.cluster.plan import HOST_SLOT, KVM, FleetPlan, driver_resource, requirement
from isobench.schedule import expand_matrix

ALL = {HOST_SLOT: 1.0, **{driver_resource(d): 1.0 for d in ("host", "container", "vm")}}
NO_VM = {HOST_SLOT: 1.0, **{driver_resource(d): 1.0 for d in ("host", "container")}}


def _plan(hosts: dict[str, dict[str, float]], reps: int = 2) -> FleetPlan:
    return FleetPlan(
        hosts,
        ["host", "container", "vm"],
        ["startup", "cpu"],
        repetitions=reps,
        warmups=0,
        caps={},
        seed=7,
        guests=["vm"],
    )


def _drain(plan: FleetPlan, host: str) -> list[tuple[str, str, int]]:
    ran = []
    while (p := plan.next_cell(host)) is not None:
        ran.append((p.cell.driver, p.cell.workload, p.cell.round))
        plan.finished(host)
    return ran


def test_each_host_runs_the_runners_order_for_the_drivers_it_offers() -> None:
    plan = _plan({"a": ALL, "b": NO_VM})
    assert set(plan.drivers_of("a")) == {"host", "container", "vm"}
    assert set(plan.drivers_of("b")) == {"host", "container"}
    want_b = expand_matrix(["host", "container"], ["startup", "cpu"], 2, 0, {}, seed=7)
    assert _drain(plan, "b") == [(c.driver, c.workload, c.round) for c in want_b]
    assert plan.total() == 3 * 2 * 2  # a's lane is untouched by b's progress
    assert not plan.done()
    _drain(plan, "a")
    assert plan.done()


def test_one_cell_per_host_in_flight() -> None:
    plan = _plan({"a": ALL})
    assert plan.next_cell("a") is not None
    assert plan.next_cell("a") is None  # the first is still running
    assert plan.idle() == []
    plan.finished("a")
    assert plan.idle() == ["a"]


def test_a_lost_hosts_cells_go_once_to_a_host_with_the_same_capabilities() -> None:
    plan = _plan({"a": ALL, "b": NO_VM, "c": ALL})
    running = plan.next_cell("a")
    assert running is not None
    queued_before = plan.total()
    lost = plan.lose("a")
    # every unfinished cell of a (the running one first) moved to c, the only other host with vm
    assert lost.retried[0].cell == running.cell
    assert {p.host for p in lost.retried if p.cell.driver == "vm"} == {"c"}
    assert all(p.retry_of == "a" for p in lost.retried)
    assert not lost.failed
    assert plan.total() == queued_before + 1  # the running cell is queued again, elsewhere
    assert "a" not in plan.idle()
    # c loses too: its own cells go to b where b can run them; a's cells, already retried, fail
    lost_c = plan.lose("c")
    assert {p.retry_of for p in lost_c.failed} >= {"a"}
    assert all(p.cell.driver != "vm" for p in lost_c.retried)
    assert any(p.cell.driver == "vm" and p.retry_of is None for p in lost_c.failed)
    _drain(plan, "b")
    assert plan.done()


def test_no_host_with_the_capabilities_means_failure_not_retry() -> None:
    plan = _plan({"a": ALL, "b": NO_VM})
    lost = plan.lose("a")
    assert {p.cell.driver for p in lost.failed} == {"vm"}
    assert {p.cell.driver for p in lost.retried} == {"host", "container"}


def test_a_kvm_guest_cell_is_retried_only_where_kvm_works() -> None:
    kvm_host = {**ALL, KVM: 1.0}
    assert requirement("vm", kvm_host, guest=True)[KVM] == 1.0
    assert KVM not in requirement("vm", ALL, guest=True)
    assert KVM not in requirement("container", kvm_host, guest=False)
    plan = _plan({"a": kvm_host, "b": ALL})
    lost = plan.lose("a")
    assert {p.cell.driver for p in lost.failed} == {"vm"}  # b has vm, but under TCG


def test_a_finished_lane_takes_retries_and_becomes_idle_again() -> None:
    plan = _plan({"a": ALL, "b": ALL}, reps=1)
    _drain(plan, "b")
    assert plan.idle() == ["a"]
    plan.lose("a")
    assert plan.idle() == ["b"]
    assert len(_drain(plan, "b")) == 3 * 2
