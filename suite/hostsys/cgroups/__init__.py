"""One cgroup manager for the whole suite: an interface, a v1 and a v2 backend, and the one place
the host's cgroup mode is decided (youki's ``libcgroups``: common, v1, v2).

The host is read through a :class:`~isobench.hostsys.HostProbe`: its ``/proc/self/mountinfo`` says
where the hierarchies are, and every mount point is taken under the probe's root, so a test builds
a fake cgroupfs tree (:mod:`isobench.hostsys.fake`) and hands the drivers a probe rooted there.

- ``unified``: ``/sys/fs/cgroup`` is cgroup2, controllers live there -> v2 backend;
- ``hybrid``: v1 controller hierarchies plus a cgroup2 mount with no controllers -> v1 backend;
- ``v1``: only v1 hierarchies -> v1 backend.

Device allowlists (``CgroupLimits.devices``): the v1 ``devices`` controller, or on v2 a cgroup
device BPF program (:mod:`isobench.hostsys.cgroups.devices`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from isobench.errors import SandboxError
from isobench.hostsys.cgroups.common import Cgroup, CgroupLimits, CgroupManager, Rmdir, parse_flat_keyed
from isobench.hostsys.cgroups.devices import CONTAINER_DEVICES, DeviceRule
from isobench.hostsys.cgroups.layout import CgroupLayout, Mode, detect_layout
from isobench.hostsys.cgroups.v1 import V1Cgroup, V1Manager
from isobench.hostsys.cgroups.v2 import V2Cgroup, V2Manager
from isobench.hostsys.probe import HostProbe

__all__ = [
    "CONTAINER_DEVICES",
    "Cgroup",
    "CgroupLayout",
    "CgroupLimits",
    "CgroupManager",
    "DeviceRule",
    "HostMode",
    "Mode",
    "V1Cgroup",
    "V1Manager",
    "V2Cgroup",
    "V2Manager",
    "cgroup_mode",
    "detect_layout",
    "host_layout",
    "open_manager",
    "parse_flat_keyed",
]

#: A host's mode as reported (doctor, results): ``none`` when no cgroup filesystem is mounted.
HostMode = Literal["v1", "hybrid", "unified", "none"]


def host_layout(probe: HostProbe) -> CgroupLayout:
    """The probed host's hierarchies, every mount point under the probe's root."""
    layout = detect_layout(probe.mountinfo())
    return dataclasses.replace(
        layout,
        v1_mounts={c: probe.path(m) for c, m in layout.v1_mounts.items()},
        v2_root=probe.path(layout.v2_root) if layout.v2_root is not None else None,
        named_mounts=tuple(probe.path(m) for m in layout.named_mounts),
    )


def cgroup_mode(probe: HostProbe) -> HostMode:
    """v1, hybrid or unified; none without any cgroup filesystem."""
    try:
        return detect_layout(probe.mountinfo()).mode
    except SandboxError:
        return "none"


def open_manager(probe: HostProbe, *, parent: str = "", rmdir: Rmdir = os.rmdir) -> V1Manager | V2Manager:
    """The manager for the probed host; cgroups are made under ``parent`` in each hierarchy."""
    layout = host_layout(probe)
    if layout.mode == "unified":
        assert layout.v2_root is not None
        return V2Manager(layout.v2_root, parent=parent, rmdir=rmdir)
    return V1Manager(layout, parent=parent, rmdir=rmdir)
