"""Which disk holds a directory, from a fake sysfs (a partition resolves to its disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from isobench.errors import SandboxError
from isobench.hostsys import HostProbe
from isobench.hostsys.blockdev import BlockDevice, disk_of, disk_of_path, disks_of
from isobench.hostsys.fake import fake_disk

VDA = BlockDevice(254, 0, "vda")


def test_a_whole_disk(tmp_path: Path) -> None:
    fake_disk(tmp_path)
    d = disk_of(os.makedev(254, 0), HostProbe(root=tmp_path))
    assert d == VDA
    assert (d.dev, d.path) == ("254:0", "/dev/vda")


def test_a_partition_is_throttled_on_its_disk(tmp_path: Path) -> None:
    # the kernel refuses blkio/io.max rules on a partition
    fake_disk(tmp_path)
    assert disk_of(os.makedev(254, 1), HostProbe(root=tmp_path)) == VDA


def test_no_block_device(tmp_path: Path) -> None:
    fake_disk(tmp_path)
    probe = HostProbe(root=tmp_path)
    with pytest.raises(SandboxError, match="no block device"):
        disk_of(os.makedev(0, 45), probe)  # tmpfs, overlayfs
    with pytest.raises(SandboxError, match="not in"):
        disk_of(os.makedev(8, 0), probe)


def test_disks_of_dedupes_and_skips_none(tmp_path: Path) -> None:
    root = tmp_path / "root"
    fake_disk(root, holding=[tmp_path])
    probe = HostProbe(root=root)
    assert disks_of([tmp_path, None, root], probe) == (VDA,)
    with pytest.raises(SandboxError, match="cannot stat"):
        disk_of_path(tmp_path / "missing", probe)
