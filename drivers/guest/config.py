"""What one guest is, whichever launcher boots it: the libvirt domain (vm/domain.py) and the qemu
command line (qemu/command.py) are two spellings of these fields plus what only the launcher knows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from isobench.drivers.base import SandboxSpec
from isobench.drivers.guest.accel import Accel
from isobench.drivers.guest.datadisk import CMDLINE_FLAG as DATA_CMDLINE_FLAG
from isobench.drivers.guest.flavour import GuestBoot
from isobench.images import Image

__all__ = ["GuestConfig"]


@dataclass(frozen=True, kw_only=True)
class GuestConfig:
    #: The launcher's name for the guest (domain name, qemu ``-name``): gc finds it by this.
    name: str
    accel: Accel
    memory_mib: int
    vcpus: int
    kernel: Path
    initrd: Path
    cmdline: str
    #: None: qemu64 under TCG, the host's CPU under KVM (each launcher spells that its own way).
    cpu_model: str | None = None
    #: A raw data disk (the volume, see datadisk.py): the second virtio-blk, vdb.
    data_disk: Path | None = None
    #: The data disk's format: ``raw`` (a volume) or ``qcow2`` (an overlay over a layer stack's chain).
    data_format: str = "raw"
    #: Disk bandwidth, bytes/s read and write each, on every disk of the guest (the launcher's
    #: block-layer throttling: libvirt ``<iotune>``, qemu ``throttling.bps-*``); None: unlimited.
    io_bps: int | None = None

    @classmethod
    def for_spec(
        cls,
        name: str,
        spec: SandboxSpec,
        img: Image,
        *,
        accel: Accel,
        cmdline: str,
        cpu_model: str | None,
        data_disk: Path | None,
        ip: str | None = None,
        data_format: str = "raw",
        boot: GuestBoot | None = None,
        **launcher: Any,
    ) -> Self:
        """The guest ``spec`` asks for, booted from ``img`` (with ``boot``'s kernel, initramfs and
        extra kernel arguments when given: the micro kernel); ``launcher`` holds the subclass's fields.

        The kernel command line tells the initramfs what to set up: ``isobench.ip=<addr>/<prefix>``
        for the NIC and ``isobench.data=vdb`` for the volume's disk."""
        if boot is not None and boot.cmdline:
            cmdline += f" {boot.cmdline}"
        if ip is not None:
            cmdline += f" isobench.ip={ip}"
        if data_disk is not None:
            cmdline += f" {DATA_CMDLINE_FLAG}"
        return cls(
            name=name,
            accel=accel,
            memory_mib=spec.memory_mib,
            vcpus=spec.vcpus,
            kernel=img.kernel if boot is None else boot.kernel,
            initrd=img.initrd if boot is None else boot.initrd,
            cmdline=cmdline,
            cpu_model=cpu_model,
            data_disk=data_disk,
            data_format=data_format,
            io_bps=spec.io_bps,
            **launcher,
        )
