"""Driver options: every key a driver reads is declared (and so accepted), nothing else is, and a
table is checked completely (types and ranges) before a run."""

import dataclasses
import re
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec, all_drivers, check_driver_options
from isobench.drivers.container.config import DRIVER_OPTIONS, SANDBOX_OPTIONS, config_from_spec
from isobench.drivers.options import DriverOptions
from isobench.errors import UsageError

# A typed option is read as an attribute of the parsed dataclass (``self.opts.binary``); the
# container's per-sandbox options are read from the spec's table (``options.get("cpus")``).
_READ = re.compile(r"""(?:opts|options)\.get\(\s*["'](\w+)["']|\bopts\.([a-z_]+)\b""")
_SHARED = re.compile(r"from isobench\.drivers\.(\w+)[. ]")


def _keys_read(package: Path) -> set[str]:
    """Keys read in the driver's folder and in the shared folders it imports (the guest core)."""
    keys: set[str] = set()
    shared: set[str] = set()
    for source in package.glob("*.py"):
        text = source.read_text()
        keys |= {a or b for a, b in _READ.findall(text)}
        shared |= set(_SHARED.findall(text)) - {package.name}
    for name in shared:
        if (package.parent / name).is_dir():
            for source in (package.parent / name).glob("*.py"):
                keys |= {a or b for a, b in _READ.findall(source.read_text())}
    return keys - {"parse", "option_types"}


@pytest.mark.parametrize("name", list(all_drivers()))
def test_declared_options_are_the_ones_read(name: str) -> None:
    """option_types drifting from the code would refuse a real option or accept a dead one."""
    cls = all_drivers()[name]
    package = Path(__import__(cls.__module__, fromlist=["_"]).__file__).parent  # type: ignore[arg-type]
    assert _keys_read(package) == set(cls.options_type.option_types()), name


def test_every_driver_parses_its_table_into_a_frozen_dataclass() -> None:
    for name, cls in all_drivers().items():
        opts = cls.options_type.parse(name, {})
        assert isinstance(opts, DriverOptions) and dataclasses.is_dataclass(opts), name
        field = dataclasses.fields(opts)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(opts, field, None)


def test_container_splits_driver_and_sandbox_options() -> None:
    assert set(all_drivers()["container"].options_type.option_types()) == DRIVER_OPTIONS | SANDBOX_OPTIONS
    assert not DRIVER_OPTIONS & SANDBOX_OPTIONS


def test_container_driver_options_reach_the_spec_without_refusal(tmp_path: Path) -> None:
    """[drivers.container] becomes both the driver's context and each spec's options, so the spec
    reader must let the driver's own keys through (cgroup_parent was refused at create)."""
    spec = SandboxSpec(name="s", run_id="r", options={"cgroup_parent": "ci", "hardening": False})
    config = config_from_spec(spec, tmp_path)
    assert config.hardening is False
    with pytest.raises(UsageError, match="unknown container option 'cgroup_parnet'"):
        config_from_spec(SandboxSpec(name="s", run_id="r", options={"cgroup_parnet": "ci"}), tmp_path)


@pytest.mark.parametrize(
    ("tables", "ok"),
    [
        ({}, True),
        ({"vm": {"boot_timeout": 60}}, True),  # an int where a float is meant
        ({"vm": {"boot_timeout": 60.5, "accel": "tcg"}}, True),
        ({"container": {"cpus": None, "namespaces": ["pid", "mount"]}}, True),
        ({"container": {"cpus": True}}, False),  # bool is not a number here
        ({"qemu": {"data_disk_mib": 64.0}}, False),
        ({"bwrap": {"binary": ["bwrap"]}}, False),
    ],
)
def test_value_types(tables: dict[str, dict[str, object]], ok: bool) -> None:
    if ok:
        check_driver_options(tables)
    else:
        with pytest.raises(UsageError, match="must be"):
            check_driver_options(tables)


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"runc": {"command_timeout": 0}}, r"drivers\.runc\.command_timeout must be > 0, got 0"),
        ({"bwrap": {"command_timeout": -1.5}}, r"drivers\.bwrap\.command_timeout must be > 0"),
        ({"host": {"start_delay": -1}}, r"drivers\.host\.start_delay must be >= 0"),
        ({"qemu": {"probe_attempts": 0}}, r"drivers\.qemu\.probe_attempts must be >= 1, got 0"),
        ({"qemu": {"machine": "pc"}}, r"drivers\.qemu\.machine must be auto, microvm or q35, not 'pc'"),
        ({"vm": {"data_disk_mib": 0}}, r"drivers\.vm\.data_disk_mib must be >= 64, got 0"),
        ({"vm": {"accel": "hvf"}}, r"drivers\.vm\.accel must be auto, kvm or tcg, not 'hvf'"),
        ({"container": {"cpus": 0}}, r"drivers\.container\.cpus must be > 0"),
        ({"container": {"swap_mib": -1}}, r"drivers\.container\.swap_mib must be >= 0"),
        ({"container": {"namespaces": ["pid", "bogus"]}}, r"unknown namespace 'bogus'"),
        ({"vm": {"proc_root": "/fake"}}, r"\[drivers\.vm\]: unknown option 'proc_root'"),
        ({"vm": {"libvirt_run": "/fake"}}, r"\[drivers\.vm\]: unknown option 'libvirt_run'"),
    ],
)
def test_values_out_of_range_are_refused_before_a_run(
    tables: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        check_driver_options(tables)


def test_parsed_values_take_their_field_types() -> None:
    drivers = all_drivers()
    runc = drivers["runc"].options_type.parse("runc", {"state_root": "/run/x", "command_timeout": 5})
    assert runc == drivers["runc"].options_type(state_root=Path("/run/x"), command_timeout=5.0)  # type: ignore[call-arg]
    qemu = drivers["qemu"].options_type.parse("qemu", {"bios": "/b.bin", "cpu_model": ""})
    assert (qemu.bios, qemu.cpu_model) == (Path("/b.bin"), None)  # type: ignore[attr-defined]
    ctr = drivers["container"].options_type.parse("container", {"namespaces": ["pid", "mount"]})
    assert ctr.namespaces == ("pid", "mount")  # type: ignore[attr-defined]
