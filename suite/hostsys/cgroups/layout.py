"""Where the host's cgroup hierarchies are mounted, read from ``/proc/self/mountinfo`` text.

The one cgroup-mode detector of the suite: the host report (``isobench doctor``, every result's
host block), the container driver's cgroups and the runc driver's checks and gc all ask it, so they
cannot disagree about the mode.

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
    #: v1 hierarchies without a controller (``name=systemd``): other runtimes (runc) make cgroups
    #: there too, so gc looks in them.
    named_mounts: tuple[Path, ...] = ()

    def hierarchies(self) -> tuple[Path, ...]:
        """Every mounted hierarchy's root, each once: where a cgroup of a given name may exist."""
        found = [*self.v1_mounts.values(), *self.named_mounts]
        if self.v2_root is not None:
            found.append(self.v2_root)
        return tuple(dict.fromkeys(found))


def detect_layout(mountinfo: str) -> CgroupLayout:
    """Parse ``/proc/self/mountinfo`` text; raise SandboxError when no cgroup fs is mounted."""
    v1: dict[str, Path] = {}
    named: list[Path] = []
    v2: Path | None = None
    for entry in parse_mountinfo(mountinfo):
        mount_point = Path(entry.mount_point)
        if entry.fs_type == "cgroup2":
            # The first cgroup2 mount wins; /sys/fs/cgroup itself marks a unified host.
            if v2 is None or mount_point == Path("/sys/fs/cgroup"):
                v2 = mount_point
        elif entry.fs_type == "cgroup":
            controllers = [
                opt
                for opt in entry.super_options.split(",")
                if opt and opt not in _V1_NOT_CONTROLLERS and "=" not in opt
            ]
            for opt in controllers:
                v1.setdefault(opt, mount_point)
            if not controllers:
                named.append(mount_point)
    if v1:
        mode: Mode = "hybrid" if v2 is not None else "v1"
        return CgroupLayout(mode=mode, v1_mounts=v1, v2_root=v2, named_mounts=tuple(named))
    if v2 is not None:
        return CgroupLayout(mode="unified", v2_root=v2)
    raise SandboxError("no cgroup filesystem is mounted (see /proc/self/mountinfo); mount cgroup2 or v1")
