"""Device access control for a cgroup: an allowlist of device rules, enforced by the v1 ``devices``
controller (``devices.deny a``, then one ``devices.allow`` line per rule) or, on cgroup v2, by a
``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup (v2 has no devices controller; the
program needs none, so it also works on a hybrid host's controller-less cgroup2 mount).

The program is the one runc generates in essence: per rule, compare type, access and numbers and
return 1 (allow); fall through to 0 (deny). It is built here as eBPF bytes, run by
:func:`run_device_program` in tests, and loaded and attached with ``bpf(2)`` through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import SandboxError
from isobench.hostsys.cgroups.files import write_lines

__all__ = [
    "CONTAINER_DEVICES",
    "AttachDeviceFilter",
    "DeviceRule",
    "attach_device_filter",
    "device_program",
    "run_device_program",
    "write_v1_rules",
]


@dataclass(frozen=True)
class DeviceRule:
    """Allow ``access`` (a subset of "rwm") on ``kind`` devices ("c", "b" or "a" for both) with
    these numbers (None: any)."""

    kind: str
    major: int | None
    minor: int | None
    access: str = "rwm"

    def __post_init__(self) -> None:
        if self.kind not in ("a", "b", "c") or not self.access or set(self.access) - set("rwm"):
            raise SandboxError(f"bad device rule {self}: kind is a, b or c; access a subset of rwm")

    def v1_line(self) -> str:
        def num(n: int | None) -> str:
            return "*" if n is None else str(n)

        return f"{self.kind} {num(self.major)}:{num(self.minor)} {self.access}"


#: The nodes the container helper puts in /dev (binds of the host's null, zero, full, random,
#: urandom, tty; a devpts instance's ptmx and pts/N) and nothing else: no mknod of anything, no
#: block device at all (runc also allows ``c *:* m`` and ``b *:* m``; without CAP_MKNOD they buy
#: nothing, and hardening=False should not let root make and open a disk node either).
CONTAINER_DEVICES = (
    DeviceRule("c", 1, 3),  # null
    DeviceRule("c", 1, 5),  # zero
    DeviceRule("c", 1, 7),  # full
    DeviceRule("c", 1, 8),  # random
    DeviceRule("c", 1, 9),  # urandom
    DeviceRule("c", 5, 0),  # tty
    DeviceRule("c", 5, 2),  # ptmx
    DeviceRule("c", 136, None),  # pts/N (Unix98 ptys: majors 136-143, the first one is used here)
)


def write_v1_rules(directory: Path, rules: Sequence[DeviceRule]) -> None:
    """Leave a fresh v1 devices cgroup allowing exactly ``rules``: ``a`` to ``devices.deny``, then
    each rule to ``devices.allow`` (one write(2) per rule, as the kernel takes them)."""
    write_lines(directory / "devices.deny", ("a",), "the device allowlist")
    write_lines(directory / "devices.allow", [r.v1_line() for r in rules], "the device allowlist")


# ------------------------------------------------------------------------------------------------ eBPF

_BPF_DEVCG_DEV_BLOCK, _BPF_DEVCG_DEV_CHAR = 1, 2
_ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_LDXW, _MOV_X, _MOV_K, _AND_K, _RSH_K, _JNE_K, _EXIT = 0x61, 0xBF, 0xB7, 0x57, 0x77, 0x55, 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def device_program(rules: Sequence[DeviceRule]) -> bytes:
    """eBPF of a cgroup device program allowing exactly ``rules``. Context (``struct
    bpf_cgroup_dev_ctx``): u32 access_type (access << 16 | type), u32 major, u32 minor."""
    head = [
        _insn(_LDXW, 2, 1, 0),  # r2 = access_type
        _insn(_MOV_X, 3, 2),  # r3 = r2
        _insn(_AND_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_RSH_K, 3, imm=16),  # r3 = access
        _insn(_LDXW, 4, 1, 4),  # r4 = major
        _insn(_LDXW, 5, 1, 8),  # r5 = minor
    ]
    body: list[bytes] = []
    for rule in rules:
        # (register, mask or None, value): this rule does not match when (reg & mask) != value.
        checks: list[tuple[int, int | None, int]] = []
        if rule.kind != "a":
            checks.append((2, None, _BPF_DEVCG_DEV_CHAR if rule.kind == "c" else _BPF_DEVCG_DEV_BLOCK))
        # Any access bit outside the rule's (within the 16 bits) sends the access to the next rule.
        checks.append((3, 0xFFFF & ~sum(_ACC[a] for a in rule.access), 0))
        checks += [(reg, None, n) for reg, n in ((4, rule.major), (5, rule.minor)) if n is not None]
        size = sum(1 if mask is None else 3 for _, mask, _ in checks) + 2
        block: list[bytes] = []
        for reg, mask, value in checks:
            tested = reg
            if mask is not None:  # r1 (the context pointer) is free once everything is loaded
                block += [_insn(_MOV_X, 1, reg), _insn(_AND_K, 1, imm=mask)]
                tested = 1
            block.append(_insn(_JNE_K, tested, off=size - len(block) - 1, imm=value))
        body += [*block, _insn(_MOV_K, 0, imm=1), _insn(_EXIT)]
    tail = [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(head + body + tail)


def run_device_program(program: bytes, kind: str, major: int, minor: int, access: str) -> bool:
    """Execute ``program`` on one device access as the kernel would (only the opcodes
    :func:`device_program` emits are known)."""
    dev_type = _BPF_DEVCG_DEV_CHAR if kind == "c" else _BPF_DEVCG_DEV_BLOCK
    ctx = [(sum(_ACC[a] for a in access) << 16) | dev_type, major, minor]
    regs = [0] * 11
    pc = 0
    n = len(program) // 8
    while pc < n:
        code, regs_byte, off, imm = struct.unpack_from("<BBhi", program, pc * 8)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if code == _LDXW:
            regs[dst] = ctx[off // 4]
        elif code == _MOV_X:
            regs[dst] = regs[src]
        elif code == _MOV_K:
            regs[dst] = imm & 0xFFFFFFFFFFFFFFFF
        elif code == _AND_K:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif code == _RSH_K:
            regs[dst] >>= imm
        elif code == _JNE_K:
            if regs[dst] != imm & 0xFFFFFFFFFFFFFFFF:
                pc += off
        elif code == _EXIT:
            return regs[0] == 1
        else:
            raise ValueError(f"opcode {code:#x} at {pc - 1} is not one this interpreter knows")
    raise ValueError("device program ran off its end")


# ------------------------------------------------------------------------------------------------ bpf(2)

_SYS_BPF = 321  # x86_64
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI = 15, 6, 2

#: Attach a device program allowing ``rules`` to the cgroup directory (the seam tests replace).
AttachDeviceFilter = Callable[[Path, Sequence[DeviceRule]], None]

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = int(_libc.syscall(_SYS_BPF, cmd, attr, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def attach_device_filter(cgroup_dir: Path, rules: Sequence[DeviceRule]) -> None:
    """Load the device program for ``rules`` and attach it to ``cgroup_dir`` (cgroup2). The cgroup
    holds the program from then on: it goes away with the cgroup, nothing to clean up."""
    code = device_program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    licence = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(16384)
    attr = ctypes.create_string_buffer(128)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    struct.pack_into(
        "=IIQQIIQ",
        attr,
        0,
        _BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(licence),
        1,
        len(log),
        ctypes.addressof(log),
    )
    try:
        prog = _bpf(_BPF_PROG_LOAD, attr)
    except OSError as err:
        detail = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise SandboxError(
            f"cannot load the cgroup device program: {err.strerror} {detail[0]}".strip()
            + "; it needs CONFIG_CGROUP_BPF, CONFIG_BPF_SYSCALL and CAP_BPF (or run the container"
            + " with hardening=false, which drops the device allowlist)"
        ) from err
    try:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            attr = ctypes.create_string_buffer(128)
            # BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags
            struct.pack_into("=IIII", attr, 0, fd, prog, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
            _bpf(_BPF_PROG_ATTACH, attr)
        finally:
            os.close(fd)
    except OSError as err:
        raise SandboxError(f"cannot attach the device program to {cgroup_dir}: {err.strerror}") from err
    finally:
        os.close(prog)
