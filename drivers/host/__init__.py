"""The native baseline: workloads run directly on the host, through the same protocol as the rest."""

from isobench.drivers.host.driver import HostDriver

DRIVER = HostDriver

__all__ = ["DRIVER", "HostDriver"]
