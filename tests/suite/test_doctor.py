import os
import time
from pathlib import Path
from typing import ClassVar

import pytest
from isobench import doctor
from isobench.doctor import _kvm_verdict, host_checks, spin_every_cpu, steal_check
from isobench.drivers.base import Availability
from isobench.hostsys import HostProbe
from isobench.testing import FakeDriver


def test_kvm_verdict_unusable_says_tcg() -> None:
    c = _kvm_verdict(False, "kvm-pvm: emulation failure", ["vm", "qemu"])
    assert c.status == "warn"
    assert "not usable: kvm-pvm: emulation failure" in c.detail
    assert "guests (vm, qemu) use accel=tcg" in c.detail


def test_kvm_verdict_usable() -> None:
    c = _kvm_verdict(True, "a KVM probe guest booted", ["qemu"])
    assert c.status == "ok"
    assert "guests (qemu) use accel=kvm" in c.detail


class _Guest(FakeDriver):
    """A guest driver whose availability carries the shared accel probe's verdict."""

    name: ClassVar[str] = "guest-a"
    verdict: ClassVar[tuple[bool, str]] = (False, "kvm-pvm: probe failed")
    #: The described verdict carries its age, which may tick between two drivers' checks.
    age: ClassVar[str] = " (probed 1 min ago)"

    def availability(self) -> Availability:
        usable, reason = self.verdict
        details = {"accel": "tcg", "kvm_usable": usable, "kvm_probe": reason + self.age, "kvm_reason": reason}
        return Availability(True, "", details)


class _GuestB(_Guest):
    name: ClassVar[str] = "guest-b"
    age: ClassVar[str] = " (probed 2 min ago)"


class _GuestC(_Guest):
    name: ClassVar[str] = "guest-c"
    verdict: ClassVar[tuple[bool, str]] = (True, "a KVM probe guest booted")
    age: ClassVar[str] = ""  # a positive verdict is described without its age


def test_one_kvm_row_per_verdict_naming_its_drivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drivers = {d.name: d for d in (_Guest, _GuestB, _GuestC)}
    monkeypatch.setattr(doctor, "all_drivers", lambda: drivers)
    rows = [c for c in doctor.driver_checks(tmp_path) if c.name == "KVM"]
    assert [(c.status, c.detail) for c in rows] == [
        (
            "warn",
            "not usable: kvm-pvm: probe failed (probed 1 min ago); guests (guest-a, guest-b) use accel=tcg"
            " (software emulation)",
        ),
        ("ok", "usable (a KVM probe guest booted); guests (guest-c) use accel=kvm"),
    ]


def test_host_checks_on_a_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/sys/user").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "36 25 0:31 / /sys/fs/cgroup rw,relatime shared:13 - cgroup2 cgroup2 rw\n"
    )
    (tmp_path / "proc/filesystems").write_text("nodev\toverlay\n")
    (tmp_path / "proc/sys/user/max_user_namespaces").write_text("0\n")
    (tmp_path / "proc/cpuinfo").write_text("flags\t: fpu\n")
    checks = {c.name: c for c in host_checks(HostProbe(root=tmp_path), steal=False)}
    assert checks["cgroups"].detail == "unified cgroup v2"
    assert checks["overlayfs"].status == "ok"
    assert checks["user namespaces"].status == "warn"
    assert checks["/dev/kvm"].status == "warn"
    assert "TCG" in checks["/dev/kvm"].detail


def _stat(tmp_path: Path, user: int, steal: int) -> None:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/stat").write_text(f"cpu  {user} 0 0 0 0 0 0 {steal} 0 0\n")


@pytest.mark.parametrize(("stolen", "status"), [(60, "warn"), (10, "ok")])
def test_steal_is_read_while_the_host_is_loaded(tmp_path: Path, stolen: int, status: str) -> None:
    _stat(tmp_path, 1000, 0)
    windows: list[float] = []

    def load(seconds: float) -> None:  # the CPUs want to run; the hypervisor takes ``stolen`` of 400
        windows.append(seconds)
        _stat(tmp_path, 1000 + 400 - stolen, stolen)

    c = steal_check(HostProbe(root=tmp_path), window=2.0, load=load)
    assert windows == [2.0] and c.status == status
    assert c.detail.startswith(f"{stolen / 400:.0%} of the host's CPU time over 2s of load")
    assert ("may be the host's" in c.detail) == (status == "warn")


def test_steal_without_a_reading_is_said(tmp_path: Path) -> None:
    c = steal_check(HostProbe(root=tmp_path), load=lambda s: None)
    assert (c.status, c.detail) == ("info", "no reading (no steal field in /proc/stat)")


def test_spinning_keeps_every_cpu_busy_for_the_window() -> None:
    before, t0 = os.times(), time.monotonic()
    spin_every_cpu(0.3)
    after = os.times()
    assert time.monotonic() - t0 >= 0.3
    # the children spun (an idle child uses ~0.03 s starting Python): on a quiet host about the
    # window on each CPU this process may use, half that where other work shares the CPUs
    spun = after.children_user + after.children_system - before.children_user - before.children_system
    assert spun >= 0.1 * len(os.sched_getaffinity(0))
