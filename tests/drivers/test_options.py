"""Driver options: every key a driver reads is declared (and so accepted), and nothing else is."""

import re
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec, all_drivers, check_driver_options
from isobench.drivers.container.config import DRIVER_OPTIONS, SANDBOX_OPTIONS, config_from_spec
from isobench.errors import UsageError

_READ = re.compile(r"""(?:opts|options)\.get\(\s*["'](\w+)["']""")
_SHARED = re.compile(r"from isobench\.drivers\.(\w+)[. ]")


def _keys_read(package: Path) -> set[str]:
    """Keys read in the driver's folder and in the shared folders it imports (the guest core)."""
    keys: set[str] = set()
    shared: set[str] = set()
    for source in package.glob("*.py"):
        text = source.read_text()
        keys |= set(_READ.findall(text))
        shared |= set(_SHARED.findall(text)) - {package.name}
    for name in shared:
        if (package.parent / name).is_dir():
            for source in (package.parent / name).glob("*.py"):
                keys |= set(_READ.findall(source.read_text()))
    return keys


@pytest.mark.parametrize("name", list(all_drivers()))
def test_declared_options_are_the_ones_read(name: str) -> None:
    """option_types drifting from the code would refuse a real option or accept a dead one."""
    cls = all_drivers()[name]
    package = Path(__import__(cls.__module__, fromlist=["_"]).__file__).parent  # type: ignore[arg-type]
    assert _keys_read(package) == set(cls.option_types), name


def test_container_splits_driver_and_sandbox_options() -> None:
    assert set(all_drivers()["container"].option_types) == DRIVER_OPTIONS.keys() | SANDBOX_OPTIONS.keys()
    assert not DRIVER_OPTIONS.keys() & SANDBOX_OPTIONS.keys()


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
