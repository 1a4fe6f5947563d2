"""Fakes of the host for tests: a tree with ``proc/self/mountinfo``, ``proc/filesystems`` and a
cgroupfs of plain directories under a temporary root (and the :class:`HostProbe` pointing at it),
and a recording iproute2 for the :class:`~isobench.hostsys.links.Links` runner seam."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from isobench.hostsys.cgroups.layout import Mode
from isobench.hostsys.probe import HostProbe

__all__ = ["ALL_V1", "FakeIp", "fake_disk", "fake_host", "fake_rmdir"]

ALL_V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def fake_rmdir(path: Path) -> None:
    """cgroupfs removes a directory full of control files; a plain filesystem needs rmtree. As the
    kernel does, it refuses (EBUSY) while the cgroup holds a process."""
    if not path.exists():
        raise FileNotFoundError(path)
    procs = path / "cgroup.procs"
    if procs.exists() and procs.read_text().strip():
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
    shutil.rmtree(path)


def fake_disk(root: Path, *, holding: Iterable[Path] = ()) -> None:
    """A /sys/dev/block under ``root`` as the kernel lays it out: disk ``vda`` (254:0) with partition
    ``vda1`` (254:1), links into /sys/devices; the real device of each directory in ``holding``
    (tests' tmp dirs) appears as that partition, so a driver throttles ``254:0`` for them."""
    disk = root / "sys/devices/pci0000:00/virtio1/block/vda"
    part = disk / "vda1"
    part.mkdir(parents=True, exist_ok=True)
    (disk / "dev").write_text("254:0\n")
    (disk / "uevent").write_text("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n")
    (part / "dev").write_text("254:1\n")
    (part / "partition").write_text("1\n")
    (part / "uevent").write_text("MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\n")
    links = root / "sys/dev/block"
    links.mkdir(parents=True, exist_ok=True)
    targets = {"254:0": "../../devices/pci0000:00/virtio1/block/vda"}
    targets["254:1"] = targets["254:0"] + "/vda1"
    for path in holding:
        st_dev = path.stat().st_dev
        targets[f"{os.major(st_dev)}:{os.minor(st_dev)}"] = targets["254:1"]
    for name, target in targets.items():
        (links / name).unlink(missing_ok=True)
        (links / name).symlink_to(target)


def fake_host(
    root: Path,
    mode: Mode | None = "hybrid",
    *,
    v1: Sequence[str] = ALL_V1,
    v2: str = "cpuset cpu io memory pids",
    euid: int = 0,
    filesystems: Sequence[str] = ("ext4", "overlay", "cgroup", "cgroup2"),
    libvirt_uri: str = "test:///default",
) -> HostProbe:
    """A host whose cgroups are ``mode`` (None: no cgroup filesystem), with the v1 controllers
    ``v1`` (each its own hierarchy; "cpu,cpuacct" co-mounts) or the v2 controllers ``v2``."""
    lines = ["22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw"]
    cg = root / "sys/fs/cgroup"
    cg.mkdir(parents=True, exist_ok=True)
    if mode in ("v1", "hybrid"):
        for i, c in enumerate(v1):
            (cg / c).mkdir(exist_ok=True)
            lines.append(f"{30 + i} 22 0:{30 + i} / /sys/fs/cgroup/{c} rw - cgroup cgroup rw,{c}")
            if "cpuset" in c.split(","):
                (cg / c / "cpuset.mems").write_text("0\n")
        (cg / "systemd").mkdir(exist_ok=True)
        lines.append("60 22 0:60 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd")
        if mode == "hybrid":
            (cg / "unified").mkdir(exist_ok=True)
            (cg / "unified/cgroup.controllers").write_text("")
            lines.append("61 22 0:61 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw")
    elif mode == "unified":
        (cg / "cgroup.controllers").write_text(v2 + "\n")
        (cg / "cgroup.subtree_control").write_text("")
        lines.append("30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate")
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text("\n".join(lines) + "\n")
    (root / "proc/filesystems").write_text("".join(f"\t{fs}\n" for fs in filesystems))
    return HostProbe(root=root, euid=euid, libvirt_uri=libvirt_uri)


class FakeIp:
    """iproute2 as a set of link names: records every ``ip`` command (a batch's lines one by one,
    without the ``ip``) and answers like the real one; commands behind a namespace prefix
    (``nsenter ... ip``) are recorded in ``inside``, descriptors a command inherits in
    ``passed``. ``fail_on`` makes any command naming it fail."""

    def __init__(self, fail_on: str | None = None, links: Iterable[str] = ()) -> None:
        self.calls: list[list[str]] = []
        self.inside: list[list[str]] = []
        self.links: dict[str, str] = dict.fromkeys(links, "")
        self.fail_on = fail_on
        self.passed: list[tuple[int, ...]] = []

    def __call__(
        self, argv: Sequence[str], stdin: str | None = None, /, *, pass_fds: Sequence[int] = ()
    ) -> tuple[int, str, str]:
        if pass_fds:
            self.passed.append(tuple(pass_fds))
        args = list(argv)
        at = args.index("ip") if "ip" in args else 0
        inside, args = at > 0, args[at + 1 :]
        if args[:2] != ["-batch", "-"]:
            return self._one(args, inside)
        for n, line in enumerate((stdin or "").splitlines(), 1):
            code, out, err = self._one(line.split(), inside)
            if code != 0:
                return code, out, f"{err}\nCommand failed -:{n}"
        return 0, "", ""

    def _one(self, a: list[str], inside: bool) -> tuple[int, str, str]:
        (self.inside if inside else self.calls).append(a)
        if self.fail_on is not None and self.fail_on in a:
            return 2, "", "RTNETLINK answers: Operation not permitted"
        if inside:
            return 0, "", ""
        if a[:2] == ["-j", "link"]:
            doc = [{"ifname": "lo"}] + [
                {"ifname": n, **({"ifalias": al} if al else {})} for n, al in sorted(self.links.items())
            ]
            return 0, json.dumps(doc), ""
        if a[:2] == ["-4", "-o"]:
            return 0, "1: lo    inet 127.0.0.1/8 scope host lo\n", ""
        name = (
            a[3]
            if a[:2] == ["tuntap", "add"]
            else a[2]
            if a[:2] in (["link", "add"], ["link", "del"])
            else ""
        )
        if a[:2] in (["link", "add"], ["tuntap", "add"]):
            if name in self.links:
                return 2, "", "RTNETLINK answers: File exists"
            self.links[name] = ""
        elif a[:2] == ["link", "del"]:
            if name not in self.links:
                return 1, "", f'Cannot find device "{name}"'
            del self.links[name]
        elif a[:2] == ["link", "set"] and "alias" in a:
            self.links[a[a.index("dev") + 1]] = a[a.index("alias") + 1]
        return 0, "", ""
