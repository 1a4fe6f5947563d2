"""The guest's kernel flavour: which files each flavour boots, what every sample records, and the
option both guest drivers take."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.guest.flavour import MICRO_CMDLINE, MICRO_LACKS, guest_boot, micro_cmdline
from isobench.drivers.guest.options import GuestOptions
from isobench.errors import UsageError
from isobench.images import Image
from isobench.images.kernel import init_compiler, micro_init_digest


def _image(state: Path) -> Image:
    img = Image("default", "img1", state / "images/default-img1")
    (img.rootfs / "bin").mkdir(parents=True)
    (img.rootfs / "bin/busybox").write_bytes(b"\x7fELF busybox")
    return img


def _micro(state: Path, content: bytes = b"\x7fELF" + bytes(60)) -> Path:
    root = state / "images/kernel-micro-k1"
    root.mkdir(parents=True)
    (root / "vmlinux").write_bytes(content)
    (root / "config").write_text("CONFIG_64BIT=y\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n")
    (root / ".complete").write_text("k1")
    return root


def test_stock_boots_the_images_own_kernel_and_initramfs(tmp_path: Path) -> None:
    img = _image(tmp_path)
    boot = guest_boot(tmp_path, img, "stock")
    assert (boot.kernel, boot.initrd, boot.kernel_build) == (img.kernel, img.initrd, "img1")
    assert boot.metadata()["kernel_flavour"] == "stock" and "kernel_lacks" not in boot.metadata()


def test_micro_boots_vmlinux_and_its_own_initramfs(tmp_path: Path) -> None:
    img = _image(tmp_path)
    root = _micro(tmp_path)
    initrd = root / f"initrd-{micro_init_digest(init_compiler())}.img"
    initrd.write_bytes(b"070701")  # built before (micro_initrd's own tests build one)
    boot = guest_boot(tmp_path, img, "micro")
    assert (boot.kernel, boot.initrd, boot.kernel_build) == (root / "vmlinux", initrd, "k1")
    md = boot.metadata()
    assert md["kernel_flavour"] == "micro" and md["kernel_lacks"] == list(MICRO_LACKS)
    # the period qemu's 1 GHz APIC bus gives at this kernel's HZ (what its calibration measures)
    assert boot.cmdline == md["kernel_args"] == f"{MICRO_CMDLINE} lapic_timer_period=4000000"
    assert "PVH" in str(md["kernel_boot"])


def test_micro_without_its_kernel_or_with_a_bzimage_is_one_clear_error(tmp_path: Path) -> None:
    img = _image(tmp_path)
    with pytest.raises(UsageError, match=r"isobench image build.*kernel = \"stock\""):
        guest_boot(tmp_path, img, "micro")
    _micro(tmp_path, b"MZ" + bytes(0x400))
    with pytest.raises(UsageError, match="not an ELF kernel"):
        guest_boot(tmp_path, img, "micro")


def test_the_kernel_option() -> None:
    assert GuestOptions().kernel == "stock"
    assert GuestOptions.parse("vm", {"kernel": "micro"}).kernel == "micro"
    with pytest.raises(UsageError, match=r"drivers\.vm\.kernel must be stock or micro, not 'tiny'"):
        GuestOptions.parse("vm", {"kernel": "tiny"})


def test_the_lapic_timer_period_follows_the_kernels_tick_rate() -> None:
    assert micro_cmdline(250).endswith(" lapic_timer_period=4000000")
    assert micro_cmdline(1000).endswith(" lapic_timer_period=1000000")
    assert micro_cmdline(100).startswith(MICRO_CMDLINE)
