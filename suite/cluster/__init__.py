"""Fleet runs on Dask distributed: the same matrix on many hosts, one results directory.

``isobench worker --scheduler tcp://HOST:8786`` makes a host a Dask worker whose resources are what
``isobench doctor`` found (``isobench.cluster.probe``); ``isobench run --cluster ADDRESS`` plans a
lane of cells per host (``isobench.cluster.plan``), submits them one per host at a time and
journals samples as they arrive (``isobench.cluster.client``); ``--cluster local:N`` starts N
workers on this machine (``isobench.cluster.local``). Dask is the engine: worker resources give the
one-cell-per-host slot and the capability matching, no scheduler of our own.
"""

from .plan import HOST_SLOT, KVM, FleetPlan, driver_resource
from .run import FleetRun, check_fleet_config, connect, run_fleet
from .worker import HOST_PARAM

__all__ = [
    "HOST_PARAM",
    "HOST_SLOT",
    "KVM",
    "FleetPlan",
    "FleetRun",
    "check_fleet_config",
    "connect",
    "driver_resource",
    "run_fleet",
]
