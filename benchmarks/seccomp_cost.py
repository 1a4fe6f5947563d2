"""What the container's seccomp filter costs per start, by approach (issue 18):

- compiled once in Python and cached (what the driver does): the compile, paid once per
  (profile, capabilities, relaxations, kernel), and the cache lookup paid per start;
- libseccomp at every start, as the helper did: the old denylist (default allow, 50 names, the clone
  flag rules) and the new allowlist (Docker's profile, same rules as the cached filter), each built
  and exported to BPF (``seccomp_export_bpf``; the kernel load is common to every approach);
- the kernel load (``seccomp(SECCOMP_SET_MODE_FILTER)``: check and JIT) of either filter, timed
  in forked children; the helper's ``hardening`` phase in ``benchmarks/container_start.py`` adds
  the capability drop and no_new_privs.

    .venv/bin/python benchmarks/seccomp_cost.py [--n 200]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isobench.drivers.container.config import HARDENED_CAPS
from isobench.drivers.container.seccomp import compile_filter, filter_path, resolve
from isobench.drivers.container.seccomp.profile import RET_ALLOW, RET_ERRNO

#: The denylist the helper used before (libseccomp, default allow), for the comparison.
OLD_DENYLIST = [
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "iopl",
    "ioperm",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
]
_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_EQ": 4, "SCMP_CMP_MASKED_EQ": 7}


class ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def libseccomp() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        raise SystemExit("libseccomp is not installed (libseccomp2)")
    lib = ctypes.CDLL(name)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def old_denylist(lib: ctypes.CDLL, out: int) -> None:
    ctx = lib.seccomp_init(RET_ALLOW)
    for name in OLD_DENYLIST:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:
            lib.seccomp_rule_add_array(ctx, RET_ERRNO | 1, nr, 0, None)
    clone = lib.seccomp_syscall_resolve_name(b"clone")
    for bit in (0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000, 0x2000000):
        arr = (ArgCmp * 1)(ArgCmp(0, _OPS["SCMP_CMP_MASKED_EQ"], bit, bit))
        lib.seccomp_rule_add_array(ctx, RET_ERRNO | 1, clone, 1, arr)
    lib.seccomp_rule_add_array(ctx, RET_ERRNO | 38, lib.seccomp_syscall_resolve_name(b"clone3"), 0, None)
    lib.seccomp_export_bpf(ctx, out)
    lib.seccomp_release(ctx)


def allowlist(lib: ctypes.CDLL, out: int) -> None:
    resolved = resolve(HARDENED_CAPS)
    ctx = lib.seccomp_init(resolved.default)
    for nr, rules in resolved.rules.items():
        for rule in rules:
            arr = (ArgCmp * max(1, len(rule.checks)))(
                *(ArgCmp(c.index, _OPS[c.op], c.value, c.value_two) for c in rule.checks)
            )
            lib.seccomp_rule_add_array(ctx, rule.action, nr, len(rule.checks), arr)
    lib.seccomp_export_bpf(ctx, out)
    lib.seccomp_release(ctx)


def exported(build: Callable[[ctypes.CDLL, int], None], lib: ctypes.CDLL) -> bytes:
    with tempfile.TemporaryFile() as fh:
        build(lib, fh.fileno())
        fh.seek(0)
        return fh.read()


def load_time(program: bytes) -> float:
    """Seconds the kernel takes to install ``program`` (in a child, which exits right after)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))

    class Fprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    prog = Fprog(len(program) // 8, ctypes.addressof(buf))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        t = time.perf_counter()
        ok = libc.syscall(317, 1, 0, ctypes.byref(prog)) == 0  # seccomp(SET_MODE_FILTER)
        os.write(w, str(time.perf_counter() - t if ok else -1.0).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    value = float(os.read(r, 64))
    os.close(r)
    if value < 0:
        raise SystemExit("the kernel refused the filter")
    return value


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    lib = libseccomp()
    devnull = os.open(os.devnull, os.O_WRONLY)
    resolve_once = resolve(HARDENED_CAPS)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        filter_path(state, HARDENED_CAPS)
        rows = {
            "python compile (once per profile/caps/kernel)": timed(
                lambda: compile_filter(resolve(HARDENED_CAPS)), max(20, args.n // 10)
            ),
            "  of which BPF code generation": timed(lambda: compile_filter(resolve_once), args.n),
            "cached filter lookup (per start)": timed(lambda: filter_path(state, HARDENED_CAPS), args.n),
            "libseccomp, old denylist (per start, before)": timed(lambda: old_denylist(lib, devnull), args.n),
            "libseccomp, Docker allowlist (per start)": timed(lambda: allowlist(lib, devnull), args.n),
        }
    old_bpf, new_bpf = exported(old_denylist, lib), compile_filter(resolve_once)
    rows["kernel load, old denylist"] = [load_time(old_bpf) for _ in range(args.n)]
    rows["kernel load, Docker allowlist (cached BPF)"] = [load_time(new_bpf) for _ in range(args.n)]
    os.close(devnull)
    print("seccomp filter cost, median of n runs (ctypes adds ~1 us per libseccomp call)")
    for name, vals in rows.items():
        print(f"  {name:48s} {statistics.median(vals) * 1e3:8.3f} ms  (n={len(vals)})")
    print(f"  BPF instructions: old denylist {len(old_bpf) // 8}, Docker allowlist {len(new_bpf) // 8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
