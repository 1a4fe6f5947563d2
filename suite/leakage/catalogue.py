"""The probe catalogue: what each probe reads inside, what the host reads, and how it decides.

Static probes run together in ONE exec (each prints its own section), with the host's readings
taken just before. Correlation probes are in :mod:`isobench.leakage.correlation`.

Weights (the leak score is the weighted share of applicable probes that leak, in %):

- **3, host control / kernel attack surface**: capabilities, uid_map, devices, writable_paths,
  masked_paths, kallsyms, kmsg. A leak here helps an attacker act on the host, not just watch it.
- **2, cross-tenant observation**: the canaries (host_process_names, host_pids, sched_debug,
  proc_locks, host_files, mount_canary, net_devices, unix_sockets), modules, timer_list and every
  correlation channel. A leak here shows what other tenants or the host are doing.
- **1, fingerprinting**: boot_id, uptime, btime, kernel_release, kernel_version, hostname, gateway,
  mountinfo_host_paths, cgroup_id, namespaces, seccomp, no_new_privs, lsm_label, cpu_topology,
  memory_total, cpufreq, thermal, rapl. Identifies the host or says the sandbox is weak.

timer_list counts 2: beyond the host's clock it lists every pending host timer.

Probes about the kernel's own privilege model (capabilities, seccomp, namespaces, devices, masked
and writable paths...) only count when the sandbox shares the host's kernel (its boot_id equals the
host's): root inside a guest holds every capability of *its own* kernel, and every kernel gives its
initial namespaces the same inode numbers.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from isobench.leakage import rules
from isobench.leakage.host import Canaries, HostView
from isobench.leakage.rules import Rule, Verdict

__all__ = ["STATIC_PROBES", "Facts", "StaticProbe", "decide_shared_kernel"]


@dataclass(frozen=True)
class Facts:
    """Everything a decision may use besides the two readings."""

    canaries: Canaries
    run_id: str
    sandbox_name: str
    allowed_cpus: int
    memory_mib: int
    #: Seconds the probing exec took: the tolerance of clock comparisons.
    exec_seconds: float = 1.0
    #: Does the sandbox run on the host's kernel? None until boot_id is decided.
    shared_kernel: bool | None = None


Script = Callable[[Facts], str]
HostRead = Callable[[HostView, Facts], str | None]
Decide = Callable[[str | None, str | None, Facts], Verdict]


@dataclass(frozen=True)
class StaticProbe:
    name: str
    rule: Rule
    weight: int
    description: str
    script: Script
    host: HostRead
    decide: Decide


def _const(text: str) -> Script:
    return lambda _f: text


def _read(path: str) -> HostRead:
    return lambda hv, _f: hv.read(path)


def _none(_hv: HostView, _f: Facts) -> str | None:
    return None


def _own_kernel(decide: Decide) -> Decide:
    """Only a shared kernel makes these host facts; a guest's answer is about its own kernel."""

    def wrapped(host: str | None, inside: str | None, facts: Facts) -> Verdict:
        v = decide(host, inside, facts)
        if facts.shared_kernel is False and v.leaks:
            return Verdict(v.rule, False, "own kernel (boot_id differs from host): " + v.evidence)
        return v

    return wrapped


def _first_float(text: str | None) -> float | None:
    if not text:
        return None
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(m.group()) if m else None


# --- identity of the kernel and the machine ------------------------------------------------


def decide_shared_kernel(host: str | None, inside: str | None) -> bool | None:
    """boot_id is random per boot of a kernel: equal means the same running kernel."""
    h, i = (host or "").strip(), (inside or "").strip()
    if not h or not i:
        return None
    return h == i


def _boot_id(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    return rules.equal(host, inside, what="boot_id")


def _uptime(host: str | None, inside: str | None, f: Facts) -> Verdict:
    # Host read just before the exec; inside read during it: they may differ by the exec's duration.
    h = _first_float(host)
    i = _first_float(inside)
    return rules.within(
        h + f.exec_seconds / 2 if h is not None else None, i, f.exec_seconds / 2 + 1.0, what="uptime"
    )


def _btime(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    # btime is derived from the realtime clock, so it may move by a second between two reads.
    return rules.within(_first_float(host), _first_float(inside), 1.0, what="btime")


def _host_btime(hv: HostView, _f: Facts) -> str | None:
    stat = hv.read("proc/stat") or ""
    m = re.search(r"^btime (\d+)", stat, re.M)
    return m.group(1) if m else None


def _timer_list(host: str | None, inside: str | None, f: Facts) -> Verdict:
    # "now at N nsecs" is the reader's CLOCK_MONOTONIC; a guest's is its own since its boot.
    h = _first_float(host)
    i = _first_float(inside)
    tol = (f.exec_seconds / 2 + 1.0) * 1e9
    v = rules.within(h + f.exec_seconds * 5e8 if h is not None else None, i, tol, what="timer_list now (ns)")
    return v


def _host_monotonic(hv: HostView, _f: Facts) -> str | None:
    if hv.read("proc/timer_list") is None:
        return None
    return str(time.clock_gettime_ns(time.CLOCK_MONOTONIC))


def _hostname(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    return rules.equal(host, inside, what="hostname")


def _kernel_release(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    return rules.equal(host, inside, what="kernel release")


def _kernel_version(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    return rules.equal(host, inside, what="kernel version")


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


# --- network ---------------------------------------------------------------------------------


def _default_routes(text: str | None) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for line in (text or "").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "00000000" and parts[2] != "00000000":
            out.add((parts[0], parts[2]))
    return out


def _gateway(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    h = _default_routes(host)
    if not h:
        return rules.not_applicable("equal", "host has no default gateway")
    i = _default_routes(inside)
    same = sorted(h & i)
    if same:
        gw = ", ".join(f"{dev} via {_hexip(g)}" for dev, g in same)
        return Verdict("equal", True, f"host default route visible: {gw}")
    return Verdict("equal", False, f"inside default routes {sorted(i) or 'none'} differ from host")


def _hexip(h: str) -> str:
    try:
        return socket.inet_ntoa(int(h, 16).to_bytes(4, "little"))
    except (ValueError, OverflowError):
        return h


# --- mounts and paths ------------------------------------------------------------------------

_HOST_PATH_MARKS = ("upperdir=", "lowerdir=", "/var/lib/isobench")


def _mountinfo_paths(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    marks = (*_HOST_PATH_MARKS, f"isobench-{f.run_id}")
    found: list[str] = []
    for line in (inside or "").splitlines():
        for opt in re.split(r"[ ,]", line):
            if any(m in opt for m in marks) and opt not in found:
                found.append(opt)
    return rules.presence(found[:4], what="host paths in mountinfo")


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
        return Verdict("presence", False, "CapEff not readable inside")
    bits = int(eff, 16)
    found = [name for bit, name in sorted(_DANGEROUS_CAPS.items()) if bits >> bit & 1]
    v = rules.presence(found, what=f"effective capabilities (CapEff={eff})")
    return v


def _seccomp(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    mode = _status_field(inside, "Seccomp")
    if mode is None:
        return Verdict("presence", False, "Seccomp field not readable inside")
    return rules.presence(["mode 0 (no filter)"] if mode == "0" else [], what="unfiltered syscalls: seccomp")


def _no_new_privs(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    nnp = _status_field(inside, "NoNewPrivs")
    if nnp is None:
        return Verdict("presence", False, "NoNewPrivs not readable inside")
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
        return Verdict("presence", False, "uid_map not readable inside")
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
        return Verdict("equal", False, "namespace links not readable inside")
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


def _cpu_topology(host: str | None, inside: str | None, f: Facts) -> Verdict:
    lines = (inside or "").splitlines()
    seen = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    if seen is None:
        return Verdict("presence", False, "cpuinfo not readable inside")
    host_cpus = int(host or 0)
    if host_cpus and host_cpus <= f.allowed_cpus:
        return rules.not_applicable(
            "presence", f"host has {host_cpus} CPUs, no more than the sandbox's {f.allowed_cpus}"
        )
    extra = " ".join(ln.strip() for ln in lines[1:])
    if seen > f.allowed_cpus:
        return Verdict(
            "presence", True, f"sees {seen} CPUs in cpuinfo, limited to {f.allowed_cpus} ({extra})"
        )
    return Verdict("presence", False, f"sees {seen} CPUs, limited to {f.allowed_cpus} ({extra})")


def _host_cpus(hv: HostView, _f: Facts) -> str | None:
    text = hv.read("proc/cpuinfo") or ""
    return str(len(re.findall(r"^processor\s*:", text, re.M)))


def _memory_total(host: str | None, inside: str | None, f: Facts) -> Verdict:
    limit_kb = f.memory_mib * 1024
    h = _first_float(host)
    i = _first_float(inside)
    if h is None or h <= limit_kb * 1.25:
        return rules.not_applicable("presence", "host memory is not larger than the sandbox limit")
    if i is None:
        return Verdict("presence", False, "MemTotal not readable inside")
    if i > limit_kb * 1.25:
        return Verdict("presence", True, f"MemTotal {i:.0f} kB inside, limit {limit_kb} kB, host {h:.0f} kB")
    return Verdict("presence", False, f"MemTotal {i:.0f} kB within the limit {limit_kb} kB")


def _host_memtotal(hv: HostView, _f: Facts) -> str | None:
    m = re.search(r"^MemTotal:\s*(\d+)", hv.read("proc/meminfo") or "", re.M)
    return m.group(1) if m else None


def _hw_file(host_glob: str, what: str) -> tuple[HostRead, Decide]:
    def host(hv: HostView, _f: Facts) -> str | None:
        found = [p for p in hv.glob(host_glob) if hv.read(p)]
        return found[0] if found else None

    def decide(host_path: str | None, inside: str | None, _f: Facts) -> Verdict:
        if host_path is None:
            return rules.not_applicable("presence", f"host has no {what}")
        val = (inside or "").strip()
        return rules.presence([f"{what} = {val}"] if val else [], what=what)

    return host, decide


_cpufreq_host, _cpufreq = _hw_file("sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq", "CPU frequency")
_thermal_host, _thermal = _hw_file("sys/class/thermal/thermal_zone*/temp", "thermal zone temperature")
_rapl_host, _rapl = _hw_file("sys/class/powercap/intel-rapl:*/energy_uj", "RAPL energy counter")

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
_DEVICES = "/dev/kvm /dev/mem /dev/kmem /dev/port /dev/sd? /dev/vd? /dev/xvd? /dev/nvme?n? /dev/dm-* /dev/loop-control /dev/fuse"


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


def _devices_script(_f: Facts) -> str:
    return f'for d in {_DEVICES}; do [ -e "$d" ] && ( : < "$d" ) 2>/dev/null && echo "$d"; done'


STATIC_PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "boot_id",
        "equal",
        1,
        "kernel boot id equals the host's (same running kernel)",
        _const("cat /proc/sys/kernel/random/boot_id"),
        _read("proc/sys/kernel/random/boot_id"),
        _boot_id,
    ),
    StaticProbe(
        "uptime",
        "equal",
        1,
        "/proc/uptime equals the host's (no time namespace, same kernel)",
        _const("cat /proc/uptime"),
        _read("proc/uptime"),
        _uptime,
    ),
    StaticProbe(
        "btime",
        "equal",
        1,
        "boot time in /proc/stat equals the host's",
        _const("grep '^btime' /proc/stat"),
        _host_btime,
        _btime,
    ),
    StaticProbe(
        "kernel_release",
        "equal",
        1,
        "kernel release equals the host's (the guest kernel differs)",
        _const("cat /proc/sys/kernel/osrelease"),
        _read("proc/sys/kernel/osrelease"),
        _kernel_release,
    ),
    StaticProbe(
        "kernel_version",
        "equal",
        1,
        "/proc/version equals the host's",
        _const("cat /proc/version"),
        _read("proc/version"),
        _kernel_version,
    ),
    StaticProbe(
        "timer_list",
        "equal",
        2,
        "/proc/timer_list readable and on the host's monotonic clock",
        _const("grep -m 1 '^now at' /proc/timer_list"),
        _host_monotonic,
        _timer_list,
    ),
    StaticProbe(
        "hostname",
        "equal",
        1,
        "hostname equals the host's",
        _const("cat /proc/sys/kernel/hostname"),
        _read("proc/sys/kernel/hostname"),
        _hostname,
    ),
    StaticProbe(
        "host_process_names",
        "canary",
        2,
        "a host process (canary name) is listed in /proc",
        lambda f: f"cat /proc/[0-9]*/comm 2>/dev/null | grep -F {f.canaries.token}",
        _none,
        _canary("process_name", "/proc/*/comm"),
    ),
    StaticProbe(
        "host_pids",
        "canary",
        2,
        "the canary's host PID resolves inside",
        lambda f: f"cat /proc/{f.canaries.process_pid or 0}/comm",
        _none,
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
        _const("cat /proc/locks"),
        _none,
        _proc_locks,
    ),
    StaticProbe(
        "host_files",
        "canary",
        2,
        "a host file (canary) is readable",
        lambda f: f"cat {f.canaries.file_path or '/nonexistent'}",
        _none,
        _canary("token", "host /tmp"),
    ),
    StaticProbe(
        "mount_canary",
        "canary",
        2,
        "a host mount (canary tmpfs) shows in mountinfo",
        _const("cat /proc/self/mountinfo"),
        _none,
        _canary("mount_source", "mountinfo"),
    ),
    StaticProbe(
        "net_devices",
        "canary",
        2,
        "a host network interface (canary dummy) is visible",
        _const("ls /sys/class/net; cat /proc/net/dev"),
        _none,
        _canary("netdev", "network devices"),
    ),
    StaticProbe(
        "unix_sockets",
        "canary",
        2,
        "a host abstract unix socket (canary) is listed",
        _const("cat /proc/net/unix"),
        _none,
        _canary("unix_socket", "/proc/net/unix"),
    ),
    StaticProbe(
        "gateway",
        "equal",
        1,
        "the host's default gateway is in the routing table",
        _const("cat /proc/net/route"),
        _read("proc/net/route"),
        _gateway,
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
        _none,
        _canary("kmsg", "kernel log"),
    ),
    StaticProbe(
        "mountinfo_host_paths",
        "presence",
        1,
        "host paths (overlay upper/lower dirs) in mountinfo",
        _const("cat /proc/self/mountinfo"),
        _none,
        _mountinfo_paths,
    ),
    StaticProbe(
        "cgroup_id",
        "canary",
        1,
        "the sandbox's id shows in /proc/self/cgroup",
        _const("cat /proc/self/cgroup"),
        _none,
        _cgroup_id,
    ),
    StaticProbe(
        "capabilities",
        "presence",
        3,
        "dangerous effective capabilities on the host kernel",
        _const("grep '^Cap' /proc/self/status"),
        _none,
        _own_kernel(_capabilities),
    ),
    StaticProbe(
        "seccomp",
        "presence",
        1,
        "no seccomp filter on the host kernel",
        _const("grep '^Seccomp:' /proc/self/status"),
        _none,
        _own_kernel(_seccomp),
    ),
    StaticProbe(
        "no_new_privs",
        "presence",
        1,
        "no_new_privs not set on the host kernel",
        _const("grep '^NoNewPrivs:' /proc/self/status"),
        _none,
        _own_kernel(_no_new_privs),
    ),
    StaticProbe(
        "lsm_label",
        "equal",
        1,
        "same LSM label as the host (not confined further)",
        _const("cat /proc/self/attr/current"),
        _host_lsm,
        _own_kernel(_lsm_label),
    ),
    StaticProbe(
        "uid_map",
        "presence",
        3,
        "root inside is root on the host kernel",
        _const("cat /proc/self/uid_map"),
        _none,
        _own_kernel(_uid_map),
    ),
    StaticProbe(
        "devices",
        "presence",
        3,
        "host devices (/dev/kvm, block devices, /dev/mem) open",
        _devices_script,
        _none,
        _own_kernel(_listed("host devices that open")),
    ),
    StaticProbe(
        "writable_paths",
        "presence",
        3,
        "kernel tunables usually read-only are writable",
        _writable_script,
        _none,
        _own_kernel(_listed("writable kernel paths")),
    ),
    StaticProbe(
        "masked_paths",
        "presence",
        3,
        "paths usually masked (/proc/kcore, timer_list...) readable",
        _masked_script,
        _masked_host,
        _own_kernel(_masked_paths),
    ),
    StaticProbe(
        "kallsyms",
        "equal",
        3,
        "host kernel symbol addresses (KASLR) readable",
        _const("grep -m 1 ' _stext$' /proc/kallsyms"),
        _host_stext,
        _own_kernel(_kallsyms),
    ),
    StaticProbe(
        "modules",
        "equal",
        2,
        "the host's module list",
        _const("cat /proc/modules"),
        _read("proc/modules"),
        _modules,
    ),
    StaticProbe(
        "namespaces",
        "equal",
        1,
        "namespaces shared with the host (same ns inode)",
        _const(
            'for n in cgroup ipc mnt net pid user uts time; do echo "$n $(readlink /proc/self/ns/$n)"; done'
        ),
        _host_namespaces,
        _own_kernel(_namespaces),
    ),
    StaticProbe(
        "cpu_topology",
        "presence",
        1,
        "more CPUs visible than the sandbox may use",
        _const(
            "grep -c '^processor' /proc/cpuinfo; cat /sys/devices/system/cpu/online; "
            "cat /sys/devices/system/node/online"
        ),
        _host_cpus,
        _cpu_topology,
    ),
    StaticProbe(
        "memory_total",
        "presence",
        1,
        "more memory visible than the sandbox's limit",
        _const("grep '^MemTotal' /proc/meminfo"),
        _host_memtotal,
        _memory_total,
    ),
    StaticProbe(
        "cpufreq",
        "presence",
        1,
        "host CPU frequency files readable",
        _const("cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq | head -n 1"),
        _cpufreq_host,
        _cpufreq,
    ),
    StaticProbe(
        "thermal",
        "presence",
        1,
        "host thermal sensors readable",
        _const("cat /sys/class/thermal/thermal_zone*/temp | head -n 1"),
        _thermal_host,
        _thermal,
    ),
    StaticProbe(
        "rapl",
        "presence",
        1,
        "RAPL energy counters readable (power side channel)",
        _const("cat /sys/class/powercap/intel-rapl:*/energy_uj | head -n 1"),
        _rapl_host,
        _rapl,
    ),
)
