"""The kernel's privilege model as the sandbox holds it: capabilities, seccomp, uid map, devices,
writable and masked paths, kernel symbols and modules, namespaces. Counted on a shared kernel only."""

from __future__ import annotations

import re

from isobench.leakage import rules
from isobench.leakage.catalogue.base import (
    Decide,
    Facts,
    StaticProbe,
    host_file,
    no_host_read,
    own_kernel,
    script,
)
from isobench.leakage.host import HostView
from isobench.leakage.rules import Verdict

__all__ = ["PROBES"]


# --- privileges ------------------------------------------------------------------------------

#: Capabilities that reach the host from a shared kernel (bit numbers from linux/capability.h).
_DANGEROUS_CAPS = {
    1: "DAC_OVERRIDE",
    2: "DAC_READ_SEARCH",
    12: "NET_ADMIN",
    16: "SYS_MODULE",
    17: "SYS_RAWIO",
    19: "SYS_PTRACE",
    21: "SYS_ADMIN",
    22: "SYS_BOOT",
    27: "MKNOD",
    34: "SYSLOG",
    38: "PERFMON",
    39: "BPF",
}


def _status_field(text: str | None, key: str) -> str | None:
    m = re.search(rf"^{key}:\s*(\S+)", text or "", re.M)
    return m.group(1) if m else None


def _capabilities(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    eff = _status_field(inside, "CapEff")
    if eff is None:
        return rules.error("presence", "CapEff not readable in /proc/self/status inside")
    bits = int(eff, 16)
    found = [name for bit, name in sorted(_DANGEROUS_CAPS.items()) if bits >> bit & 1]
    v = rules.presence(found, what=f"effective capabilities (CapEff={eff})")
    return v


def _no_new_privs(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    nnp = _status_field(inside, "NoNewPrivs")
    if nnp is None:
        return rules.error("presence", "NoNewPrivs not readable in /proc/self/status inside")
    return rules.presence(["NoNewPrivs 0"] if nnp == "0" else [], what="setuid escalation possible")


def _host_lsm(hv: HostView, _f: Facts) -> str | None:
    label = hv.read("proc/self/attr/current")
    return label.strip("\0\n ") if label else None


def _lsm_label(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    if not host:
        return rules.not_applicable("equal", "host has no LSM label (no AppArmor/SELinux active)")
    return rules.equal(host.strip("\0\n "), (inside or "").strip("\0\n "), what="LSM label")


def _uid_map(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    for line in (inside or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "0":
            return Verdict("presence", True, f"uid 0 inside is host uid 0: {' '.join(parts)}")
    if not (inside or "").strip():
        return rules.error("presence", "/proc/self/uid_map not readable inside")
    return Verdict("presence", False, f"root is remapped: {' '.join((inside or '').split())}")


def _listed(what: str) -> Decide:
    def decide(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
        found = [ln.strip() for ln in (inside or "").splitlines() if ln.strip()]
        return rules.presence(found[:8], what=what)

    return decide


def _namespaces(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    def parse(text: str | None) -> dict[str, str]:
        out = {}
        for line in (text or "").splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
        return out

    h, i = parse(host), parse(inside)
    if not h:
        return rules.not_applicable("equal", "host namespaces unreadable")
    counted = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")
    shared = [n for n in counted if n in h and h[n] == i.get(n)]
    if not i:
        return rules.error("equal", "namespace links in /proc/self/ns not readable inside")
    return rules.presence(shared, what="namespaces shared with the host")


def _host_namespaces(hv: HostView, _f: Facts) -> str | None:
    lines = []
    for n in ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts", "time"):
        link = hv.readlink(f"proc/self/ns/{n}")
        if link:
            lines.append(f"{n} {link}")
    return "\n".join(lines) or None


def _masked_host(hv: HostView, _f: Facts) -> str | None:
    readable = [p for p in _MASKED if _host_readable(hv, p)]
    return "\n".join(readable) or None


def _host_readable(hv: HostView, p: str) -> bool:
    path = hv.path(p)
    try:
        if path.is_dir():
            return any(path.iterdir())
        with open(path, "rb") as fh:
            return bool(fh.read(1))
    except OSError:
        return False


def _masked_paths(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    if not host:
        return rules.not_applicable("presence", "host exposes none of the usually masked paths")
    on_host = set(host.split())
    found = [p for p in (inside or "").split() if p in on_host]
    return rules.presence(found, what="masked paths readable")


def _kallsyms(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    h = (host or "").split()
    if not h or set(h[0]) == {"0"}:
        return rules.not_applicable("equal", "host kallsyms addresses hidden")
    i = (inside or "").split()
    if not i:
        return Verdict("equal", False, "no _stext in kallsyms inside")
    if set(i[0]) == {"0"}:
        return Verdict("equal", False, "kallsyms addresses zeroed inside")
    return rules.equal(h[0], i[0], what="_stext address")


def _host_stext(hv: HostView, _f: Facts) -> str | None:
    text = hv.read("proc/kallsyms") or ""
    m = re.search(r"^([0-9a-f]+) \w _stext$", text, re.M)
    return m.group(1) if m else None


def _modules(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    if not (host or "").strip():
        return rules.not_applicable("equal", "host kernel has no loadable modules listed")
    return rules.equal(host, inside, what="module list")


#: Paths runc/Docker mask by default (bind /dev/null or an empty read-only tmpfs over them).
_MASKED = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
#: Paths runc/Docker make read-only. Opening for append writes nothing, so testing is harmless.
_WRITABLE_TESTS = (
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/vm/drop_caches",
    "/proc/sysrq-trigger",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/fs/cgroup/cgroup.procs",
)


def _masked_script(_f: Facts) -> str:
    paths = " ".join(_MASKED)
    return (
        f"for p in {paths}; do "
        'if [ -d "$p" ]; then [ -n "$(ls -A "$p" 2>/dev/null | head -n 1)" ] && echo "$p"; '
        'elif [ -e "$p" ]; then [ "$(head -c 1 "$p" 2>/dev/null | wc -c)" -gt 0 ] && echo "$p"; fi; done'
    )


def _writable_script(_f: Facts) -> str:
    paths = " ".join(_WRITABLE_TESTS)
    return f'for p in {paths}; do [ -e "$p" ] && ( : >> "$p" ) 2>/dev/null && echo "$p"; done'


#: Host control and kernel attack surface.
PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "capabilities",
        "presence",
        3,
        "dangerous effective capabilities on the host kernel",
        script("grep '^Cap' /proc/self/status"),
        no_host_read,
        own_kernel(_capabilities),
    ),
    StaticProbe(
        "no_new_privs",
        "presence",
        1,
        "no_new_privs not set on the host kernel",
        script("grep '^NoNewPrivs:' /proc/self/status"),
        no_host_read,
        own_kernel(_no_new_privs),
    ),
    StaticProbe(
        "lsm_label",
        "equal",
        1,
        "same LSM label as the host (not confined further)",
        script("cat /proc/self/attr/current"),
        _host_lsm,
        own_kernel(_lsm_label),
    ),
    StaticProbe(
        "uid_map",
        "presence",
        3,
        "root inside is root on the host kernel",
        script("cat /proc/self/uid_map"),
        no_host_read,
        own_kernel(_uid_map),
    ),
    StaticProbe(
        "writable_paths",
        "presence",
        3,
        "kernel tunables usually read-only are writable",
        _writable_script,
        no_host_read,
        own_kernel(_listed("writable kernel paths")),
    ),
    StaticProbe(
        "masked_paths",
        "presence",
        3,
        "paths usually masked (/proc/kcore, timer_list...) readable",
        _masked_script,
        _masked_host,
        own_kernel(_masked_paths),
    ),
    StaticProbe(
        "kallsyms",
        "equal",
        3,
        "host kernel symbol addresses (KASLR) readable",
        script("grep -m 1 ' _stext$' /proc/kallsyms"),
        _host_stext,
        own_kernel(_kallsyms),
    ),
    StaticProbe(
        "modules",
        "equal",
        2,
        "the host's module list",
        script("cat /proc/modules"),
        host_file("proc/modules"),
        _modules,
    ),
    StaticProbe(
        "namespaces",
        "equal",
        1,
        "namespaces shared with the host (same ns inode)",
        script(
            'for n in cgroup ipc mnt net pid user uts time; do echo "$n $(readlink /proc/self/ns/$n)"; done'
        ),
        _host_namespaces,
        own_kernel(_namespaces),
    ),
)
