"""Capabilities and SandboxStats: the typed facts about drivers and sandboxes, and the one order."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.base import (
    Accel,
    Capabilities,
    DriverContext,
    DriverKind,
    ExecModel,
    RootStorage,
    SandboxStats,
    Volume,
    all_drivers,
    presentation_order,
)
from isobench.drivers.qemu import QemuDriver
from isobench.reports.cells import driver_order


def test_every_driver_declares_capabilities_and_they_give_the_one_order() -> None:
    drivers = all_drivers()
    orders = [cls.capabilities.order for cls in drivers.values()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    # Felter et al.: native, containers, guests, each group together.
    kinds = [cls.capabilities.kind for cls in drivers.values()]
    assert kinds == sorted(kinds, key=[DriverKind.NATIVE, DriverKind.CONTAINER, DriverKind.VM].index)
    assert next(iter(drivers)) == "host"
    assert sorted(drivers, key=driver_order) == list(drivers)  # reports use the same order


@pytest.mark.parametrize("name", list(all_drivers()))
def test_every_driver_answers_with_probed_capabilities(name: str) -> None:
    cls = all_drivers()[name]
    assert callable(getattr(cls, "probed_capabilities", None)), f"{name} has no probed_capabilities()"
    assert isinstance(cls.capabilities, Capabilities)


def test_unknown_drivers_sort_last_by_name() -> None:
    names = ["zeta", "qemu", "alpha", "host"]
    assert sorted(names, key=presentation_order)[-2:] == ["alpha", "zeta"]
    assert sorted(names, key=presentation_order)[0] == "host"


def test_what_each_kind_of_driver_is() -> None:
    drivers = all_drivers()
    host, container, qemu = (drivers[n].capabilities for n in ("host", "container", "qemu"))
    assert (host.kind, host.root_storage, host.volume, host.exec_model) == (
        DriverKind.NATIVE,
        RootStorage.HOST_FS,
        Volume.HOST_PATH,
        ExecModel.DIRECT,
    )
    assert container.switchable_hardening and not drivers["runc"].capabilities.switchable_hardening
    assert (qemu.root_storage, qemu.exec_model, qemu.accel, qemu.guest) == (
        RootStorage.QCOW2_OVERLAY,
        ExecModel.GUEST_AGENT,
        Accel.PENDING,
        True,
    )


def test_volume_path_inside() -> None:
    assert Capabilities.container(order=1).volume_path(Path("/v")) == "/data"
    host = all_drivers()["host"].capabilities
    assert host.volume_path(Path("/v")) == "/v"
    none = Capabilities(DriverKind.CONTAINER, RootStorage.OVERLAYFS, None, False, ExecModel.RUNTIME_EXEC, 1)
    with pytest.raises(ValueError, match="no volumes"):
        none.volume_path(Path("/v"))


def test_inconsistent_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="guests have one"):
        Capabilities(
            DriverKind.CONTAINER, RootStorage.OVERLAYFS, None, False, ExecModel.RUNTIME_EXEC, 1, Accel.KVM
        )
    with pytest.raises(ValueError, match="guests have one"):
        Capabilities(DriverKind.VM, RootStorage.QCOW2_OVERLAY, None, False, ExecModel.GUEST_AGENT, 1)
    with pytest.raises(ValueError, match="cannot have host filesystem"):
        Capabilities(DriverKind.CONTAINER, RootStorage.HOST_FS, None, False, ExecModel.DIRECT, 1)


def test_a_guest_accel_is_known_after_the_probe(tmp_path: Path) -> None:
    ctx = DriverContext(tmp_path, tmp_path / "w", "r", options={"accel": "tcg"})
    driver = QemuDriver(ctx)  # accel=tcg: decided without a probe boot
    assert driver.capabilities.accel is Accel.PENDING
    caps = driver.probed_capabilities()
    assert caps.accel is Accel.TCG and caps.accel == "tcg"
    assert caps.with_accel("kvm").accel is Accel.KVM and caps.order == driver.capabilities.order


# -------------------------------------------------------------------------------- SandboxStats

RUNC = {
    "memory_bytes": 3e6,
    "memory_peak_bytes": 4e6,
    "memory_limit_bytes": 3.2e7,
    "memory_rss_bytes": 1e6,
    "cpu_seconds": 0.5,
    "cpu_user_seconds": 0.3,
    "cpu_system_seconds": 0.2,
    "pids": 2.0,
}
GUEST = {
    "memory_bytes": 9e7,
    "cpu_seconds": 2.0,
    "vm.qemu_pss_bytes": 3e7,
    "vm.qemu_uss_bytes": 2.5e7,
    "vm.guest_ram_rss_bytes": 6e7,
    "vm.guest_used_bytes": 4e7,
    "vm.host_memavailable_delta_bytes": 1e8,
}
CONTAINER = {
    "memory_bytes": 1e6,
    "oom_kills": 0.0,
    "pids": 1.0,
    "memory_stat.anon": 5e5,
    "memory_stat.file": 0.0,
}


@pytest.mark.parametrize("flat", [RUNC, GUEST, CONTAINER, {}])
def test_stats_keep_the_names_every_driver_recorded(flat: dict[str, float]) -> None:
    stats = SandboxStats.from_dict(flat)
    assert stats.as_dict() == flat


def test_stats_are_typed() -> None:
    c = SandboxStats.from_dict(CONTAINER)
    assert (c.pids, c.oom_kills, c.memory_stat["anon"]) == (1, 0, 5e5)
    assert isinstance(c.pids, int)
    g = SandboxStats.from_dict(GUEST)
    assert (g.qemu_pss_bytes, g.guest_used_bytes, g.memory_peak_bytes) == (3e7, 4e7, None)


def test_memory_figures_are_the_byte_figures() -> None:
    assert SandboxStats.from_dict(RUNC).memory_figures() == {
        k: v for k, v in RUNC.items() if k.endswith("_bytes")
    }
    assert "vm.qemu_pss_bytes" in SandboxStats.from_dict(GUEST).memory_figures()


def test_an_unknown_stat_name_is_a_parser_bug() -> None:
    with pytest.raises(ValueError, match="no sandbox stat is named 'memory_byte'"):
        SandboxStats.from_dict({"memory_byte": 1.0})


def test_a_driver_without_capabilities_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import types

    from isobench import plugins
    from isobench.drivers import base

    class Undeclared:
        name = "undeclared"

    modules = {"isobench.drivers.undeclared": types.SimpleNamespace(DRIVER=Undeclared)}
    monkeypatch.setattr(plugins, "_modules", lambda package: iter(["undeclared"]))
    monkeypatch.setattr(plugins.importlib, "import_module", modules.__getitem__)
    assert base.all_drivers() == {}
    assert "driver folder undeclared: DRIVER declares no capabilities" in caplog.text
