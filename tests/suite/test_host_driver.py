import time
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, Sandbox, SandboxSpec, all_drivers
from isobench.drivers.host import HostDriver
from isobench.drivers.host import driver as host_driver
from isobench.errors import CellTimeout, SandboxError


@pytest.fixture
def driver(tmp_path: Path) -> HostDriver:
    return HostDriver(DriverContext(state_dir=tmp_path, work_dir=tmp_path / "work", run_id="t"))


def test_registry_finds_host() -> None:
    assert "host" in all_drivers()
    assert next(iter(all_drivers())) == "host"


def test_lifecycle_and_phases(driver: HostDriver) -> None:
    sb = driver.create(SandboxSpec(name="isobench-t-1", run_id="t"))
    assert isinstance(sb, Sandbox)
    res = sb.exec(["sh", "-c", "pwd; echo err >&2; exit 3"], timeout=10)
    assert res.exit_code == 3
    assert res.stdout.strip() == sb.workdir
    assert res.stderr.strip() == "err"
    assert res.end_ns >= res.start_ns
    sb.destroy()
    sb.destroy()  # idempotent
    assert [p.name for p in sb.phases] == ["create", "ready", "destroy"]
    assert not Path(sb.workdir).exists()


def test_missing_command_is_a_sandbox_error(driver: HostDriver) -> None:
    sb = driver.create(SandboxSpec(name="isobench-t-2", run_id="t"))
    try:
        with pytest.raises(SandboxError, match="command not found"):
            sb.exec(["no-such-command-isobench"], timeout=5)
    finally:
        sb.destroy()


def test_timeout_kills_the_whole_process_group(driver: HostDriver, tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    sb = driver.create(SandboxSpec(name="isobench-t-3", run_id="t"))
    try:
        with pytest.raises(CellTimeout):
            sb.exec(["sh", "-c", f"(sleep 1; touch {marker}) & sleep 30"], timeout=0.3)
    finally:
        sb.destroy()
    import time

    time.sleep(1.3)
    assert not marker.exists()  # the background grandchild died with its group


def test_address_only_with_network(driver: HostDriver) -> None:
    a = driver.create(SandboxSpec(name="isobench-t-4", run_id="t"))
    b = driver.create(SandboxSpec(name="isobench-t-5", run_id="t", network=True))
    try:
        assert a.address is None
        assert b.address == "127.0.0.1"
    finally:
        a.destroy()
        b.destroy()


@pytest.mark.integration
def test_the_spec_cpuset_is_the_affinity_of_what_the_host_runs(driver: HostDriver) -> None:
    """The native baseline runs on the CPUs the sandboxes get (and its children inherit them)."""
    import os

    cpu = max(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    sb = driver.create(SandboxSpec(name="isobench-t-6", run_id="t", cpuset=(cpu,)))
    try:
        res = sb.exec(
            ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; sh -c 'taskset -p $$'"], timeout=10
        )
    finally:
        sb.destroy()
    assert res.ok, res.stderr
    assert res.stdout.splitlines()[0].split()[-1] == str(cpu)
    assert res.stdout.splitlines()[1].split()[-1] == format(1 << cpu, "x")  # a grandchild too
    assert os.sched_getaffinity(0) == before  # the runner's own thread is left as it was


def test_without_a_cpuset_the_host_runs_unpinned(driver: HostDriver) -> None:
    import os

    sb = driver.create(SandboxSpec(name="isobench-t-7", run_id="t"))
    try:
        res = sb.exec(["grep", "Cpus_allowed_list", "/proc/self/status"], timeout=10)
    finally:
        sb.destroy()
    allowed = os.sched_getaffinity(0)
    expected = str(min(allowed)) if len(allowed) == 1 else f"{min(allowed)}-{max(allowed)}"
    assert res.stdout.split()[-1] == expected


def test_start_delay_is_an_injected_create_phase_regression(tmp_path: Path) -> None:
    drv = HostDriver(
        DriverContext(state_dir=tmp_path, work_dir=tmp_path / "w", run_id="t", options={"start_delay": 0.05})
    )
    sb = drv.create(SandboxSpec(name="isobench-t-8", run_id="t", options={"start_delay": 0.05}))
    sb.destroy()
    create = next(p for p in sb.phases if p.name == "create")
    assert create.seconds >= 0.05
    assert drv.metadata()["start_delay_s"] == 0.05


def test_a_start_delay_under_a_millisecond_is_spun_not_slept(monkeypatch: pytest.MonkeyPatch) -> None:
    # A sleep overshoots by tens of microseconds: an 18 us injection (10% of a host start) must spin.
    slept: list[float] = []
    monkeypatch.setattr(host_driver.time, "sleep", slept.append)
    start = time.monotonic_ns()
    host_driver.wait(0.0002)
    assert time.monotonic_ns() - start >= 200_000
    assert slept == []
    host_driver.wait(0.002)
    assert slept == [0.002]
    host_driver.wait(0.0)
    assert slept == [0.002]
