from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
from pathlib import Path

import libvirt
import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.guest.accel import AccelProbe
from isobench.drivers.vm.domain import DomainConfig, domain_xml
from isobench.drivers.vm.driver import VmDriver
from isobench.errors import DriverUnavailable
from isobench.liveruns import LiveRun, Sparing


def test_libvirt_test_driver_accepts_the_domain_and_gc_removes_it(
    tmp_path: Path, guest_config: DomainConfig
) -> None:
    ctx = DriverContext(tmp_path, tmp_path / "w", "run1", {"uri": "test:///default"})
    drv = VmDriver(ctx)
    dom = drv.conn().defineXML(domain_xml(guest_config))  # description says pid 999999999: a dead owner
    dom.create()
    other = drv.conn().defineXML(
        domain_xml(
            dataclasses.replace(
                guest_config, name="isobench-run2-g0", description=f"isobench run_id=run2 pid={os.getpid()}"
            )
        )
    )
    gone = drv.gc()
    assert "domain isobench-run1-g0" in gone
    names = {d.name() for d in drv.conn().listAllDomains()}
    assert "isobench-run1-g0" not in names
    assert "isobench-run2-g0" in names  # owner alive: kept by gc(None)
    assert drv.gc("run2") == ["domain isobench-run2-g0"]
    with pytest.raises(libvirt.libvirtError):
        drv.conn().lookupByName(other.name())


def test_a_sweep_spares_a_live_runs_guest_whatever_its_recorded_owner(
    tmp_path: Path, guest_config: DomainConfig
) -> None:
    # Its owner pid is dead (999999999), as in a guest of a run registered elsewhere by another
    # process: the registry says the run lives, so the sweep leaves it.
    sparing = Sparing((LiveRun("run1", 4242, "1", "/elsewhere"),))
    ctx = DriverContext(tmp_path, tmp_path / "w", "gc", {"uri": "test:///default"}, sparing=sparing)
    drv = VmDriver(ctx)
    drv.conn().defineXML(domain_xml(guest_config)).create()
    assert "domain isobench-run1-g0" not in drv.gc()
    assert "isobench-run1-g0" in {d.name() for d in drv.conn().listAllDomains()}
    assert sparing.spared_lines() == [
        "spared 1 resource of live run run1 (pid 4242): domain isobench-run1-g0"
    ]


def test_unreachable_uri_is_one_clear_error(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "qemu+unix:///system?socket=/nonexistent"}))
    with pytest.raises(DriverUnavailable, match="libvirtd -d"):
        drv.conn()
    avail = drv.availability()
    assert not avail.ok and "cannot connect" in avail.reason


def test_missing_image_makes_driver_unavailable(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "test:///default"}))
    avail = drv.availability()
    assert not avail.ok and "isobench image build" in avail.reason


def test_kvm_requested_but_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import isobench.drivers.vm.driver as mod

    monkeypatch.setattr(
        mod, "probe_accel", lambda *a, **k: AccelProbe(False, "tcg", "kvm-pvm: emulation failure")
    )
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"accel": "kvm"}))
    with pytest.raises(DriverUnavailable, match=r"KVM was requested.*emulation failure"):
        drv.accel()


class _SlowReapDomain:
    """A domain whose qemu (a real child process) exits at destroy, but whose libvirt bookkeeping
    only finishes when ``reaped`` is set: PID 1 reaping the orphaned qemu late, as on CI."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.reaped = threading.Event()
        self.undefined = threading.Event()

    def name(self) -> str:
        return "isobench-run1-slow"

    def isActive(self) -> bool:
        return self.proc.poll() is None or not self.reaped.is_set()

    def destroy(self) -> None:
        self.proc.terminate()
        assert self.reaped.wait(30)

    def undefine(self) -> None:
        self.undefined.set()


def test_destroy_returns_when_qemu_exits_and_close_waits_for_libvirt(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    proc = subprocess.Popen(["sleep", "60"])
    dom = _SlowReapDomain(proc)
    overlay = tmp_path / "g.qcow2"
    overlay.write_text("x")
    pidfd = os.pidfd_open(proc.pid)
    try:
        drv.retire(dom, [overlay], pidfd)
        assert proc.poll() is not None  # qemu is gone when destroy returns ...
        assert not dom.undefined.is_set() and overlay.exists()  # ... libvirt's part still runs
    finally:
        os.close(pidfd)
    dom.reaped.set()
    drv.close()  # joins the background teardown
    assert dom.undefined.is_set() and not overlay.exists()


def test_destroy_without_pidfd_waits_for_the_whole_teardown(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    dom = _SlowReapDomain(subprocess.Popen(["sleep", "60"]))
    dom.reaped.set()
    drv.retire(dom, [], None)
    assert dom.undefined.is_set()
    drv.close()
