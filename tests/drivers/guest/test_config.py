"""One guest description, two spellings: the libvirt domain and the qemu command line agree."""

from __future__ import annotations

from pathlib import Path

from isobench.drivers.base import SandboxSpec
from isobench.drivers.guest.config import GuestConfig
from isobench.drivers.guest.flavour import MICRO_CMDLINE, GuestBoot
from isobench.drivers.qemu.command import QemuConfig, qemu_argv
from isobench.images import Image

IMG = Image("default", "abc", Path("/img"))


def test_for_spec_takes_size_from_the_spec_and_files_from_the_image() -> None:
    cfg = GuestConfig.for_spec(
        "g",
        SandboxSpec("s", "r", vcpus=2, memory_mib=256),
        IMG,
        accel="tcg",
        cmdline="quiet",
        cpu_model=None,
        data_disk=None,
    )
    assert (cfg.memory_mib, cfg.vcpus, cfg.kernel, cfg.initrd) == (256, 2, IMG.kernel, IMG.initrd)
    assert cfg.cmdline == "quiet"


def test_network_and_volume_are_told_to_the_initramfs_on_the_command_line() -> None:
    cfg = QemuConfig.for_spec(
        "g",
        SandboxSpec("s", "r"),
        IMG,
        accel="kvm",
        cmdline="quiet",
        cpu_model="max",
        data_disk=Path("/v/d.img"),
        ip="10.215.3.2/24",
        machine="q35",
    )
    assert cfg.cmdline == "quiet isobench.ip=10.215.3.2/24 isobench.data=vdb"
    argv = qemu_argv(cfg)
    assert argv[argv.index("-append") + 1] == cfg.cmdline
    assert argv[argv.index("-cpu") + 1] == "max"


def test_the_micro_kernel_boots_its_own_files_with_its_own_arguments() -> None:
    def cfg(boot: GuestBoot) -> GuestConfig:
        spec = SandboxSpec("s", "r")
        return GuestConfig.for_spec(
            "g", spec, IMG, accel="tcg", cmdline="quiet", cpu_model=None, data_disk=Path("/d"), boot=boot
        )

    micro = cfg(GuestBoot("micro", Path("/k/vmlinux"), Path("/k/initrd-x.img"), "k1", MICRO_CMDLINE))
    assert (micro.kernel, micro.initrd) == (Path("/k/vmlinux"), Path("/k/initrd-x.img"))
    assert micro.cmdline == f"quiet {MICRO_CMDLINE} isobench.data=vdb"
    assert cfg(GuestBoot("stock", IMG.kernel, IMG.initrd, IMG.digest)).cmdline == "quiet isobench.data=vdb"
