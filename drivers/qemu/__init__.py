"""QEMU launched directly (no libvirt): the same guest as the ``vm`` driver, microvm where it boots.

A command line and a process's lifecycle over the guest core (isobench.drivers.guest). Nothing here
imports libvirt or the ``vm`` driver, so this driver works where libvirt-python is absent.
"""

from isobench.drivers.qemu.driver import QemuDriver, QemuSandbox
from isobench.drivers.qemu.machine import MachineChoice

DRIVER = QemuDriver

__all__ = ["DRIVER", "MachineChoice", "QemuDriver", "QemuSandbox"]
