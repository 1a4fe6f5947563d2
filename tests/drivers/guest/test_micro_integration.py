"""The micro guest (minimal kernel, vmlinux through PVH, no modules) really boots on both guest
drivers: qemu on microvm with virtio-mmio, vm (libvirt) on microvm too. One boot each, with a
volume and a network, so the agent's channel, both virtio disks in the right order and the NIC are
proven. Needs root, the built image and micro kernel (`isobench image build`), libvirtd for vm."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.drivers.qemu import QemuDriver
from isobench.drivers.vm import VmDriver
from isobench.images import find_image
from isobench.images.kernel import find_micro_kernel

STATE = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))
pytestmark = [pytest.mark.integration]


@pytest.fixture
def volume() -> Iterator[Path]:
    # world-searchable, as the runner's: libvirt's qemu user must reach the data disk image
    d = Path(tempfile.mkdtemp(prefix="isobench-micro-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    left = list(d.iterdir())
    for p in left:
        p.unlink()
    d.rmdir()
    assert left == [], "the guest's data disk outlived its sandbox"


def _boot_and_check(drv: Driver, run_id: str, volume: Path) -> None:
    avail = drv.availability()
    assert avail.ok, avail.reason
    assert avail.details["kernel_flavour"] == "micro"
    md = drv.metadata()
    assert md["kernel_flavour"] == "micro" and md["kernel_build"] == find_micro_kernel(STATE).digest
    sb = drv.create(SandboxSpec("m0", run_id, memory_mib=256, network=True, volume=volume))
    try:
        names = [p.name for p in sb.phases]
        for want in ("firmware", "kernel", "initramfs", "agent", "boot_total"):
            assert want in names
        script = "uname -r; grep -c ' /data ' /proc/mounts; ls /sys/class/net"
        res = sb.exec(["sh", "-c", script], timeout=30)
        release, data_mounts, *nics = res.stdout.split()
        assert "cloud" not in release  # not Debian's kernel
        assert data_mounts == "1" and "eth0" in nics  # vdb at /data, the NIC up
        written = sb.exec(["sh", "-c", "echo x > /data/probe && cat /data/probe"], timeout=30)
        assert written.stdout == "x\n"
        assert sb.address is not None
        gateway = sb.address.rsplit(".", 1)[0] + ".1"
        ping = sb.exec(["busybox", "ping", "-c", "3", "-W", "5", gateway], timeout=30)
        assert ping.exit_code == 0, ping.stdout + ping.stderr
    finally:
        sb.destroy()


@pytest.mark.parametrize(
    "driver_type",
    [pytest.param(QemuDriver, id="qemu"), pytest.param(VmDriver, id="vm", marks=pytest.mark.libvirt)],
)
def test_micro_guest_on_microvm(
    driver_type: type[QemuDriver | VmDriver], tmp_path: Path, volume: Path
) -> None:
    find_image(STATE)
    run_id = f"tm{driver_type.name[0]}{os.getpid()}"
    drv = driver_type(DriverContext(STATE, tmp_path / "work", run_id, {"kernel": "micro"}))
    try:
        _boot_and_check(drv, run_id, volume)
        assert drv.metadata()["machine"] == "microvm"
    finally:
        if isinstance(drv, VmDriver):
            drv.gc(run_id)  # the run's network and directory, as the vm tests do
        drv.close()
    if isinstance(drv, QemuDriver):
        assert drv.gc(run_id) == [], "qemu left resources behind"
