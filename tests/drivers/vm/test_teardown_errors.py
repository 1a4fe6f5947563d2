"""A teardown libvirt cannot finish (libvirtd gone mid-run) is a teardown error at close(), so the
runner keeps the run's state for ``isobench gc``, instead of a warning in the log."""

from __future__ import annotations

import logging
from pathlib import Path

import libvirt
import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.vm.domain import DomainConfig, domain_xml
from isobench.drivers.vm.driver import VmDriver
from isobench.errors import SandboxError


class _DeadLibvirtDomain:
    """A domain whose connection to libvirtd is gone: every call fails."""

    def name(self) -> str:
        return "isobench-run1-g0"

    def isActive(self) -> bool:
        raise libvirt.libvirtError("Cannot write data: Broken pipe")

    def undefine(self) -> None:
        raise libvirt.libvirtError("client socket is closed")


def test_close_reports_domains_a_teardown_could_not_remove(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    drv.retire(_DeadLibvirtDomain(), [], None)  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match=r"isobench-run1-g0: destroy failed.*undefine failed.*isobench gc"):
        drv.close()
    drv.close()  # reported once; the run's state is what remembers it now


class _StoppedMeanwhile(_DeadLibvirtDomain):
    """Active when asked, then shut off before destroy: libvirt says "domain is not running"."""

    def __init__(self) -> None:
        self.asked = 0

    def isActive(self) -> bool:
        self.asked += 1
        return self.asked == 1

    def destroy(self) -> None:
        raise libvirt.libvirtError("Requested operation is not valid: domain is not running")

    def undefine(self) -> None:
        pass


def test_a_domain_that_stopped_meanwhile_is_not_a_leftover(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    drv.retire(_StoppedMeanwhile(), [], None)  # type: ignore[arg-type]
    drv.close()


def test_a_domain_already_gone_is_destroyed_without_a_warning(
    tmp_path: Path, guest_config: DomainConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The race behind "Domain not found" at teardown: the domain went (here: removed through
    another handle) between create and destroy. libvirt's test driver answers the stale handle as
    libvirtd does, with VIR_ERR_NO_DOMAIN: that is the state teardown wants, not a failure."""
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    dom = drv.conn().defineXML(domain_xml(guest_config))
    dom.create()
    other = libvirt.open("test:///default").lookupByName(guest_config.name)
    other.destroy()
    other.undefine()
    overlay = tmp_path / "g.qcow2"
    overlay.write_text("x")
    with caplog.at_level(logging.WARNING, logger="isobench.drivers.vm.driver"):
        drv.retire(dom, [overlay], None)
        drv.close()  # no "left behind" error either
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert not overlay.exists()
