"""Real runc containers on this host (root, cgroups, overlayfs): create, exec, limits, teardown, gc."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.runc.driver import RuncDriver, RuncSandbox
from isobench.errors import SandboxError

pytestmark = pytest.mark.integration

CGROUP_ROOT = Path("/sys/fs/cgroup")


def leftovers(driver: RuncDriver, ident: str, base: Path) -> list[str]:
    """Every trace a sandbox could leave on the host, as readable strings (empty = clean)."""
    found = [str(p) for p in CGROUP_ROOT.glob(f"*/{ident}")]
    found += [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if ident in ln]
    links = json.loads(
        subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    )
    found += [lk["ifname"] for lk in links if lk.get("ifalias") == ident]
    if base.exists():
        found.append(str(base))
    if (driver.state_root / ident).exists():
        found.append(str(driver.state_root / ident))
    return found


def _spec(run_id: str, image: Path, name: str = "sb", **kw: object) -> SandboxSpec:
    return SandboxSpec(name=name, run_id=run_id, image=image, **kw)  # type: ignore[arg-type]


def test_create_exec_in_own_namespaces_and_clean_teardown(
    runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = runc_driver.create(_spec(run_id, busybox_rootfs, name="basic"))
    base = sb.overlay.base
    try:
        assert [p.name for p in sb.phases] == ["create", "runc_create", "runc_start", "ready", "exec"]
        assert sb.address is None
        assert sb.exec(["true"], timeout=10).ok
        # Own pid namespace: pid 1 is our sleep init (busybox), and a fresh shell has a tiny pid.
        res = sb.exec(
            ["sh", "-c", "readlink /proc/1/exe; echo $$; hostname; pwd; ls /sys/class/net"], timeout=10
        )
        exe, pid, hostname, cwd, *nets = res.stdout.split()
        assert (exe, hostname, cwd) == ("/bin/busybox", "basic", "/work")
        assert int(pid) < 100  # host pids here are in the thousands
        assert nets == ["lo"]  # own network namespace, loopback only
        # stdin, env and exit status pass through.
        res = sb.exec(["sh", "-c", 'cat; echo "$FOO"; exit 3'], timeout=10, env={"FOO": "bar"}, stdin=b"in\n")
        assert (res.exit_code, res.stdout, res.argv[0]) == (3, "in\nbar\n", "sh")
        with pytest.raises(SandboxError, match="nosuchcmd"):
            sb.exec(["nosuchcmd"], timeout=10)
        stats = sb.stats()
        assert (stats.pids or 0) >= 1 and (stats.memory_bytes or 0) > 0 and (stats.cpu_seconds or 0) > 0
    finally:
        sb.destroy()
    sb.destroy()  # idempotent
    assert [p.name for p in sb.phases][-1] == "destroy"
    assert leftovers(runc_driver, sb.ident, base) == []


def test_memory_limit_is_applied_and_enforced(
    runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = runc_driver.create(_spec(run_id, busybox_rootfs, name="mem", memory_mib=32, pids_limit=50))
    try:
        assert sb.stats().memory_limit_bytes == 32 * 1024 * 1024
        assert (CGROUP_ROOT / "memory" / sb.ident / "memory.limit_in_bytes").read_text().strip() == str(
            32 * 1024 * 1024
        )
        assert (CGROUP_ROOT / "pids" / sb.ident / "pids.max").read_text().strip() == "50"
        assert (CGROUP_ROOT / "cpu" / sb.ident / "cpu.cfs_quota_us").read_text().strip() == "100000"
        # sort holds its whole input (one 64 MiB line) in memory: the OOM killer must stop it.
        res = sb.exec(["sh", "-c", "head -c 64m /dev/zero | sort >/dev/null"], timeout=60)
        assert res.exit_code == 137, res
        assert sb.exec(["true"], timeout=10).ok  # the init survived
    finally:
        sb.destroy()


def test_writes_land_in_upper_layer_never_in_image(
    runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str, tmp_path: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    sb = runc_driver.create(_spec(run_id, busybox_rootfs, name="fs", volume=vol))
    try:
        res = sb.exec(
            ["sh", "-c", "echo w > f && echo changed > /etc/image-marker && echo v > /data/v"], timeout=10
        )
        assert res.ok, res.stderr
        upper = sb.overlay.upper
        assert (upper / "work" / "f").read_text() == "w\n"
        assert (upper / "etc" / "image-marker").read_text() == "changed\n"
        assert (busybox_rootfs / "etc" / "image-marker").read_text() == "pristine\n"
        assert not (busybox_rootfs / "work").exists()
        assert (vol / "v").read_text() == "v\n"
    finally:
        sb.destroy()
    assert (vol / "v").exists()  # the volume is the user's: teardown leaves it alone


def test_network_gives_a_host_reachable_address(
    runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = runc_driver.create(_spec(run_id, busybox_rootfs, name="net", network=True))
    base = sb.overlay.base
    try:
        assert "network" in [p.name for p in sb.phases]
        assert sb.address is not None and sb.address.startswith("10.213.")
        server = "nc -l -p 7000 -e echo pong </dev/null >/dev/null 2>&1 &"
        assert sb.exec(["sh", "-c", server], timeout=10).ok
        assert _fetch(sb.address, 7000) == b"pong\n"
    finally:
        sb.destroy()
    assert leftovers(runc_driver, sb.ident, base) == []


def _fetch(host: str, port: int) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                return conn.recv(100)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_failed_create_leaves_nothing(runc_driver: RuncDriver, run_id: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken-image"
    (broken / "bin").mkdir(parents=True)  # no sleep: the init cannot start
    with pytest.raises(SandboxError, match="runc create"):
        runc_driver.create(_spec(run_id, broken, name="broken"))
    ident = f"isobench-runc-{run_id}-broken"
    assert leftovers(runc_driver, ident, runc_driver._ctx.work_dir / ident) == []


def test_gc_removes_an_abandoned_sandbox(runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str) -> None:
    sb: RuncSandbox = runc_driver.create(_spec(run_id, busybox_rootfs, name="lost", network=True))
    base = sb.overlay.base
    assert runc_driver.gc("someone-else") == []
    removed = runc_driver.gc(run_id)
    assert f"runc container {sb.ident}" in removed
    assert any(r.startswith("overlay ") for r in removed)
    assert leftovers(runc_driver, sb.ident, base) == []


def test_interrupt_during_create_tears_down_what_was_made(
    runc_driver: RuncDriver, busybox_rootfs: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C after the container, its cgroups and the overlay exist, before the network is up.
    def interrupted(_links: object, pid: int, alias: str) -> None:
        made.append((CGROUP_ROOT / "memory" / alias).is_dir() and Path(f"/proc/{pid}").exists())
        raise KeyboardInterrupt

    made: list[bool] = []

    monkeypatch.setattr("isobench.drivers.runc.network.setup_veth", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runc_driver.create(_spec(run_id, busybox_rootfs, name="intr", network=True))
    ident = f"isobench-runc-{run_id}-intr"
    assert made == [True]  # the interrupt really came after runc had made things
    assert leftovers(runc_driver, ident, runc_driver._ctx.work_dir / ident) == []
