"""The qemu driver without root or qemu: command lines, parsers, availability and machine choice
through fakes, networking through a recording ``ip``, QMP against a socketpair."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.guest.accel import AccelProbe, host_tsc_khz
from isobench.drivers.guest.boot import BootTimeout
from isobench.drivers.guest.probecache import TIMEOUT_TTL_S
from isobench.drivers.qemu import MachineChoice, QemuDriver
from isobench.drivers.qemu.command import NetDevice, QemuConfig, machine_types, qemu_argv
from isobench.drivers.qemu.machine import tsc_khz_from_dmesg
from isobench.drivers.qemu.network import RunNetwork
from isobench.drivers.qemu.procscan import find_guests, guest_name
from isobench.drivers.qemu.qmp import QmpClient
from isobench.errors import DriverUnavailable, SandboxError, UsageError
from isobench.hostsys import HostProbe
from isobench.hostsys.fake import FakeIp
from isobench.hostsys.links import Links
from isobench.liveruns import LiveRun, Sparing
from isobench.testing import FakeSandbox, fake_guest_image

DATA = Path(__file__).parent / "data"
HELP = (DATA / "machine-help-7.2.txt").read_text()


# -- command line ---------------------------------------------------------------------------
def _cfg(**kw: Any) -> QemuConfig:
    base: dict[str, Any] = {
        "name": "isobench-qemu-r1-g0-1",
        "machine": "q35",
        "accel": "tcg",
        "memory_mib": 256,
        "vcpus": 2,
        "kernel": Path("/img/vmlinuz"),
        "initrd": Path("/img/initrd.img"),
        "cmdline": "console=ttyS0 quiet",
    }
    base.update(kw)
    return QemuConfig(**base)


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_q35_tcg_argv_has_the_devices_the_guest_needs_and_nothing_else() -> None:
    argv = qemu_argv(_cfg())
    assert argv[0] == "qemu-system-x86_64"
    assert _opt(argv, "-name") == ["isobench-qemu-r1-g0-1,debug-threads=on"]
    assert _opt(argv, "-machine") == ["q35"]
    assert (_opt(argv, "-accel"), _opt(argv, "-cpu")) == (["tcg"], ["qemu64"])
    assert (_opt(argv, "-m"), _opt(argv, "-smp")) == (["256"], ["2"])
    assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(argv)
    assert _opt(argv, "-device") == [
        "virtio-blk-pci,drive=root",
        "virtio-serial-pci",
        "virtserialport,chardev=agent,name=org.isobench.agent.0",
    ]
    assert _opt(argv, "-drive")[0].startswith("file=root.qcow2,if=none,id=root,format=qcow2,cache=none")
    # Relative socket paths: qemu runs in the guest dir, so sun_path length never depends on it.
    assert _opt(argv, "-chardev") == ["socket,id=agent,path=agent.sock,server=on,wait=off"]
    assert _opt(argv, "-qmp") == ["unix:qmp.sock,server=on,wait=off"]
    assert _opt(argv, "-serial") == ["file:console.log"]
    assert "-netdev" not in argv and "-bios" not in argv


def test_microvm_kvm_net_argv() -> None:
    argv = qemu_argv(
        _cfg(machine="microvm", accel="kvm", net=NetDevice("isobqabcdeft1", "52:54:00:d7:01:02"))
    )
    machine = _opt(argv, "-machine")[0]
    assert machine.startswith("microvm,") and "pcie=on" in machine and "pit=on" in machine
    assert _opt(argv, "-cpu") == ["host,-arch-capabilities"]
    assert _opt(argv, "-netdev") == ["tap,id=net0,ifname=isobqabcdeft1,script=no,downscript=no"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:d7:01:02" in _opt(argv, "-device")


def test_data_disk_is_the_second_virtio_blk() -> None:
    argv = qemu_argv(_cfg(data_disk=Path("/v/isobench-x.data.img")))
    devices = _opt(argv, "-device")
    # after the root disk, so the guest names it vdb (the initramfs mounts vdb at /data)
    assert devices[:2] == ["virtio-blk-pci,drive=root", "virtio-blk-pci,drive=data"]
    assert (
        _opt(argv, "-drive")[1]
        == "file=/v/isobench-x.data.img,if=none,id=data,format=raw,cache=none,aio=native"
    )


def test_machine_types_from_recorded_help() -> None:
    types = machine_types(HELP)
    assert {"microvm", "q35", "pc", "pc-q35-7.2"} <= types
    assert "Supported" not in types and machine_types("Supported machines are:\npc  x\n") == {"pc"}


# -- parsers --------------------------------------------------------------------------------
def test_tsc_rate_prefers_the_refined_calibration() -> None:
    assert tsc_khz_from_dmesg((DATA / "dmesg-microvm-tcg.txt").read_text()) == 2596160
    assert tsc_khz_from_dmesg((DATA / "dmesg-q35-tcg.txt").read_text()) == 2596125
    assert tsc_khz_from_dmesg((DATA / "dmesg-microvm-pit-failed.txt").read_text()) is None


def test_host_tsc_rate_only_where_the_host_kernel_knows_it_exactly(tmp_path: Path) -> None:
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    flags = "fpu tsc constant_tsc nopl tsc_known_freq pni"
    (proc / "cpuinfo").write_text(f"processor\t: 0\ncpu MHz\t\t: 2445.426\nflags\t\t: {flags}\n")
    assert host_tsc_khz(proc, sys_root) == 2445426
    (sys_root / "devices/system/cpu/cpu0/cpufreq").mkdir(parents=True)  # MHz is then the clock
    assert host_tsc_khz(proc, sys_root) is None
    (proc / "cpuinfo").write_text("cpu MHz\t\t: 2445.426\nflags\t\t: fpu tsc constant_tsc\n")
    assert host_tsc_khz(proc, tmp_path / "nosys") is None  # calibrated, not known: no
    assert host_tsc_khz(tmp_path / "noproc", sys_root) is None


def test_guest_name_reads_the_name_argument_of_qemu_only() -> None:
    argv = qemu_argv(_cfg())
    assert guest_name("\0".join(argv).encode()) == "isobench-qemu-r1-g0-1"
    assert guest_name(b"/usr/bin/qemu-system-x86_64\0-name\0guest=x,debug-threads=on") == "guest=x"
    assert guest_name(b"python3\0-name\0isobench-qemu-r1-g0-1") is None
    assert guest_name(b"qemu-system-x86_64\0-m\0256") is None


def test_find_guests_in_a_fake_proc(tmp_path: Path) -> None:
    def proc(pid: int, argv: Sequence[str]) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc(10, qemu_argv(_cfg(name="isobench-qemu-r1-a-1")))
    proc(11, qemu_argv(_cfg(name="isobench-qemu-r2-a-1")))
    proc(12, ["bash", "-c", "-name isobench-qemu-r1-x"])
    (tmp_path / "self").mkdir()
    (tmp_path / "13").mkdir()  # exited: no cmdline
    assert find_guests(tmp_path, "isobench-qemu-r1-") == [(10, "isobench-qemu-r1-a-1")]
    assert [p for p, _ in find_guests(tmp_path, "isobench-qemu-")] == [10, 11]


# -- network --------------------------------------------------------------------------------
def test_run_network_bridge_taps_addresses_and_close() -> None:
    ip = FakeIp()
    net = RunNetwork("20261128001600abcd", Links(ip))
    a, b = net.add_guest(), net.add_guest()
    assert net.bridge.startswith("isobq") and all(len(n) <= 15 for n in (net.bridge, a.tap, b.tap))
    assert a.address == f"10.215.{net.octet}.2" and b.address == f"10.215.{net.octet}.3"
    assert a.mac != b.mac and net.host_address == f"10.215.{net.octet}.1"
    assert ["addr", "add", f"10.215.{net.octet}.1/24", "dev", net.bridge] in ip.calls
    assert ["link", "set", a.tap, "master", net.bridge] in ip.calls
    assert sum(c[:2] == ["link", "add"] for c in ip.calls) == 1  # one bridge per run
    net.close()
    assert ip.links == {}


def test_run_network_failure_leaves_no_link_and_says_why() -> None:
    ip = FakeIp(fail_on="master")
    net = RunNetwork("r1", Links(ip))
    with pytest.raises(SandboxError, match="needs root and iproute2"):
        net.add_guest()
    assert set(ip.links) == {net.bridge}  # the tap is gone; the bridge is the run's, removed by close
    net.close()
    assert ip.links == {}


def test_close_without_networking_runs_no_ip_command() -> None:
    ip = FakeIp()
    RunNetwork("r1", Links(ip)).close()
    assert ip.calls == []


def test_list_links_parses_recorded_ip_json() -> None:
    out = (DATA / "ip-link-lo.json").read_text()
    links = Links(lambda _a, _i: (0, out, ""))
    assert [lk.name for lk in links.find("lo")] == ["lo"]
    assert links.find("isobq") == []


# -- QMP ------------------------------------------------------------------------------------
def test_qmp_greeting_capabilities_and_quit(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    seen: list[str] = []

    def serve() -> None:
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        f.flush()
        for line in f:
            cmd = json.loads(line)["execute"]
            seen.append(cmd)
            if cmd == "quit":
                f.write(b'{"event": "SHUTDOWN", "data": {}}\n{"return": {}}\n')
            elif cmd == "bogus":
                f.write(b'{"error": {"class": "CommandNotFound", "desc": "no bogus"}}\n')
            else:
                f.write(b'{"return": {}}\n')
            f.flush()
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    import time

    client = QmpClient.connect(str(path), time.monotonic() + 5)
    with pytest.raises(SandboxError, match="no bogus"):
        client.execute("bogus", time.monotonic() + 5)
    assert client.execute("quit", time.monotonic() + 5) == {}
    client.close()
    t.join(5)
    srv.close()
    assert seen == ["qmp_capabilities", "bogus", "quit"]


# -- availability and machine choice through fakes -------------------------------------------
def _fake_image(state: Path, digest: str = "abc123") -> Path:
    root = fake_guest_image(state, digest)
    (root / "rootfs/bin").mkdir(parents=True)
    (root / "rootfs/bin/busybox").write_bytes(b"\x7fELF busybox")
    micro = state / "images" / "kernel-micro-def456"
    micro.mkdir()
    (micro / "vmlinux").write_bytes(b"\x7fELF" + bytes(60))
    (micro / "config").write_text("CONFIG_HZ=250\n")  # the tick rate sets lapic_timer_period
    (micro / ".complete").write_text("")
    return root


def _driver(
    tmp_path: Path,
    *,
    options: dict[str, Any] | None = None,
    which: Callable[[str], str | None] = lambda b: f"/usr/bin/{b}",
    help_text: str = HELP,
    kvm: bool = False,
    host: HostProbe | None = None,
) -> QemuDriver:
    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        if list(argv[1:]) == ["-machine", "help"]:
            return 0, help_text, ""
        if list(argv[1:]) == ["-version"]:
            return 0, "QEMU emulator version 7.2.22\n", ""
        raise AssertionError(f"unexpected command {argv}")

    def accel_probe(_state: Path, _binary: str) -> AccelProbe:
        return AccelProbe(kvm, "kvm" if kvm else "tcg", "fake probe")

    ctx = DriverContext(tmp_path / "state", tmp_path / "work", "r1", options or {}, host or HostProbe())
    drv = QemuDriver(ctx, which=which, run=run, accel_probe=accel_probe, links=Links(FakeIp()))
    # the scripted probes below learn the TSC rate from a guest, as on a host that does not know it
    drv.microvm_probe = dataclasses.replace(drv.microvm_probe, host_tsc_khz=None)
    return drv


def test_unavailable_without_qemu_binary(tmp_path: Path) -> None:
    drv = _driver(tmp_path, which=lambda b: None if b == "qemu-system-x86_64" else f"/usr/bin/{b}")
    avail = drv.availability()
    assert not avail.ok and "qemu-system-x86_64 is not installed" in avail.reason
    assert "apt-get install qemu-system-x86" in avail.reason


def test_unavailable_without_image(tmp_path: Path) -> None:
    avail = _driver(tmp_path).availability()
    assert not avail.ok and "isobench image build" in avail.reason


def test_unavailable_with_a_corrupt_image(tmp_path: Path) -> None:
    root = _fake_image(tmp_path / "state")
    (root / "vmlinuz").write_bytes(b"not a kernel" * 100)
    avail = _driver(tmp_path).availability()
    assert not avail.ok and "is not a Linux kernel" in avail.reason


def test_kvm_requested_but_unusable(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    avail = _driver(tmp_path, options={"accel": "kvm", "machine": "q35"}).availability()
    assert not avail.ok and "KVM was requested but is unusable here: fake probe" in avail.reason


def test_microvm_requested_but_qemu_lacks_it(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    no_microvm = "\n".join(ln for ln in HELP.splitlines() if not ln.startswith("microvm"))
    drv = _driver(tmp_path, options={"machine": "microvm"}, help_text=no_microvm)
    avail = drv.availability()
    assert not avail.ok and "has no microvm machine type" in avail.reason
    auto = _driver(tmp_path, help_text=no_microvm)
    assert auto.machine() == MachineChoice("q35", "qemu-system-x86_64 has no microvm machine type")


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"drivers\.qemu\.machine"):
        _driver(tmp_path, options={"machine": "pc"})
    with pytest.raises(UsageError, match=r"drivers\.qemu\.accel"):
        _driver(tmp_path, options={"accel": "hvf"})


def test_available_q35_details_and_metadata(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path, options={"machine": "q35"})
    avail = drv.availability()
    assert avail.ok, avail.reason
    assert {k: avail.details[k] for k in ("accel", "machine", "image")} == {
        "accel": "tcg",
        "machine": "q35",
        "image": "abc123",
    }
    md = drv.metadata()
    assert (md["machine"], md["cpu_model"], md["qemu_version"]) == (
        "q35",
        "qemu64",
        "QEMU emulator version 7.2.22",
    )


def test_the_micro_kernel_is_the_default_and_every_sample_says_which_kernel(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    micro = _driver(tmp_path, options={"machine": "q35"})
    assert micro.availability().details["kernel_flavour"] == "micro"
    md = micro.metadata()
    assert (md["kernel_flavour"], md["kernel_build"]) == ("micro", "def456")
    assert any("loadable modules" in x for x in md["kernel_lacks"])
    stock = _driver(tmp_path, options={"machine": "q35", "kernel": "stock"}).metadata()
    assert (stock["kernel_flavour"], stock["kernel_build"]) == ("stock", "abc123")


def test_micro_kernel_missing_makes_the_driver_unavailable_with_the_fix(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    shutil.rmtree(tmp_path / "state/images/kernel-micro-def456")
    avail = _driver(tmp_path, options={"machine": "q35"}).availability()
    assert not avail.ok and "micro guest kernel is not built" in avail.reason
    assert _driver(tmp_path, options={"machine": "q35", "kernel": "stock"}).availability().ok


def test_microvm_with_the_micro_kernel_has_no_pci_at_all() -> None:
    argv = qemu_argv(
        _cfg(
            machine="microvm",
            virtio_mmio=True,
            kernel=Path("/k/vmlinux"),
            data_disk=Path("/v/d.img"),
            net=NetDevice("isobqabcdeft1", "52:54:00:d7:01:02"),
        )
    )
    assert _opt(argv, "-machine") == ["microvm,pit=on,pic=on,rtc=on,isa-serial=on"]
    assert _opt(argv, "-kernel") == ["/k/vmlinux"]
    assert _opt(argv, "-device") == [
        "virtio-blk-device,drive=root",
        "virtio-blk-device,drive=data",
        "virtio-serial-device",
        "virtserialport,chardev=agent,name=org.isobench.agent.0",
        "virtio-net-device,netdev=net0,mac=52:54:00:d7:01:02",
    ]
    with pytest.raises(ValueError, match="microvm"):
        _cfg(machine="q35", virtio_mmio=True)


#: A scripted boot that qemu ends with an error (as opposed to None: not ready in time).
CRASH = "<qemu exited>"


def _script_launch(drv: QemuDriver, outcomes: list[str | None]) -> list[MachineChoice]:
    """Replace real boots: each outcome is dmesg text (ready), None (not ready in time) or CRASH."""
    seen: list[MachineChoice] = []

    def launch(spec: SandboxSpec, choice: MachineChoice, timeout: float) -> Any:
        seen.append(choice)
        out = outcomes.pop(0)
        if out is None:
            raise BootTimeout("guest was not ready within 30s")
        if out == CRASH:
            raise SandboxError("guest died before ready (qemu exited with 1)")
        return FakeSandbox(script=[("", out)])  # every command prints the recorded dmesg

    drv._launch = launch  # type: ignore[method-assign,assignment]
    return seen


def test_auto_machine_learns_the_tsc_rate_then_verifies_microvm_and_caches(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    dmesg = (DATA / "dmesg-microvm-tcg.txt").read_text()
    seen = _script_launch(drv, [None, dmesg, "", "", ""])
    choice = drv.machine()
    assert (choice.machine, choice.tsc_khz, choice.cached) == ("microvm", 2596160, False)
    assert [c.tsc_khz for c in seen] == [None, None, 2596160, 2596160, 2596160]
    again = _driver(tmp_path)
    _script_launch(again, [])  # any boot would fail the test: the answer comes from the cache
    cached = again.machine()
    assert (cached.machine, cached.tsc_khz, cached.cached) == ("microvm", 2596160, True)


def test_auto_machine_falls_back_to_q35_when_a_verification_boot_fails(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [(DATA / "dmesg-microvm-tcg.txt").read_text(), "", None])
    choice = drv.machine()
    assert choice.machine == "q35" and "probe boot 2 failed" in choice.reason


def test_auto_machine_q35_when_microvm_never_boots(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [None, None, None])
    choice = drv.machine()
    assert choice.machine == "q35" and "no TSC rate learned" in choice.reason


def _cache(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "state" / "qemu").glob("machine-*.json")
    return found


def test_microvm_probes_that_only_timed_out_are_no_lasting_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug this host had: one slow probe (host under load) meant q35 for every later run."""
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [None, None, None])
    slow = drv.machine()
    assert (slow.machine, slow.outcome) == ("q35", "timeout")
    assert "a timeout is no verdict" in drv.availability().details["machine_reason"]
    # right after: this answer stands (no probe storm while the host is loaded), and says so
    soon = _driver(tmp_path)
    _script_launch(soon, [])
    again = soon.machine()
    assert (again.machine, again.cached, again.outcome) == ("q35", True, "timeout")
    assert "probed again after" in again.described()
    # later: probed again, and microvm wins once the guests boot in time
    t0 = again.checked_at
    monkeypatch.setattr("time.time", lambda: t0 + TIMEOUT_TTL_S + 1)
    later = _driver(tmp_path)
    dmesg = (DATA / "dmesg-microvm-tcg.txt").read_text()
    _script_launch(later, [dmesg, "", "", ""])
    assert (later.machine().machine, later.machine().cached) == ("microvm", False)
    assert '"outcome": "ok"' in _cache(tmp_path).read_text()


def test_a_microvm_boot_that_qemu_fails_is_cached_as_a_verdict_with_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [(DATA / "dmesg-microvm-tcg.txt").read_text(), CRASH])
    failed = drv.machine()
    assert (failed.machine, failed.outcome) == ("q35", "failed")
    t0 = failed.checked_at
    monkeypatch.setattr("time.time", lambda: t0 + 3 * 86400)
    later = _driver(tmp_path)
    _script_launch(later, [])  # a verdict: no boot, days later too
    cached = later.machine()
    assert (cached.machine, cached.cached, cached.outcome) == ("q35", True, "failed")
    shown = later.availability().details["machine_reason"]
    assert shown.startswith("microvm probe boot 1 failed") and "probed 3 days ago" in shown
    assert f"delete {_cache(tmp_path)} to probe again" in shown


def test_a_host_that_knows_its_tsc_rate_needs_no_learning_boot(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    drv.microvm_probe = dataclasses.replace(drv.microvm_probe, host_tsc_khz=2445426)
    seen = _script_launch(drv, ["", "", ""])  # the three verification boots only
    choice = drv.machine()
    assert (choice.machine, choice.tsc_khz) == ("microvm", 2445426)
    assert [c.tsc_khz for c in seen] == [2445426] * 3


def test_a_mixed_tsc_step_with_a_qemu_failure_is_a_verdict(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [None, CRASH, None])
    assert (drv.machine().machine, drv.machine().outcome) == ("q35", "failed")


def test_a_machine_cache_of_the_old_format_is_probed_again(tmp_path: Path) -> None:
    """The entry this host carried (written before outcomes existed) is read as absent."""
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path)
    _script_launch(drv, [None, None, None])
    drv.machine()
    old = {
        "machine": "q35",
        "reason": "microvm probe: no TSC rate learned (guest isobench-qemu-202611301054094453-microvm-probe-3"
        " (microvm) was not ready within 30s; last console line: '')",
        "tsc_khz": None,
    }
    _cache(tmp_path).write_text(json.dumps(old))
    again = _driver(tmp_path)
    _script_launch(again, [(DATA / "dmesg-microvm-tcg.txt").read_text(), "", "", ""])
    assert (again.machine().machine, again.machine().cached) == ("microvm", False)


def test_auto_machine_under_kvm_skips_the_tsc_step(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path, kvm=True)
    seen = _script_launch(drv, ["", "", ""])
    assert drv.machine().machine == "microvm" and [c.tsc_khz for c in seen] == [None, None, None]


def test_a_volume_that_is_no_directory_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path, options={"machine": "q35"})
    with pytest.raises(UsageError, match="not a directory"):
        drv.create(SandboxSpec("g", "r1", volume=tmp_path / "missing"))
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []


def test_gc_with_nothing_to_collect(tmp_path: Path) -> None:
    drv = _driver(tmp_path, host=HostProbe(root=tmp_path / "host"))
    (tmp_path / "host/proc").mkdir(parents=True)
    assert drv.gc("r1") == [] and drv.gc() == []


def test_kvm_request_raises_at_create_time_too(tmp_path: Path) -> None:
    _fake_image(tmp_path / "state")
    drv = _driver(tmp_path, options={"accel": "kvm", "machine": "q35"})
    with pytest.raises(DriverUnavailable, match="KVM was requested"):
        drv.create(SandboxSpec("g", "r1"))


def test_disk_bandwidth_is_qemus_block_throttle_on_both_drives() -> None:
    argv = qemu_argv(_cfg(data_disk=Path("/v/isobench-x.data.img"), io_bps=20 << 20))
    throttle = f"throttling.bps-read={20 << 20},throttling.bps-write={20 << 20}"
    drives = _opt(argv, "-drive")
    assert len(drives) == 2 and all(d.endswith("," + throttle) for d in drives)
    assert not any("throttling" in d for d in _opt(qemu_argv(_cfg()), "-drive"))


def test_a_sweep_spares_the_guests_of_a_live_run(tmp_path: Path) -> None:
    # Only a live run's guest is in the fake /proc: a dead one would get a real SIGKILL by its pid.
    drv = _driver(tmp_path, host=HostProbe(root=tmp_path / "host"))
    sparing = Sparing((LiveRun("r2", 42, "1", "/elsewhere"),))
    drv._ctx = dataclasses.replace(drv._ctx, sparing=sparing)
    guest = tmp_path / "host/proc/999999999"
    guest.mkdir(parents=True)
    (guest / "cmdline").write_bytes(b"qemu-system-x86_64\0-name\0isobench-qemu-r2-g0,debug-threads=on\0")
    assert drv.gc() == []
    assert sparing.spared_lines() == [
        "spared 1 resource of live run r2 (pid 42): qemu guest isobench-qemu-r2-g0"
    ]
