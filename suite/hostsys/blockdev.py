"""Which host block device holds a directory: what a cgroup disk-bandwidth limit is written against.

cgroup throttling (v1 ``blkio.throttle.*_bps_device``, v2 ``io.max``) and Docker's
``device_*_bps`` name a whole disk by ``major:minor``; the kernel refuses a partition. A directory's
filesystem gives its device in ``st_dev``; ``/sys/dev/block/<major>:<minor>`` says whether that is a
partition (it has a ``partition`` file) and, one directory up, its disk. A filesystem without a
block device (tmpfs, overlayfs, NFS: major 0) cannot be throttled this way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import SandboxError
from isobench.hostsys.probe import HostProbe

__all__ = ["BlockDevice", "disk_of", "disk_of_path", "disks_of"]


@dataclass(frozen=True, order=True)
class BlockDevice:
    major: int
    minor: int
    #: The kernel's name (``vda``, ``nvme0n1``): Docker wants ``/dev/<name>``.
    name: str

    @property
    def dev(self) -> str:
        """``major:minor``, as cgroup files spell a device."""
        return f"{self.major}:{self.minor}"

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"


def _uevent_name(sysdir: Path) -> str | None:
    try:
        for line in (sysdir / "uevent").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "DEVNAME" and value:
                return value
    except OSError:
        return None
    return None


def disk_of(st_dev: int, probe: HostProbe) -> BlockDevice:
    """The whole disk behind device number ``st_dev`` (a filesystem's), read from the probe's sysfs."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    if major == 0:
        raise SandboxError(
            f"device {major}:{minor} is no block device (tmpfs, overlayfs or a network filesystem); "
            "disk bandwidth can only be limited on a directory of a disk-backed filesystem"
        )
    link = probe.sys / "dev/block" / f"{major}:{minor}"
    try:
        sysdir = link.resolve(strict=True)
    except OSError as err:
        raise SandboxError(f"block device {major}:{minor} is not in {link.parent}: {err}") from err
    if (sysdir / "partition").exists():
        sysdir = sysdir.parent
    try:
        dev = (sysdir / "dev").read_text().strip()
        disk_major, _, disk_minor = dev.partition(":")
        found = BlockDevice(int(disk_major), int(disk_minor), _uevent_name(sysdir) or sysdir.name)
    except (OSError, ValueError) as err:
        raise SandboxError(
            f"cannot read the disk of block device {major}:{minor} in {sysdir}: {err}"
        ) from err
    return found


def disk_of_path(path: Path, probe: HostProbe) -> BlockDevice:
    """The whole disk holding the filesystem ``path`` (a host path, not under the probe's root) is on."""
    try:
        st_dev = path.stat().st_dev
    except OSError as err:
        raise SandboxError(f"cannot stat {path}: {err.strerror}") from err
    return disk_of(st_dev, probe)


def disks_of(paths: Iterable[Path | None], probe: HostProbe) -> tuple[BlockDevice, ...]:
    """The distinct whole disks holding ``paths`` (Nones skipped), sorted: what one sandbox's disk
    bandwidth limit is written against (its root storage and its volume)."""
    return tuple(sorted({disk_of_path(p, probe) for p in paths if p is not None}))
