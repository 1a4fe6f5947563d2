"""What both launchers check before a create, and the guest metadata both give every sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.guest.accel import AccelChoice, AccelProbe
from isobench.drivers.guest.launcher import checked_guest, guest_metadata
from isobench.drivers.guest.options import GuestOptions
from isobench.errors import UsageError
from isobench.testing import fake_guest_image


def _tcg() -> AccelChoice:
    return AccelChoice("vm", "tcg", lambda: AccelProbe(False, "tcg", "no /dev/kvm"))


def test_a_guest_boots_the_specs_image_else_the_configured_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fake_guest_image(state)
    other = fake_guest_image(tmp_path / "elsewhere", digest="fed987")
    img, boot = checked_guest(state, GuestOptions())
    assert (img.digest, boot.flavour, boot.kernel_build) == ("abc123", "stock", "abc123")
    img, _ = checked_guest(state, GuestOptions(), SandboxSpec("s", "r", image=other))
    assert img.digest == "fed987"


def test_a_broken_image_or_a_volume_no_guest_can_take_is_refused_before_a_create(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = fake_guest_image(state)
    with pytest.raises(UsageError, match="is not a directory"):
        checked_guest(state, GuestOptions(), SandboxSpec("s", "r", volume=tmp_path / "absent"))
    (root / "rootfs.ext4").write_bytes(bytes(4096))
    with pytest.raises(UsageError, match="is not ext4"):
        checked_guest(state, GuestOptions())


def test_every_sample_names_the_accelerator_disks_image_and_kernel(tmp_path: Path) -> None:
    state = tmp_path / "state"
    md = guest_metadata(_tcg(), state, GuestOptions())
    assert (md["isolation"], md["accel"], md["kernel_flavour"]) == ("vm", "tcg", "stock")
    assert "image" not in md  # none built yet: the figures say nothing about one
    assert "qcow2 overlay" in md["disk"] and md["volume"]
    fake_guest_image(state)
    md = guest_metadata(_tcg(), state, GuestOptions())
    assert (md["image"], md["kernel_build"]) == ("abc123", "abc123")
