"""Which hypervisor a libvirt URI reaches, and what a guest is made of there: one profile per
hypervisor, read by the domain XML builder (domain.py), so adding one is a table entry plus the
devices it lacks.

The same libvirt API reaches KVM, Xen and ESXi; only KVM/TCG (``qemu://``) is measured here. For
Xen and ESXi the XML is generated and validated (golden files, libvirt's RNG schema, the
``test:///default`` driver), and the driver refuses to run them, because the guest side is
missing (see :attr:`Hypervisor.not_run_because`).

Sources for the device choices: libvirt's domain XML format (disk ``target/@bus``, ``channel``
target types ``virtio`` and ``xen``, ``os`` direct kernel boot), its libxl driver (``xen:///system``;
HVM guests honour ``<kernel>``/``<initrd>``/``<cmdline>``, libxl_conf.c under
LIBXL_HAVE_BUILDINFO_KERNEL, and unix-socket channels, LIBXL_HAVE_DEVICE_CHANNEL) and its ESX
driver (``esx://host``; datastore paths ``[datastore] dir/file.vmdk``; SCSI controller models
``buslogic``, ``lsilogic``, ``lsisas1068``, ``vmpvscsi``; NIC models up to ``vmxnet3``; the .vmx is
kept next to the first disk), and virt-manager's virtinst (``devices/disk.py`` ``_default_bus``:
``xen`` for Xen PV guests; ``devices/interface.py``: virtio where the hypervisor has it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from isobench.drivers.guest.accel import Accel
from isobench.errors import UsageError

__all__ = [
    "ESX",
    "HYPERVISORS",
    "QEMU",
    "QEMU_MICROVM",
    "XEN",
    "Hypervisor",
    "HypervisorName",
    "hypervisor_for_uri",
]

HypervisorName = Literal["qemu", "xen", "esx"]


@dataclass(frozen=True)
class Hypervisor:
    name: HypervisorName
    title: str
    #: ``<domain type=...>``; None: ``kvm`` or ``qemu`` by the accelerator.
    domain_type: str | None
    #: ``<os><type machine=...>``; None leaves it to the hypervisor.
    machine: str | None
    #: kernel + initrd + cmdline from the image; False: the disk must carry a bootloader.
    direct_kernel_boot: bool
    features: tuple[str, ...]
    #: An explicit ``<cpu>`` (qemu64 / host-model); elsewhere the hypervisor's own default.
    cpu_element: bool
    #: ``<vcpupin>`` per vCPU and ``<emulatorpin>``; ESXi has CPU affinity (``<vcpu cpuset>``) only,
    #: libxl pins vCPUs but has no emulator thread to pin.
    vcpu_pin: bool
    emulator_pin: bool
    #: ``<clock>`` and ``on_*`` actions (the .vmx format has neither).
    lifecycle: bool
    disk_bus: str
    disk_prefix: str
    #: ``<driver name=...>`` of a disk (None: the hypervisor's own format, e.g. vmdk).
    disk_driver: str | None
    #: The qcow2 overlay's read-only raw backing file spelled out (qemu checks and labels it).
    backing_chain: bool
    #: The disk controller, when disks hang off one (ESXi: SCSI).
    scsi_model: str | None
    #: ``network``: a libvirt network the driver defines; ``bridge``: an existing bridge/port group.
    nic_type: str
    nic_model: str
    #: The OUI guests' MACs are rewritten into (ESXi refuses static MACs outside 00:50:56:00-3f).
    mac_oui: str
    #: Explicit PCI slots on q35's root bus, no option ROM, no balloon, no USB (qemu only).
    pci_slots: bool
    #: How the agent reaches the host: ``virtio`` or ``xen`` channel, or ``tcp-serial`` (COM2).
    agent: Literal["virtio", "xen", "tcp-serial"]
    #: A PV console (hvc0) besides the serial console log.
    pv_console: bool
    measured: bool
    #: Why isobench does not run this hypervisor (empty when it does).
    not_run_because: str = ""
    #: Virtio devices on virtio-mmio transports instead of PCI slots (qemu's microvm machine has
    #: no PCI bus as libvirt starts it).
    virtio_mmio: bool = False

    def type_for(self, accel: Accel) -> str:
        if self.domain_type is not None:
            return self.domain_type
        return "kvm" if accel == "kvm" else "qemu"


QEMU = Hypervisor(
    name="qemu",
    title="QEMU (KVM or TCG)",
    domain_type=None,
    machine="q35",
    direct_kernel_boot=True,
    features=("acpi", "apic"),
    cpu_element=True,
    vcpu_pin=True,
    emulator_pin=True,
    lifecycle=True,
    disk_bus="virtio",
    disk_prefix="vd",
    disk_driver="qemu",
    backing_chain=True,
    scsi_model=None,
    nic_type="network",
    nic_model="virtio",
    mac_oui="52:54:00",
    pci_slots=True,
    agent="virtio",
    pv_console=False,
    measured=True,
)

#: Xen HVM (not PV): libxl boots an HVM guest straight from kernel + initrd, so the image's own
#: kernel and initramfs run unchanged, with PV disk (xvda, blkfront), PV NIC (netfront) and the
#: agent on a Xen PV channel (libxl needs the socket path given).
XEN = Hypervisor(
    name="xen",
    title="Xen (libxl, HVM)",
    domain_type="xen",
    machine=None,
    direct_kernel_boot=True,
    features=("acpi", "apic", "pae"),
    cpu_element=False,
    vcpu_pin=True,
    emulator_pin=False,
    lifecycle=True,
    disk_bus="xen",
    disk_prefix="xvd",
    disk_driver="qemu",  # qdisk, the backend that reads qcow2
    backing_chain=False,  # the overlay's qcow2 header names its backing file; qdisk follows it
    scsi_model=None,
    nic_type="network",
    nic_model="netfront",
    mac_oui="00:16:3e",
    pci_slots=False,
    agent="xen",
    pv_console=True,
    measured=False,
    not_run_because=(
        "the guest agent finds its port under /sys/class/virtio-ports; on Xen it would open the PV"
        " channel /dev/hvcN named in xenstore (device/console/N/name), and the initramfs would load"
        " xen-blkfront and xen-netfront: neither is built"
    ),
)

#: VMware ESXi: no direct kernel boot, so the guest needs a bootable disk in a datastore; disks on
#: VMware's paravirtual SCSI (pvscsi), a vmxnet3 NIC on a port group, and, as ESXi has no
#: virtio-serial, the agent on a second serial port that ESXi serves over TCP.
ESX = Hypervisor(
    name="esx",
    title="VMware ESXi",
    domain_type="vmware",
    machine=None,
    direct_kernel_boot=False,
    features=(),
    cpu_element=False,
    vcpu_pin=False,
    emulator_pin=False,
    lifecycle=False,
    disk_bus="scsi",
    disk_prefix="sd",
    disk_driver=None,
    backing_chain=False,
    scsi_model="vmpvscsi",
    nic_type="bridge",
    nic_model="vmxnet3",
    mac_oui="00:50:56",
    pci_slots=False,
    agent="tcp-serial",
    pv_console=False,
    measured=False,
    not_run_because=(
        "ESXi cannot boot a kernel and initrd directly: it needs a bootable vmdk (partitioned,"
        " with a bootloader, vmw_pvscsi and vmxnet3 in its initramfs) in a datastore, and an agent"
        " on /dev/ttyS1; the image recipe builds neither"
    ),
)

#: The micro guest (drivers/guest/flavour.py) on qemu's microvm machine: no PCI bus (libvirt 9
#: starts microvm without ``pcie=on``), so every virtio device sits on a virtio-mmio transport,
#: which the micro kernel has built in (the stock initramfs loads virtio_pci only).
QEMU_MICROVM = replace(
    QEMU, title="QEMU microvm (KVM or TCG)", machine="microvm", pci_slots=False, virtio_mmio=True
)

HYPERVISORS: dict[HypervisorName, Hypervisor] = {h.name: h for h in (QEMU, XEN, ESX)}

#: libvirt URI schemes (before any ``+transport``) -> hypervisor. ``test`` is libvirt's test
#: driver, which the unit tests use in place of qemu.
_SCHEMES: dict[str, Hypervisor] = {
    "qemu": QEMU,
    "test": QEMU,
    "xen": XEN,
    "libxl": XEN,
    "esx": ESX,
    "gsx": ESX,
    "vpx": ESX,
}


def hypervisor_for_uri(uri: str) -> Hypervisor:
    """The hypervisor a libvirt URI reaches (``qemu+ssh://h/system`` is qemu); UsageError if none."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    try:
        return _SCHEMES[scheme]
    except KeyError:
        raise UsageError(
            f"drivers.vm.uri {uri!r} names no hypervisor isobench knows; use qemu:///system"
            " (or xen:///system, esx://host for generated but unmeasured XML)"
        ) from None
