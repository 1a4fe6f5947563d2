"""Libvirt guests booted from the suite's image, driven through an in-guest agent."""

from isobench.drivers.vm.accel import AccelProbe, probe_accel
from isobench.drivers.vm.driver import VmDriver, VmSandbox

DRIVER = VmDriver

__all__ = ["DRIVER", "AccelProbe", "VmDriver", "VmSandbox", "probe_accel"]
