from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import libvirt
import pytest
from isobench.drivers.base import DriverContext, ExecResult
from isobench.drivers.vm.accel import probe_accel
from isobench.drivers.vm.agent import AgentChannel, encode_frame, parse_ready
from isobench.drivers.vm.domain import DomainConfig, NetConfig, domain_xml
from isobench.drivers.vm.driver import VmDriver
from isobench.drivers.vm.memory import meminfo_kib, parse_smaps
from isobench.errors import CellTimeout, DriverUnavailable, SandboxError

GOLDEN = Path(__file__).parent / "golden"

CFG = DomainConfig(
    name="isobench-run1-g0",
    accel="tcg",
    memory_mib=512,
    vcpus=2,
    kernel=Path("/img/vmlinuz"),
    initrd=Path("/img/initrd.img"),
    cmdline="console=ttyS0 quiet",
    overlay=Path("/runs/g0.qcow2"),
    backing=Path("/img/rootfs.ext4"),
    console_log=Path("/runs/g0.console.log"),
    cpuset=(0, 1),
    net=NetConfig("isobench-run1", "52:54:00:10:00:02"),
    description="isobench run_id=run1 pid=999999999",
)


def test_domain_xml_matches_golden_tcg() -> None:
    assert domain_xml(CFG) == (GOLDEN / "domain_tcg_net.xml").read_text()


def test_domain_xml_matches_golden_kvm() -> None:
    cfg = dataclasses.replace(CFG, accel="kvm", cpuset=None, net=None, vcpus=1)
    assert domain_xml(cfg) == (GOLDEN / "domain_kvm.xml").read_text()


def test_libvirt_test_driver_accepts_the_domain_and_gc_removes_it(tmp_path: Path) -> None:
    ctx = DriverContext(tmp_path, tmp_path / "w", "run1", {"uri": "test:///default"})
    drv = VmDriver(ctx)
    dom = drv.conn().defineXML(domain_xml(CFG))  # description says pid 999999999: a dead owner
    dom.create()
    other = drv.conn().defineXML(
        domain_xml(
            dataclasses.replace(
                CFG, name="isobench-run2-g0", description=f"isobench run_id=run2 pid={os.getpid()}"
            )
        )
    )
    gone = drv.gc()
    assert "domain isobench-run1-g0" in gone
    names = {d.name() for d in drv.conn().listAllDomains()}
    assert "isobench-run1-g0" not in names
    assert "isobench-run2-g0" in names  # owner alive: kept by gc(None)
    assert drv.gc("run2") == ["domain isobench-run2-g0"]
    with pytest.raises(libvirt.libvirtError):
        drv.conn().lookupByName(other.name())


def test_unreachable_uri_is_one_clear_error(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "qemu+unix:///system?socket=/nonexistent"}))
    with pytest.raises(DriverUnavailable, match="libvirtd -d"):
        drv.conn()
    avail = drv.availability()
    assert not avail.ok and "cannot connect" in avail.reason


def test_missing_image_makes_driver_unavailable(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"uri": "test:///default"}))
    avail = drv.availability()
    assert not avail.ok and "isobench image build" in avail.reason


def _fake_kvm(tmp_path: Path) -> Path:
    dev = tmp_path / "kvm"
    dev.write_text("")
    return dev


def test_accel_kvm_works(tmp_path: Path) -> None:
    res = probe_accel(tmp_path, dev_kvm=_fake_kvm(tmp_path), sys_root=tmp_path, boot=lambda *_: (True, "ok"))
    assert (res.usable, res.accel) == (True, "kvm")
    again = probe_accel(
        tmp_path,
        dev_kvm=_fake_kvm(tmp_path),
        sys_root=tmp_path,
        boot=lambda *_: pytest.fail("cached result must not boot again"),
    )
    assert again.cached and again.accel == "kvm"


def test_accel_kvm_missing(tmp_path: Path) -> None:
    res = probe_accel(
        tmp_path, dev_kvm=tmp_path / "nokvm", boot=lambda *_: pytest.fail("no probe without /dev/kvm")
    )
    assert (res.usable, res.accel) == (False, "tcg")
    assert "missing" in res.reason


def test_accel_probe_fails_on_kvm_pvm(tmp_path: Path) -> None:
    (tmp_path / "module/kvm_pvm").mkdir(parents=True)
    res = probe_accel(
        tmp_path,
        dev_kvm=_fake_kvm(tmp_path),
        sys_root=tmp_path,
        boot=lambda *_: (False, "KVM internal error: emulation failure"),
    )
    assert (res.usable, res.accel) == (False, "tcg")
    assert res.reason.startswith("kvm-pvm:") and "emulation failure" in res.reason


def test_kvm_requested_but_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import isobench.drivers.vm.driver as mod
    from isobench.drivers.vm.accel import AccelProbe

    monkeypatch.setattr(
        mod, "probe_accel", lambda *a, **k: AccelProbe(False, "tcg", "kvm-pvm: emulation failure")
    )
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "r", {"accel": "kvm"}))
    with pytest.raises(DriverUnavailable, match=r"KVM was requested.*emulation failure"):
        drv.accel()


SMAPS = """\
55d0a0000000-55d0a0100000 r-xp 00000000 08:01 123  /usr/bin/qemu-system-x86_64
Rss:                1024 kB
Pss:                 512 kB
Private_Clean:       256 kB
Private_Dirty:         0 kB
7f0000000000-7f0020000000 rw-p 00000000 00:00 0
Rss:              131072 kB
Pss:              131072 kB
Private_Clean:         0 kB
Private_Dirty:    131072 kB
7f1000000000-7f1000400000 rw-p 00000000 00:00 0
Rss:                2048 kB
Pss:                2048 kB
Private_Clean:         0 kB
Private_Dirty:      2048 kB
"""


def test_smaps_excludes_guest_ram() -> None:
    mem = parse_smaps(SMAPS, 512 << 20)
    assert mem.guest_ram_found
    assert mem.guest_ram_rss_bytes == 131072 * 1024
    assert mem.pss_bytes == (512 + 2048) * 1024
    assert mem.uss_bytes == (256 + 2048) * 1024


def test_qemu_process_stats_and_guest_used(tmp_path: Path) -> None:
    from isobench.drivers.vm.memory import guest_used_bytes, qemu_process_stats

    (tmp_path / "stat").write_text("123 (qemu-system-x86) S " + " ".join(["0"] * 10) + " 250 150 0 0\n")
    stats = qemu_process_stats(tmp_path, guest_ram_bytes=1 << 30)  # no smaps file: no memory keys
    assert stats == {"cpu_seconds": 400 / os.sysconf("SC_CLK_TCK")}
    assert guest_used_bytes("MemTotal: 100 kB\nMemAvailable: 40 kB\n") == 60 * 1024
    assert guest_used_bytes("garbled frame") is None


def test_meminfo() -> None:
    assert meminfo_kib("MemTotal: 100 kB\nMemAvailable: 40 kB\nHugePages_Total: 0\n") == {
        "MemTotal": 100,
        "MemAvailable": 40,
        "HugePages_Total": 0,
    }


def _fake_agent(sock: socket.socket, script: list[bytes]) -> threading.Thread:
    def run() -> None:
        for frame in script:
            sock.sendall(frame)
        sock.recv(1 << 16)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_agent_protocol_ready_and_exec() -> None:
    host, guest = socket.socketpair()
    ready = b"monotonic_ns=5\nboottime_ns=7\ninit_uptime=0.5\nswitch_uptime=0.6\nkernel=6.1\n"
    _fake_agent(
        guest,
        [
            encode_frame(b"R", ready),
            encode_frame(b"O", b"he"),
            encode_frame(b"e", b"oops"),
            encode_frame(b"O", b"llo"),
            encode_frame(b"X", b"exit 3 start_ns=1 end_ns=2"),
        ],
    )
    ch = AgentChannel(host)
    r, _ = ch.wait_ready(deadline=__import__("time").monotonic() + 5)
    assert (r.boottime_ns, r.init_uptime_s, r.kernel) == (7, 0.5, "6.1")
    res = ch.exec(["x"], timeout=5)
    assert (res.stdout, res.stderr, res.exit_code) == ("hello", "oops", 3)


def test_agent_protocol_signal_failure_and_corruption() -> None:
    host, guest = socket.socketpair()
    _fake_agent(
        guest, [encode_frame(b"X", b"signal 9"), encode_frame(b"F", b"cannot execute nope"), b"garbage!!"]
    )
    ch = AgentChannel(host)
    assert ch.exec(["x"], timeout=5).exit_code == -9
    with pytest.raises(SandboxError, match="cannot execute nope"):
        ch.exec(["nope"], timeout=5)
    with pytest.raises(SandboxError, match="corrupt"):
        ch.exec(["x"], timeout=5)


def test_agent_timeout_sends_kill() -> None:
    host, guest = socket.socketpair()
    ch = AgentChannel(host)

    def agent() -> None:
        got = b""
        while b"IBK" not in got:
            got += guest.recv(4096)
        guest.sendall(encode_frame(b"X", b"signal 9"))

    threading.Thread(target=agent, daemon=True).start()
    with pytest.raises(CellTimeout):
        ch.exec(["sleep", "100"], timeout=0.2)


def test_concurrent_execs_queue_instead_of_mixing_frames() -> None:
    """The agent runs one command at a time; a second caller (stats() during a workload command)
    must wait its turn, never read the first command's frames."""
    from isobench.drivers.vm.agent import HEADER

    host, guest = socket.socketpair()

    def agent() -> None:
        for i in range(2):
            head = b""
            while len(head) < HEADER.size:
                head += guest.recv(HEADER.size - len(head))
            _, _, length = HEADER.unpack(head)
            body = b""
            while len(body) < length:
                body += guest.recv(length - len(body))
            guest.sendall(encode_frame(b"O", str(i).encode()))
            time.sleep(0.2)  # a second request arrives now if the channel lets it
            guest.sendall(encode_frame(b"X", f"exit {i} start_ns=1 end_ns=2".encode()))

    threading.Thread(target=agent, daemon=True).start()
    ch = AgentChannel(host)
    results: list[ExecResult] = []
    callers = [threading.Thread(target=lambda: results.append(ch.exec(["x"], timeout=5))) for _ in range(2)]
    for c in callers:
        c.start()
        time.sleep(0.05)
    for c in callers:
        c.join(10)
    assert sorted(r.exit_code for r in results) == [0, 1]
    assert all(r.stdout == str(r.exit_code) for r in results)


def test_malformed_ready() -> None:
    with pytest.raises(SandboxError):
        parse_ready(b"nonsense")


class _SlowReapDomain:
    """A domain whose qemu (a real child process) exits at destroy, but whose libvirt bookkeeping
    only finishes when ``reaped`` is set: PID 1 reaping the orphaned qemu late, as on CI."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.reaped = threading.Event()
        self.undefined = threading.Event()

    def name(self) -> str:
        return "isobench-run1-slow"

    def isActive(self) -> bool:
        return self.proc.poll() is None or not self.reaped.is_set()

    def destroy(self) -> None:
        self.proc.terminate()
        assert self.reaped.wait(30)

    def undefine(self) -> None:
        self.undefined.set()


def test_destroy_returns_when_qemu_exits_and_close_waits_for_libvirt(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    proc = subprocess.Popen(["sleep", "60"])
    dom = _SlowReapDomain(proc)
    overlay = tmp_path / "g.qcow2"
    overlay.write_text("x")
    pidfd = os.pidfd_open(proc.pid)
    try:
        drv.retire(dom, [overlay], pidfd)
        assert proc.poll() is not None  # qemu is gone when destroy returns ...
        assert not dom.undefined.is_set() and overlay.exists()  # ... libvirt's part still runs
    finally:
        os.close(pidfd)
    dom.reaped.set()
    drv.close()  # joins the background teardown
    assert dom.undefined.is_set() and not overlay.exists()


def test_destroy_without_pidfd_waits_for_the_whole_teardown(tmp_path: Path) -> None:
    drv = VmDriver(DriverContext(tmp_path, tmp_path, "run1", {"uri": "test:///default"}))
    dom = _SlowReapDomain(subprocess.Popen(["sleep", "60"]))
    dom.reaped.set()
    drv.retire(dom, [], None)
    assert dom.undefined.is_set()
    drv.close()
