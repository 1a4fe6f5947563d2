"""Reference driver: the standard OCI runtime ``runc`` over the suite image."""

from isobench.drivers.runc.driver import RuncDriver

DRIVER = RuncDriver

__all__ = ["DRIVER", "RuncDriver"]
