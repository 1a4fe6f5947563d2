"""Where the host's cgroup hierarchies are mounted, read from ``/proc/self/mountinfo`` text.

One parser for the whole suite: the host report (``isobench doctor``, every result's host block)
and the container driver's cgroup manager both ask it, so they cannot disagree about the mode.

- ``unified``: cgroup2 alone (``/sys/fs/cgroup`` is cgroup2, controllers live there);
- ``hybrid``: v1 controller hierarchies plus a cgroup2 mount (systemd's ``unified``, or, on these
  machines, one holding only hugetlb);
- ``v1``: only v1 hierarchies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from isobench.errors import SandboxError
from isobench.mounts import parse_mountinfo

__all__ = ["CgroupLayout", "Mode", "detect_layout"]

Mode = Literal["v1", "hybrid", "unified"]

#: v1 superblock options that are not controllers (cgroup-v1(7); systemd mounts its named
#: hierarchy ``rw,xattr,name=systemd``, which has no controller at all).
_V1_NOT_CONTROLLERS = frozenset(
    {"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "nofavordynmods"}
)


@dataclass(frozen=True)
class CgroupLayout:
    """Where the host's cgroup hierarchies are mounted."""

    mode: Mode
    #: v1 controller name -> mount point (co-mounted controllers share a path).
    v1_mounts: Mapping[str, Path] = field(default_factory=dict)
    #: The cgroup2 mount point, if any (unified root, or the hybrid's ``unified`` mount).
    v2_root: Path | None = None


def detect_layout(mountinfo: str) -> CgroupLayout:
    """Parse ``/proc/self/mountinfo`` text; raise SandboxError when no cgroup fs is mounted."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for entry in parse_mountinfo(mountinfo):
        mount_point = Path(entry.mount_point)
        if entry.fs_type == "cgroup2":
            # The first cgroup2 mount wins; /sys/fs/cgroup itself marks a unified host.
            if v2 is None or mount_point == Path("/sys/fs/cgroup"):
                v2 = mount_point
        elif entry.fs_type == "cgroup":
            for opt in entry.super_options.split(","):
                if not opt or opt in _V1_NOT_CONTROLLERS or "=" in opt:
                    continue
                v1.setdefault(opt, mount_point)
    if v1:
        return CgroupLayout(mode="hybrid" if v2 is not None else "v1", v1_mounts=v1, v2_root=v2)
    if v2 is not None:
        return CgroupLayout(mode="unified", v2_root=v2)
    raise SandboxError("no cgroup filesystem is mounted (see /proc/self/mountinfo); mount cgroup2 or v1")
