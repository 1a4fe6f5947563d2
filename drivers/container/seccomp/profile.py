"""Docker's seccomp profile (``default.json``) resolved for one container: per syscall number, the
rules that apply to its capability set, architecture and kernel (moby's ``setupSeccomp`` rules).

A group applies when every capability of ``includes.caps`` is held, the architecture is in
``includes.arches`` and the kernel is at least ``includes.minKernel``; ``excludes`` removes it when
any of its capabilities is held or the architecture is listed. Names this architecture does not have
are skipped, as libseccomp skips them. Everything unnamed gets ``defaultAction``.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from isobench.errors import UsageError

__all__ = [
    "AUDIT_ARCH_X86_64",
    "DATA_DIR",
    "ArgCheck",
    "Resolved",
    "Rule",
    "action_value",
    "kernel_version",
    "load_data",
    "relaxation_names",
    "resolve",
]

DATA_DIR = Path(__file__).parent
AUDIT_ARCH_X86_64 = 0xC000003E
#: moby's names for the architecture a group is for (``includes.arches``).
_GO_ARCH = {"SCMP_ARCH_X86_64": "amd64"}
_AUDIT_ARCH = {"SCMP_ARCH_X86_64": AUDIT_ARCH_X86_64}

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
_ACTIONS = {
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_KILL": RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_LOG": RET_LOG,
    "SCMP_ACT_ALLOW": RET_ALLOW,
}
_OPS = frozenset({"SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"})


@dataclass(frozen=True)
class ArgCheck:
    """``args[index] <op> value`` (MASKED_EQ: ``args[index] & value == value_two``), on the low
    ``width`` bits."""

    index: int
    op: str
    value: int
    value_two: int = 0
    width: int = 64

    def holds(self, arg: int) -> bool:
        mask = (1 << self.width) - 1
        a, v, v2 = arg & mask, self.value & mask, self.value_two & mask
        if self.op == "SCMP_CMP_EQ":
            return a == v
        if self.op == "SCMP_CMP_NE":
            return a != v
        return a & v == v2


@dataclass(frozen=True)
class Rule:
    """``action`` (a SECCOMP_RET_* value) when every check holds (no checks: always)."""

    action: int
    checks: tuple[ArgCheck, ...] = ()


@dataclass(frozen=True)
class Resolved:
    """What the filter must do: ``arch`` admitted, anything else ``foreign``; per syscall number its
    rules in order (the first whose checks hold wins, else ``default``)."""

    arch: int
    default: int
    foreign: int
    rules: Mapping[int, tuple[Rule, ...]]

    def decide(self, nr: int, args: Iterable[int] = ()) -> int:
        """The action for one call, straight from the rules (the compiled BPF must agree)."""
        values = [*args, 0, 0, 0, 0, 0, 0][:6]
        for rule in self.rules.get(nr, ()):
            if all(c.holds(values[c.index]) for c in rule.checks):
                return rule.action
        return self.default


def action_value(action: str, errno: int | None = None) -> int:
    if action == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((1 if errno is None else errno) & 0xFFFF)
    try:
        return _ACTIONS[action]
    except KeyError:
        raise UsageError(f"seccomp profile: unsupported action {action!r}") from None


@cache
def load_data(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text())


def relaxation_names() -> tuple[str, ...]:
    return tuple(sorted(load_data("isobench.json")["relaxations"]))


def kernel_version(release: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _applies(group: Mapping[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
    inc = group.get("includes") or {}
    exc = group.get("excludes") or {}
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and kernel < kernel_version(inc["minKernel"]):
        return False
    if any(c in caps for c in exc.get("caps") or ()):
        return False
    return not (exc.get("arches") and arch in exc["arches"])


def _checks(group: Mapping[str, Any], name: str, narrow: Mapping[str, list[int]]) -> tuple[ArgCheck, ...]:
    out = []
    for arg in group.get("args") or ():
        op = arg["op"]
        if op not in _OPS:
            raise UsageError(f"seccomp profile: {name}: unsupported comparison {op}")
        width = 32 if arg["index"] in narrow.get(name, ()) else 64
        out.append(ArgCheck(arg["index"], op, int(arg["value"]), int(arg.get("valueTwo", 0)), width))
    return tuple(out)


def resolve(
    caps: Iterable[str],
    *,
    relax: Iterable[str] = (),
    kernel: tuple[int, int] | None = None,
    profile: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
    table: Mapping[str, int] | None = None,
) -> Resolved:
    """The profile's rules for a container holding ``caps`` (bounding set, ``CAP_*`` names), with the
    named relaxations of ``isobench.json`` added as unconditional allows."""
    profile = profile if profile is not None else load_data("default.json")
    policy = policy if policy is not None else load_data("isobench.json")
    table = table if table is not None else load_data("syscalls.json")["x86_64"]
    arch_name = policy["architecture"]
    if arch_name not in _AUDIT_ARCH:
        raise UsageError(f"seccomp profile: architecture {arch_name} is not supported here")
    held = frozenset(caps)
    kern = kernel if kernel is not None else kernel_version()
    narrow = policy.get("narrowArgs", {})
    rules: dict[int, list[Rule]] = {}
    groups = list(profile["syscalls"])
    for name in relax:
        try:
            groups.append({"names": policy["relaxations"][name]["names"], "action": "SCMP_ACT_ALLOW"})
        except KeyError:
            raise UsageError(
                f"unknown seccomp relaxation {name!r}; choose from {', '.join(relaxation_names())}"
            ) from None
    for group in groups:
        if not _applies(group, held, _GO_ARCH[arch_name], kern):
            continue
        action = action_value(group["action"], group.get("errnoRet"))
        for name in group["names"]:
            nr = table.get(name)
            if nr is None:
                continue  # not a syscall of this architecture
            rules.setdefault(nr, []).append(Rule(action, _checks(group, name, narrow)))
    default = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"))
    return Resolved(
        arch=_AUDIT_ARCH[arch_name],
        default=default,
        foreign=action_value(policy["foreignAction"]),
        rules={nr: _ordered(rs) for nr, rs in sorted(rules.items())},
    )


def _ordered(rules: list[Rule]) -> tuple[Rule, ...]:
    """An unconditional rule makes the conditional ones of that syscall moot (libseccomp: the
    broader rule wins); among those, the first listed is kept."""
    plain = [r for r in rules if not r.checks]
    return (plain[0],) if plain else tuple(dict.fromkeys(rules))
