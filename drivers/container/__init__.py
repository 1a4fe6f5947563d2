"""isobench's own container runtime: namespaces, cgroups (v1 and v2), overlayfs, pivot_root, seccomp."""

from isobench.drivers.container.driver import ColdRun, ContainerDriver, ContainerSandbox

DRIVER = ContainerDriver

__all__ = ["DRIVER", "ColdRun", "ContainerDriver", "ContainerSandbox"]
