"""The host probe every driver gets in its context: paths under one root, facts read once."""

from __future__ import annotations

import os
from pathlib import Path

from isobench.drivers.base import DriverContext
from isobench.hostsys import HostProbe
from isobench.hostsys.fake import fake_host


def test_the_default_is_the_real_host() -> None:
    host = DriverContext(Path("/s"), Path("/w"), "r").host
    assert (host.root, host.euid, host.egid) == (Path("/"), os.geteuid(), os.getegid())
    assert host.proc == Path("/proc") and host.libvirt_uri == "qemu:///system"
    assert host.is_root == (os.geteuid() == 0)


def test_every_host_path_hangs_off_the_root(tmp_path: Path) -> None:
    host = HostProbe(root=tmp_path, euid=1000)
    assert host.path("/sys/fs/cgroup/memory") == tmp_path / "sys/fs/cgroup/memory"
    assert (host.proc, host.sys, host.sys_class_net) == (
        tmp_path / "proc",
        tmp_path / "sys",
        tmp_path / "sys/class/net",
    )
    assert host.libvirt_run == tmp_path / "run/libvirt/qemu"
    assert host.libvirt_log == tmp_path / "var/log/libvirt/qemu"
    assert not host.is_root and host.read("/proc/missing", "none") == "none"


def test_fake_host_tree_answers_like_a_host(tmp_path: Path) -> None:
    host = fake_host(tmp_path, "hybrid", filesystems=("ext4", "overlay"))
    assert host.has_filesystem("overlay") and not host.has_filesystem("over")
    assert "cgroup2" in host.mountinfo() and (tmp_path / "sys/fs/cgroup/memory").is_dir()
