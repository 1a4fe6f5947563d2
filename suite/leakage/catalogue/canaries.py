"""Canaries the host plants (a process, a lock, a file, a mount, a link, a socket, a log line),
and whether the sandbox sees them."""

from __future__ import annotations

from isobench.leakage import rules
from isobench.leakage.catalogue.base import (
    Decide,
    Facts,
    StaticProbe,
    host_file,
    no_host_read,
    script,
    table_rows,
)
from isobench.leakage.host import ENV_CANARY, HostView
from isobench.leakage.rules import Verdict

__all__ = ["PROBES"]


# --- canaries --------------------------------------------------------------------------------


def _canary(attr: str, where: str) -> Decide:
    def decide(_host: str | None, inside: str | None, f: Facts) -> Verdict:
        return rules.canary(getattr(f.canaries, attr), inside, where=where)

    return decide


def _host_pids(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    c = f.canaries
    if c.process_pid is None or c.process_name is None:
        return rules.not_applicable("canary", "no canary process")
    if (inside or "").strip() == c.process_name:
        return Verdict("canary", True, f"host pid {c.process_pid} resolves to the canary {c.process_name}")
    return Verdict("canary", False, f"host pid {c.process_pid} is not the canary inside")


def _proc_locks(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    lid = f.canaries.lock_id
    if lid is None:
        return rules.not_applicable("canary", "no canary lock")
    for line in (inside or "").splitlines():
        if lid in line.split():
            return Verdict("canary", True, f"host flock {lid} listed: {line.strip()}")
    return Verdict("canary", False, f"host flock {lid} not in /proc/locks")


def _sched_debug_host(hv: HostView, _f: Facts) -> str | None:
    for p in ("proc/sched_debug", "sys/kernel/debug/sched/debug"):
        text = hv.read(p)
        if text:
            return p
    return None


def _sched_debug(host: str | None, inside: str | None, f: Facts) -> Verdict:
    if host is None:
        return rules.not_applicable(
            "canary", "host exposes neither /proc/sched_debug nor debugfs sched/debug"
        )
    return rules.canary(f.canaries.process_name, inside, where="sched_debug")


def _cgroup_id(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    for line in (inside or "").splitlines():
        for mark in (f.sandbox_name, f.run_id):
            if mark and mark in line:
                return Verdict("canary", True, f"sandbox id in /proc/self/cgroup: {line.strip()}")
    return Verdict("canary", False, "no sandbox or run id in /proc/self/cgroup")


def _socket(attr: str, where: str) -> Decide:
    """A loopback socket the host holds: /proc/net/{tcp,udp} print it as 0100007F:<PORT in hex>."""

    def decide(_host: str | None, inside: str | None, f: Facts) -> Verdict:
        port = getattr(f.canaries, attr)
        if port is None:
            return rules.not_applicable("canary", f"no canary socket for {where}")
        token = f"0100007F:{port:04X}"
        for line in (inside or "").splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1] == token:
                return Verdict(
                    "canary", True, f"host socket 127.0.0.1:{port} listed in {where}: {line.strip()}"
                )
        return Verdict("canary", False, f"host socket 127.0.0.1:{port} not in {where}")

    return decide


def _arp_entries(text: str | None) -> set[tuple[str, str]]:
    """(IP, MAC) of each complete neighbour entry."""
    return {(p[0], p[3]) for p in table_rows(text) if len(p) >= 4 and p[3] != "00:00:00:00:00:00"}


def _arp(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    h = _arp_entries(host)
    if not h:
        return rules.not_applicable("equal", "host ARP table is empty")
    same = sorted(h & _arp_entries(inside))
    if same:
        return Verdict(
            "equal", True, "host neighbours in /proc/net/arp: " + ", ".join(f"{ip} {mac}" for ip, mac in same)
        )
    return Verdict("equal", False, f"none of the host's {len(h)} ARP entries inside")


#: What /proc/1 of the sandbox says about the runtime that started it (the runner's environment,
#: a host binary's path). Sections: "== env", "== cmdline", "== exe <path>", "== exe-here yes|no".
_PROC1 = (
    f'echo "== env"; tr "\\0" "\\n" < /proc/1/environ 2>/dev/null | grep -F {ENV_CANARY}; '
    'echo "== cmdline $(tr "\\0" " " < /proc/1/cmdline 2>/dev/null)"; '
    'e=$(readlink /proc/1/exe 2>/dev/null); echo "== exe $e"; '
    'if [ -n "$e" ]; then if [ -e "$e" ]; then echo "== exe-here yes"; else echo "== exe-here no"; fi; fi'
)


def parse_proc1(text: str | None) -> dict[str, str]:
    """The sections of the proc1 probe: env (the canary line, if any), cmdline, exe, exe-here."""
    out: dict[str, str] = {}
    section = None
    for line in (text or "").splitlines():
        if line.startswith("== "):
            key, _, rest = line[3:].partition(" ")
            section = key
            out[key] = rest.strip()
        elif section == "env" and line.strip():
            out["env"] = (out["env"] + "\n" + line.strip()).strip()
    return out


def _proc1(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    got = parse_proc1(inside)
    found: list[str] = []
    env = f.canaries.env
    if env and env in got.get("env", ""):
        found.append(f"the runner's environment ({ENV_CANARY}={env}) in /proc/1/environ")
    marks = ("/var/lib/isobench", f"isobench-{f.run_id}", "upperdir=", "lowerdir=")
    for key in ("cmdline", "exe"):
        hit = [m for m in marks if m in got.get(key, "")]
        if hit:
            found.append(f"host path in /proc/1/{key}: {got[key][:120]}")
    exe = got.get("exe", "")
    if got.get("exe-here") == "no" and exe.startswith("/") and not exe.startswith("/memfd:"):
        line = f"/proc/1/exe names a file that is not in the sandbox: {exe[:120]}"
        if not any(exe[:120] in x for x in found):
            found.append(line)
    if not got:
        return rules.error("presence", "the /proc/1 probe printed nothing")
    if not env and not found:
        return rules.not_applicable(
            "presence", "no environment canary was planted, and /proc/1 shows no host path"
        )
    return rules.presence(found, what="runtime traces in /proc/1")


#: Cross-tenant observation: what the host does is visible inside.
PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "host_process_names",
        "canary",
        2,
        "a host process (canary name) is listed in /proc",
        lambda f: f"cat /proc/[0-9]*/comm 2>/dev/null | grep -F {f.canaries.token}",
        no_host_read,
        _canary("process_name", "/proc/*/comm"),
    ),
    StaticProbe(
        "host_pids",
        "canary",
        2,
        "the canary's host PID resolves inside",
        lambda f: f"cat /proc/{f.canaries.process_pid or 0}/comm",
        no_host_read,
        _host_pids,
    ),
    StaticProbe(
        "sched_debug",
        "canary",
        2,
        "host process names in sched_debug",
        lambda f: (
            f"cat /proc/sched_debug /sys/kernel/debug/sched/debug 2>/dev/null | grep -F {f.canaries.token}"
        ),
        _sched_debug_host,
        _sched_debug,
    ),
    StaticProbe(
        "proc_locks",
        "canary",
        2,
        "a host flock (canary file) is listed in /proc/locks",
        script("cat /proc/locks"),
        no_host_read,
        _proc_locks,
    ),
    StaticProbe(
        "host_files",
        "canary",
        2,
        "a host file (canary) is readable",
        lambda f: f"cat {f.canaries.file_path or '/nonexistent'}",
        no_host_read,
        _canary("token", "host /tmp"),
    ),
    StaticProbe(
        "mount_canary",
        "canary",
        2,
        "a host mount (canary tmpfs) shows in mountinfo",
        script("cat /proc/self/mountinfo"),
        no_host_read,
        _canary("mount_source", "mountinfo"),
    ),
    StaticProbe(
        "net_devices",
        "canary",
        2,
        "a host network interface (canary dummy) is visible",
        script("ls /sys/class/net; cat /proc/net/dev"),
        no_host_read,
        _canary("netdev", "network devices"),
    ),
    StaticProbe(
        "unix_sockets",
        "canary",
        2,
        "a host abstract unix socket (canary) is listed",
        script("cat /proc/net/unix"),
        no_host_read,
        _canary("unix_socket", "/proc/net/unix"),
    ),
    StaticProbe(
        "kmsg",
        "canary",
        3,
        "the kernel log (dmesg, /dev/kmsg) shows a host canary line",
        lambda f: (
            f"dmesg 2>/dev/null | grep -F {f.canaries.token} || "
            f"timeout 1 cat /dev/kmsg 2>/dev/null | grep -m 1 -F {f.canaries.token}"
        ),
        no_host_read,
        _canary("kmsg", "kernel log"),
    ),
    StaticProbe(
        "net_tcp",
        "canary",
        2,
        "a host TCP listener (canary on 127.0.0.1) is listed in /proc/net/tcp",
        script("cat /proc/net/tcp"),
        no_host_read,
        _socket("tcp_port", "/proc/net/tcp"),
    ),
    StaticProbe(
        "net_udp",
        "canary",
        2,
        "a host UDP socket (canary on 127.0.0.1) is listed in /proc/net/udp",
        script("cat /proc/net/udp"),
        no_host_read,
        _socket("udp_port", "/proc/net/udp"),
    ),
    StaticProbe(
        "arp",
        "equal",
        1,
        "the host's ARP neighbours are in /proc/net/arp",
        script("cat /proc/net/arp"),
        host_file("proc/net/arp"),
        _arp,
    ),
    StaticProbe(
        "proc1",
        "presence",
        2,
        "the sandbox's own /proc/1 (environ, cmdline, exe) shows the runner's environment or host paths",
        script(_PROC1),
        no_host_read,
        _proc1,
    ),
    StaticProbe(
        "cgroup_id",
        "canary",
        1,
        "the sandbox's id shows in /proc/self/cgroup",
        script("cat /proc/self/cgroup"),
        no_host_read,
        _cgroup_id,
    ),
)
