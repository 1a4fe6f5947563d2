"""Real guests under qemu:///system (TCG here). Needs root, libvirtd and a built image."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.vm import VmDriver
from isobench.images import find_image

STATE = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))
pytestmark = [pytest.mark.integration, pytest.mark.libvirt]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmDriver]:
    find_image(STATE)  # fails with "run `isobench image build`" if setup did not build it
    run_id = f"t{os.getpid()}"
    drv = VmDriver(DriverContext(STATE, tmp_path_factory.mktemp("w"), run_id, {}))
    yield drv
    drv.gc(run_id)
    drv.close()


def _leftovers(drv: VmDriver) -> list[str]:
    found = [d.name() for d in drv.conn().listAllDomains() if d.name().startswith(f"isobench-{drv.run_id}")]
    found += [n.name() for n in drv.conn().listAllNetworks() if n.name().startswith(f"isobench-{drv.run_id}")]
    if drv.run_dir.exists():
        found += [p.name for p in drv.run_dir.iterdir() if p.name != "owner"]
    return found


def test_boot_exec_stats_destroy(driver: VmDriver) -> None:
    sb = driver.create(SandboxSpec("g0", driver.run_id, cpuset=(0,), memory_mib=256, network=True))
    try:
        names = [p.name for p in sb.phases]
        for want in ("create", "start", "firmware", "kernel", "initramfs", "agent", "ready", "boot_total"):
            assert want in names
        res = sb.exec(["sh", "-c", "cd $PWD && pwd && fio --version && echo err >&2; exit 4"], timeout=30)
        assert (res.exit_code, res.stderr) == (4, "err\n")
        assert res.stdout.splitlines() == [sb.workdir, res.stdout.splitlines()[1]]
        assert res.stdout.splitlines()[1].startswith("fio-")
        assert sb.exec(["cat"], timeout=30, stdin=b"z" * 300_000).stdout == "z" * 300_000
        assert sb.address is not None
        gateway = sb.address.rsplit(".", 1)[0] + ".1"  # the run's bridge on the host
        # Three echoes: the first can be lost while a freshly created bridge settles (seen once in a
        # fresh-clone CI run); a broken network loses all three.
        ping = sb.exec(["busybox", "ping", "-c", "3", "-W", "5", gateway], timeout=30)
        assert ping.exit_code == 0, ping.stdout + ping.stderr
        st = sb.stats()
        assert 0 < (st.qemu_pss_bytes or 0) < 1 << 30
        assert 0 < (st.guest_used_bytes or 0) < 256 << 20
        assert (st.guest_ram_rss_bytes or 0) > 0
        assert driver.metadata()["accel"] in ("kvm", "tcg")
        # Boot speed depends on libvirt adding nothing the direct-qemu baseline lacks.
        argv = Path(f"/proc/{driver.qemu_pid(sb.domain_name)}/cmdline").read_text()
        assert "pcie-root-port" not in argv and '"romfile":""' in argv, argv
    finally:
        sb.destroy()
    sb.destroy()  # idempotent
    assert [p.name for p in sb.phases][-1] == "destroy"
    driver.close()
    assert _leftovers(driver) == []


def test_guest_never_ready_is_cleaned(driver: VmDriver) -> None:
    drv = VmDriver(
        DriverContext(
            STATE,
            driver.run_dir,
            driver.run_id,
            {"boot_timeout": 3, "cmdline": "console=ttyS0 quiet init=/bin/nosuch rdinit=/nosuch"},
        )
    )
    with pytest.raises(Exception, match=r"not ready within 3s|died before ready"):
        drv.create(SandboxSpec("never", driver.run_id, memory_mib=128))
    assert _leftovers(drv) == []
    drv.close()


def test_memory_the_host_cannot_give(driver: VmDriver) -> None:
    with pytest.raises(Exception, match="cannot give"):
        driver.create(SandboxSpec("huge", driver.run_id, memory_mib=10 << 20))
    assert _leftovers(driver) == []


@pytest.mark.slow
def test_twenty_guests_in_a_row_leave_nothing(driver: VmDriver) -> None:
    for i in range(20):
        sb = driver.create(SandboxSpec(f"s{i}", driver.run_id, memory_mib=128))
        try:
            assert sb.exec(["true"], timeout=30).ok
        finally:
            sb.destroy()
    driver.close()
    assert _leftovers(driver) == []


@pytest.mark.slow
def test_runner_killed_mid_boot_is_collected_by_gc(driver: VmDriver, tmp_path: Path) -> None:
    run_id = f"killed{os.getpid()}"
    code = (
        "from pathlib import Path\n"
        "from isobench.drivers.base import DriverContext, SandboxSpec\n"
        "from isobench.drivers.vm import VmDriver\n"
        f"d = VmDriver(DriverContext(Path({str(STATE)!r}), Path({str(tmp_path)!r}), {run_id!r}, {{}}))\n"
        f"d.create(SandboxSpec('k0', {run_id!r}, memory_mib=128, network=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    conn = driver.conn()
    for _ in range(300):
        if any(d.name().startswith(f"isobench-{run_id}") and d.isActive() for d in conn.listAllDomains()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone = driver.gc()
    assert any(g.startswith(f"domain isobench-{run_id}") for g in gone)
    assert not [d for d in conn.listAllDomains() if d.name().startswith(f"isobench-{run_id}")]
    assert not [n for n in conn.listAllNetworks() if n.name().startswith(f"isobench-{run_id}")]
    assert not (driver.runs_dir / f"isobench-{run_id}").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_network_moves_to_a_free_subnet_when_another_run_holds_its_own(driver: VmDriver) -> None:
    from isobench.drivers.vm.domain import network_xml
    from isobench.drivers.vm.network import RunNetwork, remove_network

    run_id = f"subnet{os.getpid()}"
    net = RunNetwork(driver.conn, run_id)
    # Another run's network already sits on the /24 this run id hashes to.
    blocker = driver.conn().networkDefineXML(
        network_xml(
            f"isobench-{run_id}-blocker",
            f"isbblk{os.getpid() % 100000}",
            f"10.214.{net.first_subnet()}.1",
            24,
        )
    )
    try:
        blocker.create()
        _, first = net.attach()
        _, second = net.attach()
        assert first.split(".")[2] == second.split(".")[2] != str(net.first_subnet())
        assert (first.rsplit(".", 1)[1], second.rsplit(".", 1)[1]) == ("2", "3")
    finally:
        assert remove_network(driver.conn, net.name)
        blocker.destroy()
        blocker.undefine()
    assert not [n for n in driver.conn().listAllNetworks() if n.name().startswith(f"isobench-{run_id}")]
