"""Libvirt guests booted from the suite's image: libvirt domain XML and a domain's lifecycle over
the guest core (isobench.drivers.guest), which holds the agent, accel probe, disks and stats."""

from isobench.drivers.vm.driver import VmDriver, VmSandbox

DRIVER = VmDriver

__all__ = ["DRIVER", "VmDriver", "VmSandbox"]
