"""Who the host is: its kernel, clocks, names, default route and paths, seen from inside."""

from __future__ import annotations

import re
import socket
import time

from isobench.leakage import rules
from isobench.leakage.catalogue.base import (
    Facts,
    StaticProbe,
    first_float,
    host_file,
    no_host_read,
    own_kernel,
    script,
    table_rows,
)
from isobench.leakage.host import HostView
from isobench.leakage.rules import Verdict

__all__ = ["PROBES", "decide_shared_kernel"]


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
    h = first_float(host)
    i = first_float(inside)
    return rules.within(
        h + f.exec_seconds / 2 if h is not None else None, i, f.exec_seconds / 2 + 1.0, what="uptime"
    )


def _btime(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    # btime is derived from the realtime clock, so it may move by a second between two reads.
    return rules.within(first_float(host), first_float(inside), 1.0, what="btime")


def _host_btime(hv: HostView, _f: Facts) -> str | None:
    stat = hv.read("proc/stat") or ""
    m = re.search(r"^btime (\d+)", stat, re.M)
    return m.group(1) if m else None


def _timer_list(host: str | None, inside: str | None, f: Facts) -> Verdict:
    # "now at N nsecs" is the reader's CLOCK_MONOTONIC; a guest's is its own since its boot.
    h = first_float(host)
    i = first_float(inside)
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


def _cmdline(host: str | None, inside: str | None, _f: Facts) -> Verdict:
    # It names the host's root device (root=UUID=...) and boot options.
    return rules.equal(host, inside, what="kernel command line")


# --- network ---------------------------------------------------------------------------------


def _default_routes(text: str | None) -> set[tuple[str, str]]:
    """(device, gateway in hex) of each default route that has a gateway."""
    return {
        (p[0], p[2]) for p in table_rows(text) if len(p) >= 3 and p[1] == "00000000" and p[2] != "00000000"
    }


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


#: Fingerprints of the host (and timer_list, which lists every pending host timer).
PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "boot_id",
        "equal",
        1,
        "kernel boot id equals the host's (same running kernel)",
        script("cat /proc/sys/kernel/random/boot_id"),
        host_file("proc/sys/kernel/random/boot_id"),
        _boot_id,
    ),
    StaticProbe(
        "uptime",
        "equal",
        1,
        "/proc/uptime equals the host's (no time namespace, same kernel)",
        script("cat /proc/uptime"),
        host_file("proc/uptime"),
        _uptime,
    ),
    StaticProbe(
        "btime",
        "equal",
        1,
        "boot time in /proc/stat equals the host's",
        script("grep '^btime' /proc/stat"),
        _host_btime,
        _btime,
    ),
    StaticProbe(
        "kernel_release",
        "equal",
        1,
        "kernel release equals the host's (the guest kernel differs)",
        script("cat /proc/sys/kernel/osrelease"),
        host_file("proc/sys/kernel/osrelease"),
        # A guest booting the host's own kernel package prints the same release: only a shared
        # kernel (same boot_id) makes it the host's.
        own_kernel(_kernel_release),
    ),
    StaticProbe(
        "kernel_version",
        "equal",
        1,
        "/proc/version equals the host's",
        script("cat /proc/version"),
        host_file("proc/version"),
        own_kernel(_kernel_version),
    ),
    StaticProbe(
        "cmdline",
        "equal",
        1,
        "/proc/cmdline equals the host's (its root device and boot options)",
        script("cat /proc/cmdline"),
        host_file("proc/cmdline"),
        own_kernel(_cmdline),
    ),
    StaticProbe(
        "timer_list",
        "equal",
        2,
        "/proc/timer_list readable and on the host's monotonic clock",
        script("grep -m 1 '^now at' /proc/timer_list"),
        _host_monotonic,
        _timer_list,
    ),
    StaticProbe(
        "hostname",
        "equal",
        1,
        "hostname equals the host's",
        script("cat /proc/sys/kernel/hostname"),
        host_file("proc/sys/kernel/hostname"),
        _hostname,
    ),
    StaticProbe(
        "gateway",
        "equal",
        1,
        "the host's default gateway is in the routing table",
        script("cat /proc/net/route"),
        host_file("proc/net/route"),
        _gateway,
    ),
    StaticProbe(
        "mountinfo_host_paths",
        "presence",
        1,
        "host paths (overlay upper/lower dirs) in mountinfo",
        script("cat /proc/self/mountinfo"),
        no_host_read,
        _mountinfo_paths,
    ),
)
