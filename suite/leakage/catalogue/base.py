"""What a static probe is, and the small pieces the families build their probes from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from isobench.leakage.host import Canaries, HostView
from isobench.leakage.rules import Rule, Verdict

__all__ = [
    "Decide",
    "Facts",
    "HostRead",
    "Script",
    "StaticProbe",
    "first_float",
    "host_file",
    "no_host_read",
    "own_kernel",
    "script",
    "table_rows",
]


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
    #: major:minor of the host's first disk (from /proc/partitions): what mknod tries to reach.
    host_disk: str | None = None


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


def script(text: str) -> Script:
    """A probe whose script is the same for every sandbox."""
    return lambda _f: text


def host_file(path: str) -> HostRead:
    """The host reads this file (relative to its root) for the comparison."""
    return lambda hv, _f: hv.read(path)


def no_host_read(_hv: HostView, _f: Facts) -> str | None:
    """The decision needs no host reading (canaries and presence probes)."""
    return None


def own_kernel(decide: Decide) -> Decide:
    """Only a shared kernel makes these host facts; a guest's answer is about its own kernel."""

    def wrapped(host: str | None, inside: str | None, facts: Facts) -> Verdict:
        v = decide(host, inside, facts)
        if facts.shared_kernel is False and v.leaks:
            return Verdict(v.rule, False, "own kernel (boot_id differs from host): " + v.evidence)
        return v

    return wrapped


def table_rows(text: str | None) -> list[list[str]]:
    """The rows of a /proc table below its header line (/proc/net/arp, route, partitions), split."""
    return [line.split() for line in (text or "").splitlines()[1:]]


def first_float(text: str | None) -> float | None:
    if not text:
        return None
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(m.group()) if m else None
