"""Device allowlists: the eBPF device program run on synthetic accesses, the v1 controller's writes
and the v2 attach seam on fake cgroupfs trees, and (integration) the program attached to a real
cgroup2 cgroup, where a process inside is refused a device node outside the list."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from isobench.errors import SandboxError
from isobench.hostsys.cgroups import (
    CONTAINER_DEVICES,
    CgroupLimits,
    DeviceRule,
    V2Manager,
    detect_layout,
    open_manager,
)
from isobench.hostsys.cgroups.devices import (
    attach_device_filter,
    device_program,
    run_device_program,
    write_v1_rules,
)
from isobench.hostsys.fake import fake_host, fake_rmdir

PROGRAM = device_program(CONTAINER_DEVICES)


@pytest.mark.parametrize(
    ("kind", "major", "minor", "access", "allowed"),
    [
        ("c", 1, 3, "rw", True),  # null
        ("c", 1, 9, "r", True),  # urandom
        ("c", 5, 2, "rw", True),  # ptmx
        ("c", 136, 7, "rw", True),  # a pts
        ("c", 1, 3, "m", True),  # rwm on the listed nodes, as runc
        ("c", 1, 1, "r", False),  # mem
        ("c", 1, 11, "w", False),  # kmsg
        ("c", 5, 1, "rw", False),  # console
        ("c", 137, 0, "r", False),  # another pty major
        ("c", 10, 200, "rw", False),  # tun
        ("b", 8, 0, "r", False),  # a disk
        ("b", 8, 0, "m", False),  # not even mknod of one
        ("b", 1, 3, "r", False),  # the type counts, not only the numbers
    ],
)
def test_container_program(kind: str, major: int, minor: int, access: str, allowed: bool) -> None:
    assert run_device_program(PROGRAM, kind, major, minor, access) is allowed


def test_program_wildcards_and_access_subsets() -> None:
    prog = device_program([DeviceRule("a", None, None, "m"), DeviceRule("b", 7, None, "r")])
    assert run_device_program(prog, "c", 4, 4, "m") and run_device_program(prog, "b", 9, 9, "m")
    assert not run_device_program(prog, "c", 4, 4, "r")
    assert run_device_program(prog, "b", 7, 3, "r") and not run_device_program(prog, "b", 7, 3, "rw")
    assert not run_device_program(device_program([]), "c", 1, 3, "r")
    with pytest.raises(SandboxError, match="bad device rule"):
        DeviceRule("x", 1, 1)


def test_v1_writes_deny_all_then_each_rule(tmp_path: Path) -> None:
    manager = open_manager(fake_host(tmp_path, "hybrid"), rmdir=fake_rmdir)
    cg = manager.create("box", CgroupLimits(devices=CONTAINER_DEVICES))
    box = tmp_path / "sys/fs/cgroup/devices/box"
    assert (box / "devices.deny").read_text() == "a"
    # One write(2) per rule on one open file: a plain file holds them back to back.
    assert (box / "devices.allow").read_text() == "".join(r.v1_line() for r in CONTAINER_DEVICES)
    assert "c 136:* rwm" in (box / "devices.allow").read_text()
    # The container joins the devices hierarchy like every other one.
    assert box / "tasks" in cg.self_attach_files
    cg.remove()


def test_v1_device_write_failure_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"device allowlist \(devices.deny=a\): No such file"):
        write_v1_rules(tmp_path / "gone", CONTAINER_DEVICES)


def test_v1_without_devices_controller_refuses(tmp_path: Path) -> None:
    probe = fake_host(tmp_path, "v1", v1=("cpu", "cpuacct", "memory", "pids"))
    with pytest.raises(SandboxError, match="controller 'devices' is not mounted"):
        open_manager(probe).create("box", CgroupLimits(devices=CONTAINER_DEVICES))
    assert not (tmp_path / "sys/fs/cgroup/memory/box").exists()


def test_v1_no_devices_no_controller(tmp_path: Path) -> None:
    manager = open_manager(fake_host(tmp_path, "hybrid"), rmdir=fake_rmdir)
    manager.create("box", CgroupLimits())
    assert not (tmp_path / "sys/fs/cgroup/devices/box").exists()


def test_v2_attaches_program_through_the_seam(tmp_path: Path) -> None:
    fake_host(tmp_path, "unified")
    calls: list[tuple[Path, Sequence[DeviceRule]]] = []
    manager = V2Manager(
        tmp_path / "sys/fs/cgroup", rmdir=fake_rmdir, attach_devices=lambda p, r: calls.append((p, r))
    )
    manager.create("box", CgroupLimits(devices=CONTAINER_DEVICES))
    manager.create("open", CgroupLimits())
    assert calls == [(tmp_path / "sys/fs/cgroup/box", CONTAINER_DEVICES)]


def test_v2_attach_failure_removes_the_cgroup(tmp_path: Path) -> None:
    fake_host(tmp_path, "unified")

    def refuse(path: Path, rules: Sequence[DeviceRule]) -> None:
        raise SandboxError("cannot attach")

    manager = V2Manager(tmp_path / "sys/fs/cgroup", rmdir=fake_rmdir, attach_devices=refuse)
    with pytest.raises(SandboxError, match="cannot attach"):
        manager.create("box", CgroupLimits(devices=CONTAINER_DEVICES))
    assert not (tmp_path / "sys/fs/cgroup/box").exists()


@pytest.mark.integration
def test_v2_program_on_a_real_cgroup2_cgroup(tmp_path: Path) -> None:
    # Device programs need no controller, so the hybrid host's empty cgroup2 mount will do.
    layout = detect_layout(Path("/proc/self/mountinfo").read_text())
    if layout.v2_root is None:
        pytest.skip("no cgroup2 mount on this host (pure v1)")
    kmsg = tmp_path / "kmsg"  # opened for writing, never written: nothing reaches the kernel log
    os.mknod(kmsg, 0o600 | stat.S_IFCHR, os.makedev(1, 11))
    cg = layout.v2_root / f"isobench-devtest-{os.getpid()}"
    cg.mkdir()
    try:
        attach_device_filter(cg, CONTAINER_DEVICES)
        script = f"echo $$ > {cg}/cgroup.procs; echo > /dev/null && echo null-ok; (exec 3>{kmsg}) 2>&1"
        out = subprocess.run(
            ["sh", "-c", script], check=False, capture_output=True, text=True, timeout=10
        ).stdout
        assert out.splitlines()[0] == "null-ok"
        assert "Operation not permitted" in out
        outside = subprocess.run(
            ["sh", "-c", f"(exec 3>{kmsg}) && echo kmsg-ok"], check=False, capture_output=True, text=True
        )
        assert outside.stdout.strip() == "kmsg-ok"  # the node itself works: the program refused it
    finally:
        os.rmdir(cg)
