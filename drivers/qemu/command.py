"""The qemu-system-x86_64 command line of one guest, built from a frozen config (pure, golden-tested).

Choices that matter for the numbers, matched to the ``vm`` driver's libvirt domain so the two differ
only by what libvirt itself costs:
- direct kernel boot of the image's kernel and initramfs, same command line;
- ``qemu64`` under TCG, ``host`` (minus arch-capabilities, see drivers/vm/domain.py) under KVM;
- the root disk is a per-guest qcow2 overlay whose backing file is the image's raw ext4 (qemu opens
  the backing file read-only), virtio-blk, cache=none + aio=native;
- the agent's virtio-serial port is a unix socket qemu listens on; the console goes to a file;
- -nodefaults/-no-user-config, no display, no balloon, no USB: only the devices the benchmark uses.

Devices are virtio-pci on both machine types for the stock kernel: the image's initramfs loads
virtio_pci but not virtio_mmio (a module in Debian's cloud kernel), so microvm runs with ``pcie=on``.
The micro kernel (drivers/guest/flavour.py) has virtio-mmio built in: on microvm its devices sit on
virtio-mmio transports and the machine has no PCI bus at all, as a Firecracker-class guest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from isobench.drivers.guest.accel import Accel
from isobench.drivers.guest.agent import PORT_NAME
from isobench.drivers.guest.config import GuestConfig
from isobench.drivers.guest.image import DISK_CACHE, DISK_IO

__all__ = ["Machine", "NetDevice", "QemuConfig", "cpu_arg", "machine_types", "qemu_argv"]

Machine = Literal["microvm", "q35"]

#: Socket and file names inside a guest's directory; qemu runs with that directory as its cwd, so
#: the paths stay short whatever the state dir is (unix socket paths are limited to 107 bytes).
AGENT_SOCKET = "agent.sock"
QMP_SOCKET = "qmp.sock"
CONSOLE_LOG = "console.log"
PIDFILE = "qemu.pid"
OVERLAY = "root.qcow2"


@dataclass(frozen=True)
class NetDevice:
    tap: str
    mac: str


@dataclass(frozen=True, kw_only=True)
class QemuConfig(GuestConfig):
    """``name`` is ``isobench-qemu-<run_id>-<sandbox>``: gc() finds the process by this ``-name``."""

    machine: Machine
    overlay: Path = Path(OVERLAY)
    net: NetDevice | None = None
    bios: Path | None = None
    binary: str = "qemu-system-x86_64"
    #: Virtio devices on virtio-mmio (microvm without PCI; the micro kernel) instead of PCI.
    virtio_mmio: bool = False

    def __post_init__(self) -> None:
        if self.virtio_mmio and self.machine != "microvm":
            raise ValueError("virtio-mmio devices need the microvm machine")

    @property
    def machine_arg(self) -> str:
        if self.machine == "microvm":
            # pcie=on: the stock initramfs has virtio_pci only. pit/pic/rtc on: under TCG there is
            # no kvmclock, so the guest needs legacy timers to calibrate against.
            pcie = "" if self.virtio_mmio else "pcie=on,"
            return f"microvm,{pcie}pit=on,pic=on,rtc=on,isa-serial=on"
        return "q35"

    def device(self, kind: str) -> str:
        """The qemu device of virtio ``kind`` (``blk``, ``serial``, ``net``) on this transport."""
        return f"virtio-{kind}-{'device' if self.virtio_mmio else 'pci'}"

    @property
    def cpu_arg(self) -> str:
        return cpu_arg(self.accel, self.cpu_model)


def cpu_arg(accel: Accel, cpu_model: str | None) -> str:
    """qemu64 under TCG; under KVM the host CPU minus arch-capabilities, on which qemu aborts on
    some hosts (MSR 0x10a; see drivers/vm/domain.py)."""
    if cpu_model:
        return cpu_model
    return "qemu64" if accel == "tcg" else "host,-arch-capabilities"


def qemu_argv(cfg: QemuConfig) -> list[str]:
    argv = [
        cfg.binary,
        "-name",
        f"{cfg.name},debug-threads=on",
        "-machine",
        cfg.machine_arg,
        "-accel",
        cfg.accel,
        "-cpu",
        cfg.cpu_arg,
        "-m",
        str(cfg.memory_mib),
        "-smp",
        str(cfg.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(cfg.kernel),
        "-initrd",
        str(cfg.initrd),
        "-append",
        cfg.cmdline,
    ]
    if cfg.bios is not None:
        argv += ["-bios", str(cfg.bios)]
    # qemu's block-layer throttle: what the guest's disk delivers, whatever the host's cache does.
    throttle = (
        "" if cfg.io_bps is None else f",throttling.bps-read={cfg.io_bps},throttling.bps-write={cfg.io_bps}"
    )
    argv += [
        "-drive",
        f"file={cfg.overlay},if=none,id=root,format=qcow2,cache={DISK_CACHE},aio={DISK_IO},discard=unmap"
        + throttle,
        "-device",
        f"{cfg.device('blk')},drive=root",
    ]
    if cfg.data_disk is not None:
        argv += [
            "-drive",
            f"file={cfg.data_disk},if=none,id=data,format={cfg.data_format},cache={DISK_CACHE},aio={DISK_IO}{throttle}",
            "-device",
            f"{cfg.device('blk')},drive=data",
        ]
    argv += [
        "-device",
        cfg.device("serial"),
        "-chardev",
        f"socket,id=agent,path={AGENT_SOCKET},server=on,wait=off",
        "-device",
        f"virtserialport,chardev=agent,name={PORT_NAME}",
        "-serial",
        f"file:{CONSOLE_LOG}",
        "-qmp",
        f"unix:{QMP_SOCKET},server=on,wait=off",
        "-pidfile",
        PIDFILE,
    ]
    if cfg.net is not None:
        argv += [
            "-netdev",
            f"tap,id=net0,ifname={cfg.net.tap},script=no,downscript=no",
            "-device",
            f"{cfg.device('net')},netdev=net0,mac={cfg.net.mac}",
        ]
    return argv


def machine_types(help_text: str) -> set[str]:
    """Machine type names from ``qemu-system-x86_64 -machine help`` output."""
    names: set[str] = set()
    for line in help_text.splitlines():
        words = line.split()
        if words and not line.startswith(("Supported", " ")):
            names.add(words[0])
    return names
