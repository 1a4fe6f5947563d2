"""Kernel attack surface the sandbox can reach: syscalls Docker's default profile blocks, and
device nodes that open (listed in /dev, lying elsewhere, or made with mknod). Counted on a shared
kernel only: a guest reaches its own kernel.

Both probes *try* rather than read a status field: a seccomp filter that blocks nothing still shows
``Seccomp: 2``, and a device cgroup is only seen when an open fails.
"""

from __future__ import annotations

import errno
import re

from isobench.leakage import rules
from isobench.leakage.catalogue.base import Facts, StaticProbe, no_host_read, own_kernel, table_rows
from isobench.leakage.rules import Verdict

__all__ = ["BLOCKED_CALLS", "PROBES", "first_disk"]

#: Syscalls Docker's default seccomp profile denies to a container without extra capabilities
#: (moby profiles/seccomp/default.json; io_uring since Docker 25), each with x86_64 arguments that
#: make the call fail harmlessly if it does reach the kernel (a bad pointer, an unknown command,
#: invalid flags), so trying it changes nothing. ``unshare(CLONE_NEWUSER)`` does succeed when it is
#: allowed, but only in a child that exits at once. ptrace is left out: Docker allows it since 4.8.
BLOCKED_CALLS: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("keyctl", 250, (9999, 0, 0, 0, 0)),  # unknown command: EOPNOTSUPP
    ("add_key", 248, (0, 0, 0, 0, 0)),  # NULL type: EFAULT
    ("request_key", 249, (0, 0, 0, 0)),
    ("kexec_load", 246, (0, 0, 0, 0xFFFFFFFF)),  # invalid arch in flags: EINVAL, nothing (un)loaded
    ("bpf", 321, (9999, 0, 0)),  # unknown command: EINVAL
    ("unshare_newuser", 272, (0x10000000,)),  # CLONE_NEWUSER, in a child
    ("mount", 165, (0, 0, 0, 0, 0)),  # NULL target: EFAULT
    ("umount2", 166, (0, 0)),
    ("pivot_root", 155, (0, 0)),
    ("open_by_handle_at", 304, (0xFFFFFFFF, 0, 0)),
    ("personality", 135, (0x0040000,)),  # ADDR_NO_RANDOMIZE, in a child; Docker allows only 5 values
    ("syslog", 103, (10, 0, 0)),  # SYSLOG_ACTION_SIZE_BUFFER: reads a size
    ("userfaultfd", 323, (0xFFFF,)),  # invalid flags: EINVAL
    ("perf_event_open", 298, (0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0)),  # NULL attr: EFAULT
    ("io_uring_setup", 425, (0, 0)),
    ("acct", 163, (1,)),  # bad pointer: EFAULT (never NULL: that would switch accounting off)
    ("finit_module", 313, (0xFFFFFFFF, 0, 0)),  # bad fd: EBADF
    ("delete_module", 176, (0, 0)),
    ("swapon", 167, (0, 0)),
    ("setns", 308, (0xFFFFFFFF, 0)),
    ("fsopen", 430, (0, 0)),
)

#: What a filter (or a missing capability) answers; any other errno means the call reached the code
#: that checks its arguments, i.e. this sandbox may call it.
_BLOCKED_ERRNOS = {errno.EPERM, errno.EACCES, errno.ENOSYS}


def _ints(args: tuple[int, ...]) -> str:
    return ", ".join(str(a) for a in args)


def _seccomp_script(_f: Facts) -> str:
    calls = ", ".join(f'["{n}", {nr}, {_ints(args)}]' for n, nr, args in BLOCKED_CALLS)
    # One child per call: unshare and personality change the caller, and none of it may outlive it.
    perl = (
        f"$| = 1; for my $c ({calls}) {{ my ($n, $nr, @a) = @$c; my $pid = fork; "
        "if (!defined $pid) { print qq{$n fork-failed\\n}; next } "
        "if ($pid == 0) { $! = 0; my $r = syscall($nr, @a); print qq{$n $r } . ($!+0) . qq{\\n}; "
        "POSIX::_exit(0) } waitpid($pid, 0) }"
    )
    return (
        "grep '^Seccomp:' /proc/self/status; "
        'if [ "$(uname -m)" != x86_64 ]; then echo "@@error the syscall numbers are x86_64\'s, '
        'this is $(uname -m)"; '
        'elif ! command -v perl >/dev/null 2>&1; then echo "@@error no perl in the sandbox to try the '
        'syscalls with"; '
        f"else perl -MPOSIX -e '{perl}'; fi"
    )


def _seccomp(_host: str | None, inside: str | None, _f: Facts) -> Verdict:
    mode = re.search(r"^Seccomp:\s*(\d)", inside or "", re.M)
    tried: dict[str, str] = {}
    reached: list[str] = []
    for line in (inside or "").splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in _NAMES:
            continue
        name, ret, err = parts
        tried[name] = line
        if ret == "-1" and err.isdigit() and int(err) in _BLOCKED_ERRNOS:
            continue
        reached.append(name if ret == "-1" else f"{name} (returned {ret})")
    if len(tried) < len(BLOCKED_CALLS):
        missing = sorted(_NAMES - set(tried))
        return rules.error(
            "presence", f"no answer for {', '.join(missing[:6])}: the syscall attempts did not run"
        )
    filt = f"Seccomp mode {mode.group(1)}" if mode else "Seccomp mode unknown"
    v = rules.presence(reached, what=f"Docker-blocked syscalls reachable ({filt}, {len(tried)} tried)")
    return v


_NAMES = frozenset(n for n, _nr, _a in BLOCKED_CALLS)


# --- devices ---------------------------------------------------------------------------------

#: Host character devices by name; every block device under /dev counts too.
_CHAR_DEVICES = "/dev/kvm /dev/mem /dev/kmem /dev/port /dev/loop-control /dev/fuse"
#: Character devices every sandbox may hold (major:minor, hex as stat prints them): null, zero,
#: full, random, urandom, tty, console, ptmx, and the pty slaves (major 0x88).
_HARMLESS = {"1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2"}
_PTS_MAJOR = "88"


def first_disk(partitions: str | None) -> str | None:
    """major:minor of the first whole disk in /proc/partitions (the device mknod tries to reach)."""
    for parts in table_rows(partitions):
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit() and not re.search(r"\d$", parts[3]):
            return f"{parts[0]}:{parts[1]}"
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit() and parts[3].startswith("nvme"):
            return f"{parts[0]}:{parts[1]}"
    return None


def _devices_script(f: Facts) -> str:
    disk = (f.host_disk or "").split(":")
    mk_disk = (
        f'mknod "$t/disk" b {disk[0]} {disk[1]} 2>/dev/null && echo "mknod disk"; ' if len(disk) == 2 else ""
    )
    return (
        # Named host devices, and every block device under /dev.
        f'for d in {_CHAR_DEVICES}; do [ -c "$d" ] && ( : < "$d" ) 2>/dev/null && echo "open $d"; done; '
        'for d in /dev/* /dev/*/*; do [ -b "$d" ] && ( : < "$d" ) 2>/dev/null && echo "open $d"; done; '
        # Device nodes outside /dev (a bind-mounted volume, a runtime's state dir), first levels only.
        "find / -maxdepth 4 \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o "
        "\\( -type b -o -type c \\) -print 2>/dev/null | head -n 64 | while read -r d; do "
        '( : < "$d" ) 2>/dev/null && echo "outside $d $(stat -c %t:%T "$d" 2>/dev/null)"; done; '
        # mknod /dev/mem and the host's first disk; a nodev mount refuses the open, so go on to the
        # next directory until a node opens or none is left.
        "for base in /dev/shm /tmp /var/tmp /root /; do "
        't=$(mktemp -d "$base/.isobench-mknod-XXXXXX" 2>/dev/null) || continue; '
        'mknod "$t/mem" c 1 1 2>/dev/null && echo "mknod mem"; '
        f"{mk_disk}"
        "ok=; "
        'for n in mem disk; do [ -e "$t/$n" ] && ( : < "$t/$n" ) 2>/dev/null && echo "open mknod $n" && ok=1; done; '
        'rm -rf "$t"; [ -n "$ok" ] && break; done; true'
    )


def _devices(_host: str | None, inside: str | None, f: Facts) -> Verdict:
    opened: list[str] = []
    notes: list[str] = []
    for line in (inside or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "open" and len(parts) >= 2:
            what = " ".join(parts[1:])
            if what == "mknod mem":
                what = "/dev/mem made with mknod"
            elif what == "mknod disk":
                what = f"host disk {f.host_disk} made with mknod"
            if what not in opened:
                opened.append(what)
        elif parts[0] == "outside" and len(parts) >= 2:
            devno = parts[2] if len(parts) > 2 else ""
            if devno in _HARMLESS or devno.split(":")[0] == _PTS_MAJOR:
                continue
            opened.append(f"{parts[1]} ({devno or '?'}) outside /dev")
        elif parts[0] == "mknod" and len(parts) == 2 and f"mknod {parts[1]}" not in notes:
            notes.append(f"mknod {parts[1]}")
    v = rules.presence(opened[:8], what="host devices that open")
    if notes and not v.leaks:
        return Verdict(v.rule, False, f"{v.evidence} ({', '.join(notes)} allowed, but the nodes do not open)")
    return v


#: Host control and kernel attack surface.
PROBES: tuple[StaticProbe, ...] = (
    StaticProbe(
        "seccomp",
        "presence",
        1,
        "syscalls Docker's default profile blocks (keyctl, bpf, mount, unshare...) reach the host kernel",
        _seccomp_script,
        no_host_read,
        own_kernel(_seccomp),
    ),
    StaticProbe(
        "devices",
        "presence",
        3,
        "host devices open: /dev/kvm, /dev/mem, block devices, nodes outside /dev, nodes made with mknod",
        _devices_script,
        no_host_read,
        own_kernel(_devices),
    ),
)
