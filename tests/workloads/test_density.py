"""The density workload with fake drivers: the stepping, its stop reasons, KSM restore, and that
everything started is destroyed on every path (a failed step, Ctrl-C, a failed concurrent start)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import SandboxSpec, SandboxStats
from isobench.errors import IsobenchError, UsageError, WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import resolve_params
from isobench.workloads._fleet import Fleet, KsmSwitch, sum_keys
from isobench.workloads.density import (
    MIB,
    DensityParams,
    DensityWorkload,
    memory_estimate,
    stop_reason,
)

from .conftest import make_context  # type: ignore[import-not-found]
from .fleet_fakes import FleetDriver, fake_proc, fleet_driver  # type: ignore[import-not-found]

FAST = {"settle_seconds": 0.0, "idle_seconds": 0.01, "ksm_settle_seconds": 0.0}


@pytest.fixture(autouse=True)
def _no_memcg_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    """No 2.5 s wait for the kernel's memory.stat flush per step (a test that wants one sets it)."""
    monkeypatch.setattr("isobench.drivers.stats.MEMCG_STATS_LAG_S", 0.0)


def _run(
    driver: FleetDriver, tmp_path: Path, sys_root: Path | None = None, **params: Any
) -> list[Measurement]:
    spec = SandboxSpec(name="isobench-t-fake", run_id="t", memory_mib=512)
    ctx = make_context(driver, spec, quick=True, timeout=120.0, params={**FAST, **params})
    wl = DensityWorkload(proc_root=fake_proc(tmp_path / "proc"), sys_root=sys_root or tmp_path / "sys")
    return list(wl.run(ctx))


def _by(ms: list[Measurement], metric: str) -> list[Measurement]:
    return [m for m in ms if m.metric == metric]


def test_steps_measure_every_n_and_destroy_everything(tmp_path: Path) -> None:
    driver = fleet_driver(stats={"memory_bytes": 2 * MIB, "cpu_seconds": 1.0})
    ms = _run(driver, tmp_path, container_steps=[1, 3])
    seq = [m for m in _by(ms, "density.ready_all") if m.params["start"] == "sequential"]
    conc = [m for m in _by(ms, "density.ready_all") if m.params["start"] == "concurrent"]
    assert [m.params["n"] for m in seq] == [1, 3]
    assert [m.params["n"] for m in conc] == [1, 3]
    assert [m.value for m in _by(ms, "density.attributable_per_instance")] == [2 * MIB, 2 * MIB]
    assert _by(ms, "density.idle_cpu_per_instance")[0].value == 0.0  # cpu_seconds did not move
    (reached,) = _by(ms, "density.n_reached")
    assert reached.value == 3 and reached.metadata["stopped"] == "done"
    # ramp 3 + concurrent 1 + 3, and nothing left running
    assert len(driver.created) == 7
    assert driver.leaked == []
    assert len(set(driver.created)) == 7, "every sandbox got its own name"


def test_a_cgroups_footprint_is_what_it_attributes_as_idle_memory_does(tmp_path: Path) -> None:
    """The usage counter holds a per-CPU charge reserve; the footprint (memory.stat) is the figure."""
    stats = {"memory_bytes": 512 * 1024, "memory_footprint_bytes": 84 * 1024, "cpu_seconds": 1.0}
    ms = _run(fleet_driver(stats=stats), tmp_path, container_steps=[1, 2])
    (one, two) = _by(ms, "density.attributable_per_instance")
    assert (one.value, two.value) == (84 * 1024, 84 * 1024)
    assert "memory_footprint_bytes" not in one.metadata["parts_per_instance"]


def test_a_cgroups_footprint_is_read_after_the_kernels_memory_stat_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # memory.stat shows a fresh sandbox's last pages only at the kernel's next flush (every 2 s)
    monkeypatch.setattr("isobench.drivers.stats.MEMCG_STATS_LAG_S", 0.3)
    driver: FleetDriver

    def stats() -> SandboxStats:
        flushed = time.monotonic() - driver.last_made >= 0.3
        return SandboxStats(memory_bytes=512 * 1024, memory_footprint_bytes=(84 if flushed else 60) * 1024)

    driver = fleet_driver(stats=stats)
    ms = _run(driver, tmp_path, container_steps=[1, 2], concurrent=False)
    assert [m.value for m in _by(ms, "density.attributable_per_instance")] == [84 * 1024, 84 * 1024]


def test_guest_steps_are_used_for_a_guest_driver(tmp_path: Path) -> None:
    driver = fleet_driver(guest=True)
    ms = _run(driver, tmp_path, guest_steps=[1, 2], container_steps=[1, 5], concurrent=False)
    assert _by(ms, "density.n_reached")[0].metadata["kind"] == "guest"
    assert _by(ms, "density.n_reached")[0].value == 2


def test_a_failed_create_midway_stops_and_cleans_up(tmp_path: Path) -> None:
    driver = fleet_driver(fail_at=4, fail_with="fork: Resource temporarily unavailable")
    ms = _run(driver, tmp_path, container_steps=[1, 2, 5], concurrent=False)
    (reached,) = _by(ms, "density.n_reached")
    assert reached.value == 2
    assert reached.metadata["stopped"] == "pids"
    assert "create of sandbox 4 failed" in reached.metadata["why"]
    assert driver.leaked == []


def test_a_failure_at_the_first_sandbox_is_a_failed_cell(tmp_path: Path) -> None:
    driver = fleet_driver(fail_at=1)
    with pytest.raises(WorkloadError, match="not even one sandbox"):
        _run(driver, tmp_path)
    assert driver.leaked == []


def test_interrupt_midway_destroys_what_was_started(tmp_path: Path) -> None:
    driver = fleet_driver()
    original = driver.create
    calls = {"n": 0}

    def create(spec: SandboxSpec) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(spec)

    driver.create = create  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        _run(driver, tmp_path, container_steps=[1, 2, 5])
    assert len(driver.created) == 3
    assert driver.leaked == []


def test_a_failed_concurrent_start_keeps_measurements_and_cleans_up(tmp_path: Path) -> None:
    driver = fleet_driver(fail_at=5)  # ramp 1 + 2 = 3 creates, then concurrent N=1 (4th), N=2 fails
    ms = _run(driver, tmp_path, container_steps=[1, 3])
    (reached,) = _by(ms, "density.n_reached")
    assert reached.value == 3
    assert "N=3 started at once failed" in reached.metadata["concurrent_stopped"]
    assert driver.leaked == []


def test_concurrent_start_really_overlaps(tmp_path: Path) -> None:
    driver = fleet_driver(create_delay=0.2)
    fleet = Fleet(make_context(driver, SandboxSpec(name="x", run_id="t")).sandbox, "x")
    try:
        times = fleet.start_concurrently(5)
    finally:
        fleet.close()
    assert len(times) == 5 and driver.leaked == []
    assert len(set(driver.created)) == 5


def test_fleet_drains_its_pool_before_a_failure_propagates(tmp_path: Path) -> None:
    driver = fleet_driver(fail_at=2, create_delay=0.05)
    fleet = Fleet(make_context(driver, SandboxSpec(name="x", run_id="t")).sandbox, "x")
    with pytest.raises(Exception, match=r"create \d: boom"):
        fleet.start_concurrently(6)
    alive = [t for t in threading.enumerate() if t.name.startswith("isobench-density")]
    assert alive == []
    fleet.close()
    assert driver.leaked == []


def test_memory_stops_the_ramp_before_the_host_runs_short(tmp_path: Path) -> None:
    # 8 GiB available, at most 30% of it (2458 MiB); each guest counts at its 512 MiB of RAM at
    # least: 8 guests fit (4 more: 2048 MiB), 16 do not (8 more: 4096 MiB)
    driver = fleet_driver(guest=True, stats={"memory_bytes": 200 * MIB})
    ms = _run(driver, tmp_path, guest_steps=[1, 2, 4, 8, 16], concurrent=False, memory_fraction=0.3)
    (reached,) = _by(ms, "density.n_reached")
    assert reached.value == 8
    assert reached.metadata["stopped"] == "memory"
    assert "N=16" in reached.metadata["why"]
    assert len(driver.created) == 8 and driver.leaked == []


def test_stop_reason_categories() -> None:
    ok: dict[str, Any] = dict(
        target=4,
        running=2,
        per_instance=100 * MIB,
        budget_bytes=1000 * MIB,
        used_bytes=100 * MIB,
        idle_share=0.1,
        max_idle=0.75,
        seconds_needed=10.0,
        seconds_left=100.0,
    )
    assert stop_reason(**ok) is None
    assert stop_reason(**{**ok, "used_bytes": 900 * MIB})[0] == "memory"  # type: ignore[index]
    assert stop_reason(**{**ok, "idle_share": 0.9})[0] == "idle-cpu"  # type: ignore[index]
    assert stop_reason(**{**ok, "seconds_left": 5.0})[0] == "time"  # type: ignore[index]


def test_memory_estimate_counts_a_guest_at_its_ram() -> None:
    assert memory_estimate(None, guest=True, memory_mib=512) > 512 * MIB
    assert memory_estimate(50 * MIB, guest=True, memory_mib=512) == 512 * MIB
    assert memory_estimate(1000 * MIB, guest=True, memory_mib=512) == 1250 * MIB
    assert memory_estimate(4 * MIB, guest=False, memory_mib=512) == 5 * MIB
    assert memory_estimate(-3.0, guest=False, memory_mib=512) == MIB  # a noisy negative drop


def _ksm_tree(tmp_path: Path, run: str = "0") -> Path:
    ksm = tmp_path / "sys" / "kernel" / "mm" / "ksm"
    ksm.mkdir(parents=True)
    (ksm / "run").write_text(f"{run}\n")
    (ksm / "pages_to_scan").write_text("100\n")
    return ksm


def test_ksm_is_turned_on_and_restored(tmp_path: Path) -> None:
    ksm = _ksm_tree(tmp_path)
    (ksm / "pages_shared").write_text("10\n")
    (ksm / "pages_sharing").write_text("256\n")
    seen: list[str] = []
    driver = fleet_driver(guest=True, stats={"memory_bytes": 300 * MIB})
    original = driver.create

    def create(spec: SandboxSpec) -> Any:
        seen.append((ksm / "run").read_text().strip() + "/" + (ksm / "pages_to_scan").read_text().strip())
        return original(spec)

    driver.create = create  # type: ignore[method-assign]
    ms = _run(driver, tmp_path, guest_steps=[1, 2], ksm=True, concurrent=False)
    assert set(seen) == {"1/2000"}
    assert (ksm / "run").read_text().strip() == "0"
    assert (ksm / "pages_to_scan").read_text().strip() == "100"
    saved = _by(ms, "density.ksm_saved_per_instance")
    assert saved[0].value == 256 * 4096 and saved[0].metadata["pages_shared"] == 10
    shared = _by(ms, "density.attributable_ksm_per_instance")
    assert shared[0].value == 300 * MIB - 256 * 4096  # N=1
    assert shared[1].value == (2 * 300 * MIB - 256 * 4096) / 2


def test_ksm_is_restored_when_the_cell_fails(tmp_path: Path) -> None:
    ksm = _ksm_tree(tmp_path, run="2")
    with pytest.raises(WorkloadError):
        _run(fleet_driver(guest=True, fail_at=1), tmp_path, ksm=True)
    assert (ksm / "run").read_text().strip() == "2"
    assert (ksm / "pages_to_scan").read_text().strip() == "100"
    assert KsmSwitch(tmp_path / "sys").available


def test_ksm_switch_undoes_a_half_done_enter(tmp_path: Path) -> None:
    ksm = _ksm_tree(tmp_path)
    (ksm / "run").unlink()
    (ksm / "run").mkdir()  # cannot be read or written: entering fails after pages_to_scan
    with pytest.raises(IsobenchError, match="cannot turn KSM on"), KsmSwitch(tmp_path / "sys", 5000):
        pass
    assert (ksm / "pages_to_scan").read_text().strip() == "100"


def test_ksm_is_left_alone_for_containers(tmp_path: Path) -> None:
    ksm = _ksm_tree(tmp_path)
    seen: list[str] = []
    driver = fleet_driver()
    original = driver.create

    def create(spec: SandboxSpec) -> Any:
        seen.append((ksm / "run").read_text().strip())
        return original(spec)

    driver.create = create  # type: ignore[method-assign]
    ms = _run(driver, tmp_path, container_steps=[1], ksm=True, concurrent=False)
    assert seen == ["0"]
    assert not _by(ms, "density.ksm_saved_per_instance")


def test_params_are_validated() -> None:
    assert resolve_params(DensityParams, True, {}, "density").container_steps == (1, 5, 20)
    with pytest.raises(UsageError, match="increasing"):
        resolve_params(DensityParams, True, {"container_steps": [5, 1]}, "density")
    with pytest.raises(UsageError, match="memory_fraction"):
        resolve_params(DensityParams, True, {"memory_fraction": 1.5}, "density")
    with pytest.raises(UsageError, match="must be > 0"):
        resolve_params(DensityParams, True, {"guest_steps": [0, 1]}, "density")


def test_sum_keys_leaves_out_a_part_one_sandbox_lacks() -> None:
    assert sum_keys([{"a": 1.0, "b": 2.0}, {"a": 3.0}], ["a", "b"]) == {"a": 4.0}
