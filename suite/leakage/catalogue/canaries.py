"""Canaries the host plants (a process, a lock, a file, a mount, a link, a socket, a log line),
and whether the sandbox sees them."""

from __future__ import annotations

from isobench.leakage import rules
from isobench.leakage.catalogue.base import Decide, Facts, StaticProbe, no_host_read, script
from isobench.leakage.host import HostView
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
        "cgroup_id",
        "canary",
        1,
        "the sandbox's id shows in /proc/self/cgroup",
        script("cat /proc/self/cgroup"),
        no_host_read,
        _cgroup_id,
    ),
)
