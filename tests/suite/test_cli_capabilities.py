"""The CLI warns about emulated guests from a driver's probed capabilities, whatever its name."""

from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from isobench import cli, launch
from isobench.drivers.base import Capabilities, DriverContext
from isobench.drivers.host import HostDriver
from isobench.drivers.qemu import QemuDriver
from isobench.testing import FakeDriver


class _Guest(FakeDriver):
    """A guest driver no code knows by name, whose probe decided ``accel``."""

    name: ClassVar[str] = "firecracker"
    capabilities: ClassVar[Capabilities] = QemuDriver.capabilities
    accel = "tcg"

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(
            ctx, script=[("^true$", "")], accel=self.accel, metadata={"accel_reason": "kvm-pvm: probe failed"}
        )


class _KvmGuest(_Guest):
    accel = "kvm"


@pytest.mark.parametrize(("driver", "warned"), [(_Guest, True), (_KvmGuest, False), (HostDriver, False)])
def test_tcg_warning_follows_probed_capabilities(
    driver: type, warned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "all_drivers", lambda: {driver.name: driver})
    args = ["run", "--drivers", driver.name, "--workloads", "startup", "-n", "1", "--warmups", "0"]
    args += ["--no-report", "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "s")]
    r = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    line = "driver firecracker uses TCG (software emulation): kvm-pvm: probe failed"
    assert (line in " ".join(r.output.split())) is warned


def test_list_says_what_kind_each_driver_is() -> None:
    r = CliRunner().invoke(cli.main, ["list"], catch_exceptions=False, terminal_width=200)
    rows = {line.split()[1]: line.split()[3] for line in r.output.splitlines() if line.count("│") >= 4}
    assert (rows["host"], rows["container"], rows["qemu"]) == ("native", "container", "vm")


class _OtherGuest(_Guest):
    name: ClassVar[str] = "cloudhv"


def test_guests_that_share_a_reason_get_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "all_drivers", lambda: {d.name: d for d in (_Guest, _OtherGuest)})
    args = ["run", "--drivers", "firecracker,cloudhv", "--workloads", "startup", "-n", "1", "--warmups", "0"]
    args += ["--no-report", "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "s")]
    r = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert said.count("uses TCG") + said.count("use TCG") == 1
    assert "drivers firecracker, cloudhv use TCG (software emulation): kvm-pvm: probe failed" in said
