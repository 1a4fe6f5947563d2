"""Resolved seccomp rules -> a classic BPF program (``struct sock_filter[]``), and an interpreter of
the instructions it uses, so tests run the very bytes the kernel gets.

Layout: the architecture check (anything but the admitted audit arch, and x32's syscall-number bit,
gets the foreign action); the syscalls with argument checks or a non-allow action, each a jump to
its own block; then a binary search over the allowed syscall numbers, merged into ranges (about
seven comparisons for any call). Conditional jumps reach only 255 instructions, so every far
target goes through a ``ja`` (32-bit offset).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from isobench.drivers.container.seccomp.profile import RET_ALLOW, ArgCheck, Resolved, Rule

__all__ = ["MAX_INSNS", "Insn", "compile_filter", "decode", "run"]

BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K, BPF_AND = 0x00, 0x20, 0x00, 0x50
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE = 0x00, 0x10, 0x20, 0x30
LD_ABS = BPF_LD | BPF_W | BPF_ABS
JEQ, JGT, JGE, JA = (
    BPF_JMP | BPF_JEQ | BPF_K,
    BPF_JMP | BPF_JGT | BPF_K,
    BPF_JMP | BPF_JGE | BPF_K,
    BPF_JMP | BPF_JA,
)
AND, RET = BPF_ALU | BPF_AND | BPF_K, BPF_RET | BPF_K
#: The kernel's limit on one filter (BPF_MAXINSNS).
MAX_INSNS = 4096
X32_SYSCALL_BIT = 0x40000000
_NR, _ARCH = 0, 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], little-endian: low word first


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


class _Asm:
    """Instructions with symbolic targets; jumps are resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[object, int] = {}
        self._n = 0

    def label(self) -> object:
        self._n += 1
        return ("L", self._n)

    def here(self, label: object) -> None:
        self.labels[label] = len(self.code)

    def emit(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k & 0xFFFFFFFF))

    def ret(self, action: int) -> None:
        self.emit(RET, action)

    def assemble(self) -> list[Insn]:
        out = []
        for pc, (code, jt, jf, k) in enumerate(self.code):
            if code == JA:
                out.append(Insn(code, 0, 0, self._offset(pc, jt, 1 << 32)))
                continue
            out.append(Insn(code, self._offset(pc, jt, 256), self._offset(pc, jf, 256), k))
        return out

    def _offset(self, pc: int, target: object, limit: int) -> int:
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if not 0 <= off < limit:
            raise AssertionError(f"seccomp BPF: jump of {off} at {pc} out of range")
        return off


def _ranges(nrs: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for nr in sorted(nrs):
        if out and out[-1][1] == nr - 1:
            out[-1] = (out[-1][0], nr)
        else:
            out.append((nr, nr))
    return out


def _search(asm: _Asm, ranges: list[tuple[int, int]], default: int) -> None:
    """Binary search: ``nr >= first of the right half`` goes right (through a ``ja``)."""
    if len(ranges) == 1:
        lo, hi = ranges[0]
        deny = asm.label()
        asm.emit(JGE, lo, 0, deny)
        asm.emit(JGT, hi, deny, 0)
        asm.ret(RET_ALLOW)
        asm.here(deny)
        asm.ret(default)
        return
    mid = len(ranges) // 2
    right = asm.label()
    asm.emit(JGE, ranges[mid][0], 0, 1)
    asm.emit(JA, 0, right)
    _search(asm, ranges[:mid], default)
    asm.here(right)
    _search(asm, ranges[mid:], default)


def _check(asm: _Asm, c: ArgCheck, fail: object) -> None:
    """Fall through when ``c`` holds, jump to ``fail`` otherwise (the accumulator is clobbered)."""
    words = [(_arg_lo(c.index), 0)] + ([(_arg_lo(c.index) + 4, 32)] if c.width == 64 else [])
    if c.op == "SCMP_CMP_NE":
        passed = asm.label()
        for n, (offset, shift) in enumerate(words):
            asm.emit(LD_ABS, offset)
            last = n == len(words) - 1
            asm.emit(JEQ, (c.value >> shift) & 0xFFFFFFFF, fail if last else 0, passed)
        asm.here(passed)
        return
    for offset, shift in words:
        asm.emit(LD_ABS, offset)
        if c.op == "SCMP_CMP_MASKED_EQ":
            asm.emit(AND, (c.value >> shift) & 0xFFFFFFFF)
            asm.emit(JEQ, (c.value_two >> shift) & 0xFFFFFFFF, 0, fail)
        else:
            asm.emit(JEQ, (c.value >> shift) & 0xFFFFFFFF, 0, fail)


def _block(asm: _Asm, rules: tuple[Rule, ...], default: int) -> None:
    for rule in rules:
        nxt = asm.label()
        for c in rule.checks:
            _check(asm, c, nxt)
        asm.ret(rule.action)
        asm.here(nxt)
    asm.ret(default)


def compile_filter(resolved: Resolved) -> bytes:
    """The filter as the kernel takes it: ``struct sock_filter`` records, native-endian."""
    asm = _Asm()
    foreign = asm.label()
    asm.emit(LD_ABS, _ARCH)
    asm.emit(JEQ, resolved.arch, 0, foreign)
    asm.emit(LD_ABS, _NR)
    native = asm.label()
    asm.emit(JGE, X32_SYSCALL_BIT, 0, native)
    # x32's bit (or junk) is foreign; -1 is not a call but a skipped one (ptrace): plain default.
    asm.emit(JEQ, 0xFFFFFFFF, 0, foreign)
    asm.ret(resolved.default)
    asm.here(native)
    special = {nr: rs for nr, rs in resolved.rules.items() if rs != (Rule(RET_ALLOW),)}
    allowed = [nr for nr, rs in resolved.rules.items() if rs == (Rule(RET_ALLOW),)]
    blocks = {nr: asm.label() for nr in special}
    for nr, label in blocks.items():
        asm.emit(JEQ, nr, 0, 1)
        asm.emit(JA, 0, label)
    if allowed:
        _search(asm, _ranges(allowed), resolved.default)
    else:
        asm.ret(resolved.default)
    for nr, label in blocks.items():
        asm.here(label)
        _block(asm, special[nr], resolved.default)
    asm.here(foreign)
    asm.ret(resolved.foreign)
    insns = asm.assemble()
    if len(insns) > MAX_INSNS:
        raise AssertionError(f"seccomp BPF: {len(insns)} instructions, the kernel takes {MAX_INSNS}")
    return b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in insns)


def decode(program: bytes) -> list[Insn]:
    return [Insn(*struct.unpack_from("=HBBI", program, off)) for off in range(0, len(program), 8)]


def run(program: bytes | Sequence[Insn], nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> int:
    """Execute a seccomp filter on one ``struct seccomp_data`` the way the kernel would (only the
    instructions the compiler emits are known; anything else raises)."""
    insns = decode(program) if isinstance(program, bytes) else list(program)
    full = [*args, 0, 0, 0, 0, 0, 0][:6]
    data = struct.pack("=iIQ6Q", nr, arch, ip, *full)
    acc, pc = 0, 0
    while True:
        i = insns[pc]
        pc += 1
        if i.code == LD_ABS:
            acc = struct.unpack_from("=I", data, i.k)[0]
        elif i.code == AND:
            acc &= i.k
        elif i.code == JA:
            pc += i.k
        elif i.code in (JEQ, JGT, JGE):
            taken = acc == i.k if i.code == JEQ else acc > i.k if i.code == JGT else acc >= i.k
            pc += i.jt if taken else i.jf
        elif i.code == RET:
            return i.k
        else:
            raise ValueError(f"instruction {i} at {pc - 1} is not one this interpreter knows")
