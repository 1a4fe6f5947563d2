"""Static probes decided on readings recorded through the host driver, and on guest-like readings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from isobench.leakage import STATIC_PROBES, Canaries, Facts, HostView
from isobench.leakage.runner import decide_static, split_sections, static_script


def _facts(rec: dict[str, Any], **kw: Any) -> Facts:
    c = rec["canaries"]
    canaries = Canaries(**{**c, "problems": tuple(c["problems"])})
    base = Facts(
        canaries=canaries,
        run_id=rec.get("run_id", "rec1"),
        sandbox_name=rec.get("sandbox_name", "isobench-rec1-leak"),
        allowed_cpus=1,
        memory_mib=512,
        exec_seconds=rec["exec_seconds"],
        host_disk=rec.get("host_disk"),
    )
    return replace(base, **kw)


def _verdicts(rec: dict[str, Any], inside: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    readings = inside if inside is not None else rec["inside"]
    res = decide_static(STATIC_PROBES, rec["host"], readings, _facts(rec, **kw), rec.get("statuses"))
    return {r.name: r.verdict for r in res}


def test_catalogue_has_unique_names_valid_rules_and_weights() -> None:
    names = [p.name for p in STATIC_PROBES]
    assert len(names) == len(set(names))
    assert len(names) >= 30
    for p in STATIC_PROBES:
        assert p.rule in ("equal", "canary", "correlation", "presence")
        assert p.weight in (1, 2, 3)


def test_host_recording_leaks_everything_applicable(static_host: dict[str, Any]) -> None:
    v = _verdicts(static_host)
    leaking = {n for n, x in v.items() if x.applicable and x.leaks}
    for name in (
        "boot_id",
        "uptime",
        "btime",
        "kernel_release",
        "timer_list",
        "hostname",
        "host_process_names",
        "host_pids",
        "proc_locks",
        "host_files",
        "mount_canary",
        "net_devices",
        "unix_sockets",
        "gateway",
        "kmsg",
        "capabilities",
        "seccomp",
        "no_new_privs",
        "uid_map",
        "namespaces",
        "kallsyms",
        "masked_paths",
        "writable_paths",
        "cpu_topology",
        "memory_total",
        "cmdline",
        "net_tcp",
        "net_udp",
        "arp",
        "devices",
        "cpuinfo_mhz",
    ):
        assert name in leaking, (name, v[name])
    # The sandbox id is nowhere in a host process's cgroup: nothing to see there; and the host's
    # own /proc/1 is its init, which never saw the runner's environment.
    assert not v["cgroup_id"].leaks
    assert v["proc1"].status == "closed", v["proc1"]
    assert all(x.status != "error" for x in v.values()), {n: x for n, x in v.items() if x.error}
    # This host has no modules, no sched_debug, no LSM, no RAPL: those are not applicable, not "safe".
    for name in ("modules", "sched_debug", "lsm_label", "rapl"):
        assert not v[name].applicable


def test_canary_evidence_names_what_was_seen(static_host: dict[str, Any]) -> None:
    v = _verdicts(static_host)
    token = static_host["canaries"]["token"]
    assert token in v["host_process_names"].evidence
    assert static_host["canaries"]["lock_id"] in v["proc_locks"].evidence
    assert str(static_host["canaries"]["process_pid"]) in v["host_pids"].evidence


def _guest_inside(rec: dict[str, Any]) -> dict[str, str]:
    """What a guest with its own 6.1 kernel shows: own boot id and clocks, full root caps, initial
    namespaces (whose inode numbers every kernel shares), no host canaries."""
    inside = dict(rec["inside"])
    inside.update(
        boot_id="0f0e0d0c-1111-2222-3333-444455556666",
        uptime="12.34 20.00",
        btime="btime 1795823990",
        kernel_release="6.1.0-56-cloud-amd64",
        kernel_version="Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)",
        timer_list="now at 12340000000 nsecs",
        hostname="isobench-rec1-leak",
        host_process_names="",
        host_pids="",
        proc_locks="1: FLOCK  ADVISORY  WRITE 200 fe:01:4242 0 EOF",
        host_files="",
        mount_canary="22 1 254:0 / / ro,relatime - ext4 /dev/vda ro",
        net_devices="lo\neth0",
        unix_sockets="Num RefCount Protocol Flags Type St Inode Path",
        gateway="Iface\tDestination\tGateway\nlo\t0000007F\t00000000",
        kmsg="",
        mountinfo_host_paths="22 1 254:0 / / ro,relatime - ext4 /dev/vda ro",
        cpu_topology="1\n0\n0",
        memory_total="MemTotal:         480000 kB",
        cmdline="console=ttyS0 root=/dev/vda ro",
        net_tcp="  sl  local_address rem_address   st",
        net_udp="  sl  local_address rem_address   st",
        arp="IP address       HW type     Flags       HW address            Mask     Device",
        proc1="== env\n== cmdline /sbin/isobench-agent\n== exe /sbin/isobench-agent\n== exe-here yes",
        cpuinfo_mhz="cpu MHz\t\t: 2445.426",
    )
    return inside


def test_guest_readings_do_not_leak_even_with_root_caps_and_initial_namespaces(
    static_host: dict[str, Any],
) -> None:
    inside = _guest_inside(static_host)
    # The guest's own root: all capabilities, identity uid_map, devices of its own: the same text
    # as the host recording, but about another kernel.
    v = _verdicts(static_host, inside)
    leaking = sorted(n for n, x in v.items() if x.applicable and x.leaks)
    assert leaking == []
    assert "own kernel" in v["capabilities"].evidence
    assert "own kernel" in v["namespaces"].evidence


def test_hardened_container_readings(static_host: dict[str, Any]) -> None:
    """Same kernel (same boot id), but dropped caps, a seccomp filter, remapped root, masks."""
    inside = dict(static_host["inside"])
    inside.update(
        capabilities="CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb",
        seccomp="Seccomp:\t2",
        no_new_privs="NoNewPrivs:\t1",
        uid_map="         0     100000      65536",
        devices="",
        writable_paths="",
        masked_paths="",
        host_process_names="",
        host_pids="",
        proc_locks="",
        namespaces="cgroup cgroup:[1]\nipc ipc:[2]\nmnt mnt:[3]\nnet net:[4]\npid pid:[5]\nuser user:[6]\nuts uts:[7]",
    )
    v = _verdicts(static_host, inside)
    assert v["boot_id"].leaks  # a shared kernel cannot hide its boot id without masking /proc/sys
    # a80425fb = Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    # NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP; DAC_OVERRIDE and MKNOD remain.
    assert v["capabilities"].leaks
    assert "SYS_ADMIN" not in v["capabilities"].evidence
    for name in (
        "seccomp",
        "no_new_privs",
        "uid_map",
        "devices",
        "writable_paths",
        "masked_paths",
        "host_process_names",
        "host_pids",
        "proc_locks",
        "namespaces",
    ):
        assert not v[name].leaks, (name, v[name])


def test_unknown_kernel_sharing_keeps_presence_verdicts(static_host: dict[str, Any]) -> None:
    inside = dict(static_host["inside"])
    inside["boot_id"] = ""
    v = _verdicts(static_host, inside)
    assert not v["boot_id"].leaks
    assert v["capabilities"].leaks


@pytest.mark.parametrize(
    ("probe", "inside", "leaks"),
    [
        ("uptime", "5000.00 1.0", False),
        ("cpu_topology", "2\n0-1\n0", True),
        ("cpu_topology", "1\n0\n0", False),
        ("memory_total", "MemTotal:  530000 kB", False),
        ("kallsyms", "0000000000000000 T _stext", False),
        ("gateway", "Iface\tDestination\tGateway\neth0\t00000000\t010011AC", False),
    ],
)
def test_single_probe_decisions(static_host: dict[str, Any], probe: str, inside: str, leaks: bool) -> None:
    readings = dict(static_host["inside"])
    readings[probe] = inside
    assert _verdicts(static_host, readings)[probe].leaks is leaks


def test_static_script_sections_round_trip(static_host: dict[str, Any]) -> None:
    script = static_script(STATIC_PROBES, _facts(static_host))
    fake_out = "".join(f"@@isobench-probe {p.name}\nline of {p.name}\n" for p in STATIC_PROBES)
    sections = split_sections(fake_out)
    assert list(sections) == [p.name for p in STATIC_PROBES]
    assert sections["boot_id"] == "line of boot_id"
    assert script.count("@@isobench-probe") == len(STATIC_PROBES)


def test_host_side_reads_go_through_the_root_seam(tmp_path: Path, static_host: dict[str, Any]) -> None:
    """HostView takes a root: a fake procfs tree stands in for the host."""
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("11111111-2222-3333-4444-555555555555\n")
    (tmp_path / "proc/stat").write_text("cpu  1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n")
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:  8000000 kB\n")
    (tmp_path / "proc/keys").write_text("1 key\n")
    hv = HostView(tmp_path)
    facts = _facts(static_host)
    probes = {p.name: p for p in STATIC_PROBES}
    assert probes["boot_id"].host(hv, facts) == "11111111-2222-3333-4444-555555555555\n"
    assert probes["btime"].host(hv, facts) == "1700000000"
    assert probes["cpu_topology"].host(hv, facts) == "4"
    assert probes["memory_total"].host(hv, facts) == "8000000"
    assert probes["masked_paths"].host(hv, facts) == "/proc/keys"
    assert probes["timer_list"].host(hv, facts) is None  # no timer_list on this "host": not applicable
    assert probes["kallsyms"].host(hv, facts) is None
