"""QEMU launched directly (no libvirt): the same guest as the ``vm`` driver, microvm where it boots."""

from isobench.drivers.qemu.driver import MachineChoice, QemuDriver, QemuSandbox

DRIVER = QemuDriver

__all__ = ["DRIVER", "MachineChoice", "QemuDriver", "QemuSandbox"]
