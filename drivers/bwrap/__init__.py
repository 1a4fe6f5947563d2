"""Reference driver: bubblewrap's namespace sandbox over the suite image (no cgroup limits)."""

from isobench.drivers.bwrap.driver import BwrapDriver

DRIVER = BwrapDriver

__all__ = ["DRIVER", "BwrapDriver"]
