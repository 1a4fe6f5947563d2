"""Real bubblewrap sandboxes on this host (root, overlayfs): exec, namespaces, storage, teardown, gc."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec, SandboxStats
from isobench.drivers.bwrap.driver import BwrapDriver, BwrapSandbox
from isobench.errors import SandboxError

pytestmark = pytest.mark.integration


def leftovers(base: Path) -> list[str]:
    found = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if base.name in ln]
    if base.exists():
        found.append(str(base))
    return found


def _spec(run_id: str, image: Path, name: str = "sb", **kw: object) -> SandboxSpec:
    return SandboxSpec(name=name, run_id=run_id, image=image, **kw)  # type: ignore[arg-type]


def test_exec_in_own_namespaces_and_clean_teardown(
    bwrap_driver: BwrapDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = bwrap_driver.create(_spec(run_id, busybox_rootfs, name="basic", cpuset=(0,)))
    base = sb.overlay.base
    try:
        assert [p.name for p in sb.phases] == ["create", "ready", "exec"]
        assert sb.address is None
        # bwrap's reaper is pid 1 of a fresh pid namespace, so the command is pid 2.
        res = sb.exec(
            [
                "sh",
                "-c",
                "echo $$; hostname; pwd; ip -o link | cut -d: -f2; grep Cpus_allowed_list /proc/self/status",
            ],
            timeout=10,
        )
        assert res.ok, res.stderr
        pid, hostname, cwd, link, _label, cpus = res.stdout.split()
        assert (pid, hostname, cwd, link, cpus) == ("2", "basic", "/work", "lo", "0")
        res = sb.exec(["sh", "-c", 'cat; echo "$FOO"; exit 3'], timeout=10, env={"FOO": "bar"}, stdin=b"in\n")
        assert (res.exit_code, res.stdout, res.argv[0]) == (3, "in\nbar\n", "sh")
        with pytest.raises(SandboxError, match="nosuchcmd"):
            sb.exec(["nosuchcmd"], timeout=10)
        assert sb.stats() == SandboxStats()
    finally:
        sb.destroy()
    sb.destroy()  # idempotent
    assert [p.name for p in sb.phases][-1] == "destroy"
    assert leftovers(base) == []


def test_writes_persist_across_execs_in_upper_never_in_image(
    bwrap_driver: BwrapDriver, busybox_rootfs: Path, run_id: str, tmp_path: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    sb = bwrap_driver.create(_spec(run_id, busybox_rootfs, name="fs", volume=vol))
    try:
        res = sb.exec(
            ["sh", "-c", "echo w > f && echo changed > /etc/image-marker && echo v > /data/v"], timeout=10
        )
        assert res.ok, res.stderr
        assert sb.exec(["cat", "f", "/etc/image-marker"], timeout=10).stdout == "w\nchanged\n"
        assert (sb.overlay.upper / "work" / "f").read_text() == "w\n"
        assert (busybox_rootfs / "etc" / "image-marker").read_text() == "pristine\n"
        assert (vol / "v").read_text() == "v\n"
    finally:
        sb.destroy()
    assert (vol / "v").exists()


def test_network_shares_host_namespace_at_loopback(
    bwrap_driver: BwrapDriver, busybox_rootfs: Path, run_id: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        got: list[bytes] = []

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(100))

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        sb = bwrap_driver.create(_spec(run_id, busybox_rootfs, name="net", network=True))
        try:
            assert sb.address == "127.0.0.1"
            res = sb.exec(["sh", "-c", f"echo ping | nc -w 5 {sb.address} {port}"], timeout=20)
            assert res.ok, res.stderr
        finally:
            sb.destroy()
        t.join(timeout=10)
    assert got == [b"ping\n"]


def test_failed_create_leaves_nothing(bwrap_driver: BwrapDriver, run_id: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken-image"
    for d in ("bin", "proc", "sys", "dev"):
        (broken / d).mkdir(parents=True)  # no `true` to run
    with pytest.raises(SandboxError, match="bwrap"):
        bwrap_driver.create(_spec(run_id, broken, name="broken"))
    assert leftovers(bwrap_driver._ctx.work_dir / f"isobench-bwrap-{run_id}-broken") == []


def test_gc_removes_an_abandoned_sandbox(
    bwrap_driver: BwrapDriver, busybox_rootfs: Path, run_id: str
) -> None:
    sb = bwrap_driver.create(_spec(run_id, busybox_rootfs, name="lost"))
    assert bwrap_driver.gc("someone-else") == []
    removed = bwrap_driver.gc(run_id)
    assert removed == [f"overlay {sb.overlay.merged}"]
    assert leftovers(sb.overlay.base) == []


def test_interrupt_during_create_tears_down_what_was_made(
    bwrap_driver: BwrapDriver, busybox_rootfs: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C while the readiness probe runs, after the overlay is mounted.
    def interrupted(self: BwrapSandbox, argv: object, **kw: object) -> None:
        made.append(self.overlay.merged.joinpath("bin", "busybox").exists())  # overlay is mounted
        raise KeyboardInterrupt

    made: list[bool] = []

    monkeypatch.setattr("isobench.drivers.bwrap.driver.BwrapSandbox.exec", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bwrap_driver.create(_spec(run_id, busybox_rootfs, name="intr"))
    assert made == [True]
    assert leftovers(bwrap_driver._ctx.work_dir / f"isobench-bwrap-{run_id}-intr") == []
