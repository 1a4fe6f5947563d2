"""Libvirt domain XML for one isobench guest, built declaratively from a frozen config.

Choices that matter for the numbers:
- direct kernel boot (no bootloader, no disk scan) on q35;
- the CPU model is explicit: ``qemu64`` under TCG, ``host-model`` under KVM; host-passthrough is
  avoided because qemu aborts on MSR 0x10a (arch-capabilities) on some hosts;
- the root disk is a per-guest qcow2 overlay whose backing file is the image's raw ext4, declared
  read-only in the backing chain, so guests never write the image;
- the agent talks over a virtio-serial port; libvirt chooses the socket path (in its own directory,
  with the right owner) and the driver reads it back from the live XML;
- memballoon and USB are off, so the guest has only the devices the benchmark needs;
- every PCI device has an explicit slot on q35's root bus: left to itself libvirt puts each device
  behind its own pcie-root-port (plus a spare one for hotplug), which SeaBIOS and the guest kernel
  then enumerate and initialise; under TCG that cost boot time a bare qemu does not pay;
- the NIC carries no option ROM (``<rom enabled='no'/>``, i.e. romfile=""): with direct kernel boot
  nothing network-boots, so SeaBIOS has no iPXE to load (rom bar='off' would still load it);
- under TCG the domain drops the ``cpu-unavailable-features`` capability from libvirt's view of
  qemu. With it, libvirt 9 reads the started guest's CPU back through one QMP ``qom-get`` per CPU
  property (~400 round trips, 0.2-0.3 s before the guest may run); without it, it reads two
  properties (feature-words, filtered-features). The CPU qemu runs is identical either way (the
  command line does not change); the price is that libvirt marks the domain tainted
  ("custom-hypervisor-feature") in its log. Not under KVM: there libvirt would then refuse our
  CPU definition, which names arch-capabilities, an MSR feature it can only vet with that
  capability.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.guest.agent import PORT_NAME
from isobench.drivers.guest.config import GuestConfig
from isobench.drivers.guest.image import DISK_CACHE, DISK_IO

__all__ = [
    "SLOT_AGENT_SERIAL",
    "SLOT_DATA_DISK",
    "SLOT_NET",
    "SLOT_ROOT_DISK",
    "DomainConfig",
    "NetConfig",
    "domain_xml",
    "network_xml",
]

#: libvirt's QEMU namespace, for ``<qemu:capabilities>`` (see the module doc).
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)

#: Slots on q35's root bus (pcie.0). Explicit so libvirt adds no pcie-root-ports.
SLOT_ROOT_DISK = 0x02
SLOT_AGENT_SERIAL = 0x03
SLOT_NET = 0x04
SLOT_DATA_DISK = 0x05


@dataclass(frozen=True)
class NetConfig:
    #: A libvirt network the driver defines per run (so libvirt owns the bridge and the taps).
    network: str
    mac: str


@dataclass(frozen=True, kw_only=True)
class DomainConfig(GuestConfig):
    overlay: Path
    backing: Path
    console_log: Path
    cpuset: tuple[int, ...] | None = None
    net: NetConfig | None = None
    title: str = "isobench guest"
    #: Carries run id and owner pid so gc() can tell live runs from dead ones.
    description: str = ""

    @property
    def domain_type(self) -> str:
        return "kvm" if self.accel == "kvm" else "qemu"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _pci(parent: ET.Element, slot: int) -> None:
    _sub(parent, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{slot:02x}", function="0x0")


def _cpuset(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(set(cpus)))


def domain_xml(cfg: DomainConfig) -> str:
    dom = ET.Element("domain", type=cfg.domain_type)
    _sub(dom, "name", cfg.name)
    _sub(dom, "title", cfg.title)
    _sub(dom, "description", cfg.description)
    _sub(dom, "memory", str(cfg.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(cfg.memory_mib), unit="MiB")
    vcpu_attrs = {"placement": "static"}
    if cfg.cpuset:
        vcpu_attrs["cpuset"] = _cpuset(cfg.cpuset)
    _sub(dom, "vcpu", str(cfg.vcpus), **vcpu_attrs)
    if cfg.cpuset:
        tune = _sub(dom, "cputune")
        # One vCPU per listed host CPU, round-robin, so pinning is explicit per vCPU.
        cpus = sorted(set(cfg.cpuset))
        for i in range(cfg.vcpus):
            _sub(tune, "vcpupin", vcpu=str(i), cpuset=str(cpus[i % len(cpus)]))
        _sub(tune, "emulatorpin", cpuset=_cpuset(cfg.cpuset))

    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_el, "kernel", str(cfg.kernel))
    _sub(os_el, "initrd", str(cfg.initrd))
    _sub(os_el, "cmdline", cfg.cmdline)

    features = _sub(dom, "features")
    _sub(features, "acpi")  # the agent powers off through ACPI
    _sub(features, "apic")

    if cfg.accel == "kvm":
        cpu = _sub(dom, "cpu", mode=cfg.cpu_model or "host-model", check="none")
        _sub(cpu, "feature", policy="disable", name="arch-capabilities")
    else:
        cpu = _sub(dom, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", cfg.cpu_model or "qemu64", fallback="forbid")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "destroy")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", cache=DISK_CACHE, io=DISK_IO, discard="unmap")
    _sub(disk, "source", file=str(cfg.overlay))
    backing = _sub(disk, "backingStore", type="file")
    _sub(backing, "format", type="raw")
    src = _sub(backing, "source", file=str(cfg.backing))
    # The image is world-readable and shared by concurrent guests: never chown it.
    _sub(src, "seclabel", model="dac", relabel="no")
    _sub(backing, "backingStore")
    _sub(disk, "target", dev="vda", bus="virtio")
    _pci(disk, SLOT_ROOT_DISK)
    if cfg.data_disk is not None:
        data = _sub(devices, "disk", type="file", device="disk")
        _sub(data, "driver", name="qemu", type="raw", cache=DISK_CACHE, io=DISK_IO)
        _sub(data, "source", file=str(cfg.data_disk))
        _sub(data, "target", dev="vdb", bus="virtio")
        _pci(data, SLOT_DATA_DISK)

    _sub(devices, "controller", type="usb", model="none")
    vser = _sub(devices, "controller", type="virtio-serial", index="0")
    _pci(vser, SLOT_AGENT_SERIAL)

    if cfg.net is not None:
        iface = _sub(devices, "interface", type="network")
        _sub(iface, "mac", address=cfg.net.mac)
        _sub(iface, "source", network=cfg.net.network)
        _sub(iface, "model", type="virtio")
        _sub(iface, "rom", enabled="no")
        _pci(iface, SLOT_NET)

    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=str(cfg.console_log), append="off")
    _sub(serial, "target", port="0")

    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")
    _sub(channel, "target", type="virtio", name=PORT_NAME)

    _sub(devices, "memballoon", model="none")
    if cfg.accel == "tcg":
        caps = _sub(dom, f"{{{QEMU_NS}}}capabilities")
        _sub(caps, f"{{{QEMU_NS}}}del", capability="cpu-unavailable-features")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"


def network_xml(name: str, bridge: str, host_ip: str, prefix: int) -> str:
    """An isolated network (no forwarding, no DHCP, no DNS): guests get static addresses."""
    net = ET.Element("network")
    _sub(net, "name", name)
    _sub(net, "bridge", name=bridge, stp="off", delay="0")
    _sub(net, "dns", enable="no")
    _sub(net, "ip", address=host_ip, prefix=str(prefix))
    ET.indent(net)
    return ET.tostring(net, encoding="unicode") + "\n"
