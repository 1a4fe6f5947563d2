from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, Sandbox, SandboxSpec, all_drivers
from isobench.drivers.host import HostDriver
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
