"""Libvirt domain XML for one isobench guest, built declaratively from a frozen config and the
profile of the hypervisor the URI reaches (hypervisor.py): KVM/TCG through qemu (measured), Xen
HVM through libxl and VMware ESXi (generated and validated, not run).

Per hypervisor:
- qemu: ``type`` kvm or qemu by accel, q35, direct kernel boot, virtio disks/NIC/serial, see below;
- xen: ``type='xen'``, HVM (not PV) booted straight from the image's kernel and initrd (libxl
  accepts ``<kernel>``/``<initrd>``/``<cmdline>`` for HVM), disks on ``bus='xen'`` (xvda, xvdb,
  qcow2 through qdisk), a ``netfront`` NIC, the serial console log plus a Xen PV console (hvc0),
  and the agent on a Xen PV channel (``<channel><target type='xen'>``) at a socket path we give,
  since libxl does not pick one; no virtio-serial controller, no q35 slots;
- esx: ``type='vmware'``, no direct kernel boot (ESXi boots a disk with a bootloader, so the
  kernel command line lives in the disk's bootloader config), disks ``[datastore] <domain>/<file>.vmdk``
  on a ``vmpvscsi`` controller, a ``vmxnet3`` NIC on a port group with a MAC in VMware's static
  range, the console log as a datastore file, and, since ESXi has no channel devices, the agent on
  COM2 served by ESXi over TCP.

Choices that matter for the numbers (qemu):
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

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.guest.agent import PORT_NAME
from isobench.drivers.guest.config import GuestConfig
from isobench.drivers.guest.image import DISK_CACHE, DISK_IO
from isobench.drivers.vm.hypervisor import QEMU, Hypervisor
from isobench.errors import SandboxError

__all__ = [
    "SLOT_AGENT_SERIAL",
    "SLOT_DATA_DISK",
    "SLOT_NET",
    "SLOT_ROOT_DISK",
    "DomainConfig",
    "EsxPlacement",
    "NetConfig",
    "agent_socket_of",
    "domain_xml",
    "network_xml",
    "owner_of",
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


@dataclass(frozen=True)
class EsxPlacement:
    """Where an ESXi guest lives: its disks and .vmx in ``[datastore] <domain>/``, its NIC on a port
    group, its agent serial port on a TCP port of the ESXi host."""

    datastore: str = "datastore1"
    portgroup: str = "VM Network"
    agent_port: int = 50100


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
    hypervisor: Hypervisor = QEMU
    #: The agent channel's socket; None lets libvirt choose (qemu). Xen's libxl needs one given.
    agent_socket: Path | None = None
    esx: EsxPlacement = EsxPlacement()
    #: The data disk's backing chain, topmost first (a layer stack's qcow2 images), when it is a
    #: qcow2 overlay: spelt out so libvirt never relabels the shared, cached images.
    data_chain: tuple[Path, ...] = ()

    @property
    def domain_type(self) -> str:
        return self.hypervisor.type_for(self.accel)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _pci(parent: ET.Element, slot: int) -> None:
    _sub(parent, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{slot:02x}", function="0x0")


def _address(parent: ET.Element, hv: Hypervisor, slot: int) -> None:
    """A virtio device's place: a virtio-mmio transport on microvm, else its slot on q35's root bus."""
    if hv.virtio_mmio:
        _sub(parent, "address", type="virtio-mmio")
    else:
        _pci(parent, slot)


def _cpuset(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in sorted(set(cpus)))


def _mac(mac: str, oui: str) -> str:
    """``mac`` moved into the hypervisor's OUI; ESXi's static range is 00:50:56:00-3f:xx:xx."""
    tail = mac.split(":")[3:]
    if oui == "00:50:56":
        tail[0] = f"{int(tail[0], 16) & 0x3F:02x}"
    return ":".join([oui, *tail])


def _datastore_path(cfg: DomainConfig, file: str) -> str:
    """``[datastore] <domain>/<file>``: ESXi keeps the .vmx next to the first disk."""
    return f"[{cfg.esx.datastore}] {cfg.name}/{file}"


def _head(dom: ET.Element, cfg: DomainConfig, hv: Hypervisor) -> None:
    _sub(dom, "name", cfg.name)
    _sub(dom, "title", cfg.title)
    _sub(dom, "description", cfg.description)
    memory = cfg.memory_mib
    if hv.name == "esx":
        memory = -(-memory // 4) * 4  # ESXi sizes guest memory in 4 MiB steps
    _sub(dom, "memory", str(memory), unit="MiB")
    _sub(dom, "currentMemory", str(memory), unit="MiB")
    vcpu_attrs = {"placement": "static"}
    if cfg.cpuset:
        vcpu_attrs["cpuset"] = _cpuset(cfg.cpuset)
    _sub(dom, "vcpu", str(cfg.vcpus), **vcpu_attrs)
    if cfg.cpuset and hv.vcpu_pin:
        tune = _sub(dom, "cputune")
        # One vCPU per listed host CPU, round-robin, so pinning is explicit per vCPU.
        cpus = sorted(set(cfg.cpuset))
        for i in range(cfg.vcpus):
            _sub(tune, "vcpupin", vcpu=str(i), cpuset=str(cpus[i % len(cpus)]))
        if hv.emulator_pin:
            _sub(tune, "emulatorpin", cpuset=_cpuset(cfg.cpuset))


def _os(dom: ET.Element, cfg: DomainConfig, hv: Hypervisor) -> None:
    os_el = _sub(dom, "os")
    type_attrs = {"arch": "x86_64"}
    if hv.machine is not None:
        type_attrs["machine"] = hv.machine
    _sub(os_el, "type", "hvm", **type_attrs)
    if hv.direct_kernel_boot:
        _sub(os_el, "kernel", str(cfg.kernel))
        _sub(os_el, "initrd", str(cfg.initrd))
        _sub(os_el, "cmdline", cfg.cmdline)
    if hv.features:
        features = _sub(dom, "features")
        for name in hv.features:  # acpi: the agent powers off through ACPI
            _sub(features, name)


def _cpu_and_lifecycle(dom: ET.Element, cfg: DomainConfig, hv: Hypervisor) -> None:
    if hv.cpu_element and cfg.accel == "kvm":
        cpu = _sub(dom, "cpu", mode=cfg.cpu_model or "host-model", check="none")
        _sub(cpu, "feature", policy="disable", name="arch-capabilities")
    elif hv.cpu_element:
        cpu = _sub(dom, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", cfg.cpu_model or "qemu64", fallback="forbid")
    if hv.lifecycle:
        _sub(dom, "clock", offset="utc")
        for event in ("on_poweroff", "on_reboot", "on_crash"):
            _sub(dom, event, "destroy")


def _backing_chain(disk: ET.Element, chain: tuple[Path, ...]) -> None:
    """``<backingStore>`` elements for a qcow2 chain, topmost first, none of them relabelled."""
    parent = disk
    for image in chain:
        parent = _sub(parent, "backingStore", type="file")
        _sub(parent, "format", type="qcow2")
        src = _sub(parent, "source", file=str(image))
        _sub(src, "seclabel", model="dac", relabel="no")
    _sub(parent, "backingStore")


def _disk(devices: ET.Element, cfg: DomainConfig, hv: Hypervisor, index: int) -> None:
    """Disk ``index``: 0 the root (the overlay), 1 the volume's data disk."""
    disk = _sub(devices, "disk", type="file", device="disk")
    if hv.name == "esx":
        source = _datastore_path(cfg, f"{cfg.name}.vmdk" if index == 0 else "data.vmdk")
    else:
        source = str(cfg.overlay if index == 0 else cfg.data_disk)
    qemu_disk = hv.pci_slots or hv.virtio_mmio
    if hv.disk_driver is not None and index == 0:
        tuning = {"cache": DISK_CACHE, "io": DISK_IO, "discard": "unmap"} if qemu_disk else {}
        _sub(disk, "driver", name=hv.disk_driver, type="qcow2", **tuning)
    elif hv.disk_driver is not None:
        tuning = {"cache": DISK_CACHE, "io": DISK_IO} if qemu_disk else {}
        _sub(disk, "driver", name=hv.disk_driver, type=cfg.data_format, **tuning)
    _sub(disk, "source", file=source)
    if index == 1 and cfg.data_chain:
        _backing_chain(disk, cfg.data_chain)
    if index == 0 and hv.backing_chain:
        backing = _sub(disk, "backingStore", type="file")
        _sub(backing, "format", type="raw")
        src = _sub(backing, "source", file=str(cfg.backing))
        # The image is world-readable and shared by concurrent guests: never chown it.
        _sub(src, "seclabel", model="dac", relabel="no")
        _sub(backing, "backingStore")
    _sub(disk, "target", dev=hv.disk_prefix + "ab"[index], bus=hv.disk_bus)
    if cfg.io_bps is not None:
        if hv.name != "qemu":
            raise SandboxError(f"guest {cfg.name}: io_bps (<iotune>) is implemented for qemu guests only")
        tune = _sub(disk, "iotune")
        _sub(tune, "read_bytes_sec", str(cfg.io_bps))
        _sub(tune, "write_bytes_sec", str(cfg.io_bps))
    if hv.pci_slots or hv.virtio_mmio:
        _address(disk, hv, SLOT_ROOT_DISK if index == 0 else SLOT_DATA_DISK)
    elif hv.scsi_model is not None:
        _sub(disk, "address", type="drive", controller="0", bus="0", target="0", unit=str(index))


def _interface(devices: ET.Element, net: NetConfig, cfg: DomainConfig, hv: Hypervisor) -> None:
    iface = _sub(devices, "interface", type=hv.nic_type)
    _sub(iface, "mac", address=_mac(net.mac, hv.mac_oui))
    if hv.nic_type == "network":
        _sub(iface, "source", network=net.network)
    else:
        _sub(iface, "source", bridge=cfg.esx.portgroup)
    _sub(iface, "model", type=hv.nic_model)
    if hv.pci_slots:
        _sub(iface, "rom", enabled="no")
    if hv.pci_slots or hv.virtio_mmio:
        _address(iface, hv, SLOT_NET)


def _consoles_and_agent(devices: ET.Element, cfg: DomainConfig, hv: Hypervisor) -> None:
    serial = _sub(devices, "serial", type="file")
    if hv.name == "esx":  # a file in the guest's datastore directory
        _sub(serial, "source", path=_datastore_path(cfg, "console.log"))
    else:
        _sub(serial, "source", path=str(cfg.console_log), append="off")
    _sub(serial, "target", port="0")
    if hv.agent == "tcp-serial":
        # COM2, served by ESXi on its own address ("VM serial port connected over network").
        agent = _sub(devices, "serial", type="tcp")
        _sub(agent, "source", mode="bind", host="0.0.0.0", service=str(cfg.esx.agent_port))
        _sub(agent, "protocol", type="raw")
        _sub(agent, "target", port="1")
        return
    if hv.pv_console:
        # hvc0, the PV console xenconsoled gives HVM guests too; console 0 stays the serial log
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="xen", port="0")
    channel = _sub(devices, "channel", type="unix")
    if cfg.agent_socket is not None:
        _sub(channel, "source", mode="bind", path=str(cfg.agent_socket))
    else:
        _sub(channel, "source", mode="bind")
    _sub(channel, "target", type=hv.agent, name=PORT_NAME)


def domain_xml(cfg: DomainConfig) -> str:
    """The domain for ``cfg`` on ``cfg.hypervisor``; what differs per hypervisor is read from its
    profile (hypervisor.py), so the qemu spelling is unchanged by the other two."""
    hv = cfg.hypervisor
    if hv.agent == "xen" and cfg.agent_socket is None:
        raise ValueError("a Xen domain needs agent_socket: libxl does not choose a channel path")
    dom = ET.Element("domain", type=hv.type_for(cfg.accel))
    _head(dom, cfg, hv)
    _os(dom, cfg, hv)
    _cpu_and_lifecycle(dom, cfg, hv)

    devices = _sub(dom, "devices")
    _disk(devices, cfg, hv, 0)
    if cfg.data_disk is not None:
        _disk(devices, cfg, hv, 1)
    if hv.pci_slots or hv.virtio_mmio:
        _sub(devices, "controller", type="usb", model="none")
    if hv.agent == "virtio":
        vser = _sub(devices, "controller", type="virtio-serial", index="0")
        if hv.pci_slots or hv.virtio_mmio:
            _address(vser, hv, SLOT_AGENT_SERIAL)
    if hv.scsi_model is not None:
        _sub(devices, "controller", type="scsi", index="0", model=hv.scsi_model)
    if cfg.net is not None:
        _interface(devices, cfg.net, cfg, hv)
    _consoles_and_agent(devices, cfg, hv)
    if hv.pci_slots or hv.virtio_mmio:
        _sub(devices, "memballoon", model="none")
    if hv.name == "qemu" and cfg.accel == "tcg":
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


def owner_of(live_xml: str) -> tuple[str | None, int | None]:
    """The run id and owner pid a domain's ``<description>`` records (None, None: not ours)."""
    try:
        desc = ET.fromstring(live_xml).findtext("description") or ""
    except ET.ParseError:
        return None, None
    m = re.search(r"isobench run_id=(\S+) pid=(\d+)", desc)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def agent_socket_of(domain: str, live_xml: str) -> str:
    """The agent channel's socket path, which libvirt chose, from the running domain's XML."""
    live = ET.fromstring(live_xml)
    for ch in live.iterfind("./devices/channel"):
        target = ch.find("target")
        source = ch.find("source")
        if target is not None and target.get("name") == PORT_NAME and source is not None:
            path = source.get("path")
            if path:
                return path
    raise SandboxError(f"domain {domain} has no agent channel socket in its live XML")
