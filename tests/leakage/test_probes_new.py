"""The probes that try rather than read (seccomp, devices), the runtime's own /proc/1, host sockets
and neighbours, kernel identity gated on boot_id, and probes that could not run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from isobench.leakage import STATIC_PROBES, Canaries, Facts
from isobench.leakage.catalogue import first_disk
from isobench.leakage.catalogue.canaries import parse_proc1
from isobench.leakage.catalogue.hardware import cpu_mhz
from isobench.leakage.catalogue.surface import BLOCKED_CALLS
from isobench.leakage.runner import decide_static, parse_sections, split_sections, static_script

PROBES = {p.name: p for p in STATIC_PROBES}


def _facts(rec: dict[str, Any], **kw: Any) -> Facts:
    c = rec["canaries"]
    base = Facts(
        canaries=Canaries(**{**c, "problems": tuple(c["problems"])}),
        run_id=rec["run_id"],
        sandbox_name=rec["sandbox_name"],
        allowed_cpus=1,
        memory_mib=512,
        exec_seconds=rec["exec_seconds"],
        host_disk=rec["host_disk"],
    )
    return replace(base, **kw)


def _verdicts(rec: dict[str, Any], **changes: str) -> dict[str, Any]:
    inside = {**rec["inside"], **changes}
    res = decide_static(STATIC_PROBES, rec["host"], inside, _facts(rec), rec["statuses"])
    return {r.name: r.verdict for r in res}


@pytest.fixture
def container(recorded: Any) -> dict[str, Any]:
    """The own runtime, hardened, recorded before its seccomp allowlist and init fixes landed."""
    data: dict[str, Any] = recorded("static_container.json")
    return data


# --- probes that could not run ----------------------------------------------------------------


def test_sections_carry_each_scripts_exit_status() -> None:
    out = "@@isobench-probe a\nhello\n@@rc 0\n@@isobench-probe b\n@@rc 127\n@@isobench-probe c\n"
    assert parse_sections(out) == {"a": ("hello", 0), "b": ("", 127), "c": ("", None)}
    assert split_sections(out) == {"a": "hello", "b": "", "c": ""}


def test_script_prints_a_status_after_every_probe(static_host: dict[str, Any]) -> None:
    script = static_script(
        STATIC_PROBES, _facts({**static_host, "run_id": "r", "sandbox_name": "s", "host_disk": None})
    )
    assert script.count('echo "@@rc $?"') == len(STATIC_PROBES)


def test_missing_section_tool_and_stated_error_are_errors_not_closed(container: dict[str, Any]) -> None:
    inside = dict(container["inside"])
    del inside["kmsg"]  # the exec stopped before it
    statuses = {**container["statuses"], "proc_locks": 127}  # cat missing
    inside["seccomp"] = "Seccomp:\t2\n@@error no perl in the sandbox to try the syscalls with"
    res = decide_static(STATIC_PROBES, container["host"], inside, _facts(container), statuses)
    v = {r.name: r.verdict for r in res}
    assert v["kmsg"].status == "error" and "no output section" in v["kmsg"].evidence
    assert v["proc_locks"].status == "error" and "missing" in v["proc_locks"].evidence
    assert v["seccomp"].status == "error" and "no perl" in v["seccomp"].evidence


def test_unreadable_status_fields_are_errors(container: dict[str, Any]) -> None:
    v = _verdicts(container, capabilities="", no_new_privs="", uid_map="", namespaces="")
    for name in ("capabilities", "no_new_privs", "uid_map", "namespaces"):
        assert v[name].status == "error", (name, v[name])


# --- seccomp: the Docker-blocked calls are tried -------------------------------------------------


def test_host_reaches_every_blocked_call_the_kernel_has(static_host: dict[str, Any]) -> None:
    v = _verdicts_host(static_host)["seccomp"]
    assert v.leaks
    assert "Seccomp mode 0" in v.evidence
    assert "keyctl" in v.evidence and "mount" in v.evidence


def _verdicts_host(rec: dict[str, Any]) -> dict[str, Any]:
    res = decide_static(STATIC_PROBES, rec["host"], rec["inside"], _facts(rec), rec["statuses"])
    return {r.name: r.verdict for r in res}


def test_a_filter_that_leaves_blocked_calls_open_leaks(container: dict[str, Any]) -> None:
    """Seccomp mode 2 is on, yet personality(ADDR_NO_RANDOMIZE) ran and io_uring_setup reached the
    kernel (EFAULT): the old probe called this "closed"."""
    v = _verdicts(container)["seccomp"]
    assert "Seccomp mode 2" in v.evidence
    assert v.leaks
    assert "personality" in v.evidence and "io_uring_setup" in v.evidence
    assert "keyctl" not in v.evidence


def test_closed_only_when_every_call_is_blocked(container: dict[str, Any]) -> None:
    blocked = "Seccomp:\t2\n" + "\n".join(
        f"{n} -1 {1 if i % 2 else 38}" for i, (n, _nr, _a) in enumerate(BLOCKED_CALLS)
    )
    assert _verdicts(container, seccomp=blocked)["seccomp"].status == "closed"
    eacces = blocked.replace("bpf -1 1", "bpf -1 13").replace("bpf -1 38", "bpf -1 13")
    assert _verdicts(container, seccomp=eacces)["seccomp"].status == "closed"
    einval = blocked.replace("bpf -1 1", "bpf -1 22").replace("bpf -1 38", "bpf -1 22")
    assert _verdicts(container, seccomp=einval)["seccomp"].leaks


def test_answers_missing_for_some_calls_is_an_error(container: dict[str, Any]) -> None:
    partial = "\n".join(container["inside"]["seccomp"].splitlines()[:5])
    assert _verdicts(container, seccomp=partial)["seccomp"].status == "error"


# --- devices: mknod and nodes outside /dev -------------------------------------------------------


def test_host_opens_its_block_devices(static_host: dict[str, Any]) -> None:
    v = _verdicts_host(static_host)["devices"]
    assert v.leaks and "/dev/loop0" in v.evidence


@pytest.mark.parametrize(
    ("output", "status", "word"),
    [
        ("", "closed", "no host devices"),
        ("mknod mem\nmknod disk", "closed", "mknod mem, mknod disk allowed"),
        ("mknod mem\nopen mknod mem", "leaks", "/dev/mem made with mknod"),
        ("mknod disk\nopen mknod disk", "leaks", "host disk 254:0 made with mknod"),
        ("outside /data/sda 8:0", "leaks", "/data/sda (8:0) outside /dev"),
        ("outside /data/null 1:3\noutside /data/pts/0 88:0", "closed", "no host devices"),
        ("open /dev/kvm\nopen /dev/kvm", "leaks", "host devices that open: /dev/kvm"),
    ],
)
def test_devices_decisions(container: dict[str, Any], output: str, status: str, word: str) -> None:
    v = _verdicts(container, devices=output)["devices"]
    assert v.status == status
    assert word in v.evidence


def test_devices_script_makes_nodes_of_the_hosts_disk(container: dict[str, Any]) -> None:
    script = PROBES["devices"].script(_facts(container))
    assert 'mknod "$t/disk" b 254 0' in script and 'mknod "$t/mem" c 1 1' in script
    assert "find / -maxdepth 4" in script
    assert 'mknod "$t/disk"' not in PROBES["devices"].script(_facts(container, host_disk=None))


def test_first_disk_of_proc_partitions() -> None:
    assert (
        first_disk("major minor  #blocks  name\n\n 254        0  268435456 vda\n 254 1 100 vda1\n") == "254:0"
    )
    assert first_disk("major minor  #blocks  name\n\n 259 0 1 nvme0n1\n 259 1 1 nvme0n1p1\n") == "259:0"
    assert (
        first_disk("major minor  #blocks  name\n\n   7 0 1 loop0\n   8 0 1 sda\n") == "8:0"
    )  # loop devices are not the host's disk
    assert first_disk(None) is None


# --- the runtime's own /proc/1 --------------------------------------------------------------------


def test_own_runtime_init_shows_the_runners_environment_and_host_paths(container: dict[str, Any]) -> None:
    v = _verdicts(container)["proc1"]
    assert v.leaks
    assert "ISOBENCH_LEAK_CANARY=" in v.evidence
    assert "/var/lib/isobench" in v.evidence


def test_proc1_parser_and_a_clean_init(container: dict[str, Any]) -> None:
    got = parse_proc1(container["inside"]["proc1"])
    assert got["env"].startswith("ISOBENCH_LEAK_CANARY=")
    assert got["cmdline"].startswith("/var/lib/isobench/bin/isobench-ctr-")
    clean = "== env\n== cmdline /sbin/init-shim\n== exe /sbin/init-shim\n== exe-here yes"
    assert _verdicts(container, proc1=clean)["proc1"].status == "closed"
    sealed = "== env\n== cmdline init\n== exe /memfd:isobench-ctr (deleted)\n== exe-here no"
    assert _verdicts(container, proc1=sealed)["proc1"].status == "closed"
    host_binary = "== env\n== cmdline init\n== exe /opt/runtime/bin/shim\n== exe-here no"
    v = _verdicts(container, proc1=host_binary)["proc1"]
    assert v.leaks and "not in the sandbox" in v.evidence


# --- host sockets and neighbours ------------------------------------------------------------------


def test_host_sockets_and_arp_leak_on_the_host_only(
    static_host: dict[str, Any], container: dict[str, Any]
) -> None:
    h = _verdicts_host(static_host)
    c = _verdicts(container)
    for name in ("net_tcp", "net_udp", "arp"):
        assert h[name].leaks, (name, h[name])
        assert c[name].status == "closed", (name, c[name])
    port = static_host["canaries"]["tcp_port"]
    assert f"127.0.0.1:{port}" in h["net_tcp"].evidence


# --- kernel identity is gated on boot_id ------------------------------------------------------------


def test_guest_booting_the_hosts_kernel_package_does_not_leak_its_release(container: dict[str, Any]) -> None:
    same_release = {
        "boot_id": "0f0e0d0c-1111-2222-3333-444455556666",
        "kernel_release": container["host"]["kernel_release"],
        "kernel_version": container["host"]["kernel_version"],
        "cmdline": container["host"]["cmdline"],
        "cpuinfo_mhz": container["inside"]["cpuinfo_mhz"],
    }
    v = _verdicts(container, **same_release)
    for name in ("kernel_release", "kernel_version", "cmdline", "cpuinfo_mhz"):
        assert v[name].status == "closed", (name, v[name])
        assert "own kernel" in v[name].evidence
    shared = _verdicts(container)
    for name in ("kernel_release", "kernel_version", "cmdline", "cpuinfo_mhz"):
        assert shared[name].leaks, name


def test_cpu_mhz_within_one_percent(container: dict[str, Any]) -> None:
    host = cpu_mhz(container["host"]["cpuinfo_mhz"])
    assert host is not None
    assert _verdicts(container, cpuinfo_mhz=f"cpu MHz\t\t: {host * 1.009:.3f}")["cpuinfo_mhz"].leaks
    assert not _verdicts(container, cpuinfo_mhz=f"cpu MHz\t\t: {host * 1.011:.3f}")["cpuinfo_mhz"].leaks
