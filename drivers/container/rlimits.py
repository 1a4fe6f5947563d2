"""Resource limits of a container's processes: always set explicitly, never inherited from the runner.

Each limit is ``NAME=VALUE`` (soft = hard) or ``NAME=SOFT:HARD``, a value being a number or
``unlimited``; names are those of setrlimit(2) without ``RLIMIT_`` (``nofile``, ``core``, ...). The
defaults below fill in every limit the spec does not name, so nothing of the runner's own limits
reaches a container (the runner may have raised ``nofile`` or allowed core dumps).

Without ``CAP_SYS_RESOURCE`` (some hosts withhold it even from root) no hard limit can be raised
above the runner's: a default is then lowered to the runner's hard limit, and a limit the spec names
above it is an error before the run, not a failed start.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import UsageError

__all__ = [
    "DEFAULT_RLIMITS",
    "RLIMIT_NAMES",
    "Rlimit",
    "can_raise_limits",
    "parse_rlimits",
    "runner_hard_limit",
]

#: Every limit setrlimit(2) knows (the helper maps each name to its RLIMIT_ constant).
RLIMIT_NAMES = (
    "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip

_MIB = 1024 * 1024
#: (soft, hard), None = unlimited. The kernel's boot defaults (include/asm-generic/resource.h),
#: except: no core dumps (a tenant's core would be written by the host's core_pattern), nofile as
#: Docker gives it (benchmarks open many files; the kernel's 1024 would handicap them against the
#: host driver), nproc unlimited (the pids cgroup is the limit) and a fixed sigpending.
DEFAULT_RLIMITS: dict[str, tuple[int | None, int | None]] = {
    "as": (None, None),
    "core": (0, 0),
    "cpu": (None, None),
    "data": (None, None),
    "fsize": (None, None),
    "locks": (None, None),
    "memlock": (8 * _MIB, 8 * _MIB),
    "msgqueue": (819_200, 819_200),
    "nice": (0, 0),
    "nofile": (1_048_576, 1_048_576),
    "nproc": (None, None),
    "rss": (None, None),
    "rtprio": (0, 0),
    "rttime": (None, None),
    "sigpending": (65_536, 65_536),
    "stack": (8 * _MIB, None),
}


@dataclass(frozen=True)
class Rlimit:
    name: str
    soft: int | None
    hard: int | None

    @property
    def arg(self) -> str:
        """The helper's ``--rlimit`` value."""
        return f"{self.name}={_fmt(self.soft)}:{_fmt(self.hard)}"


def _fmt(v: int | None) -> str:
    return "inf" if v is None else str(v)


def _value(text: str, where: str, item: str) -> int | None:
    if text == "unlimited":
        return None
    if not text.isdigit():
        raise UsageError(f"{where}: rlimit {item!r}: {text!r} is not a number or 'unlimited'")
    return int(text)


_CAP_SYS_RESOURCE = 24
_RLIMIT_LOCKS = 10  # not exported by Python's resource module


def can_raise_limits(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (and so its helpers do)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    except (OSError, ValueError):
        pass
    return False


_CAN_RAISE: dict[int, bool] = {}


def _runner_can_raise() -> bool:
    """:func:`can_raise_limits` of this process, read once per process: every container start
    parses its limits, and a runner's capabilities do not change while it runs."""
    pid = os.getpid()
    if pid not in _CAN_RAISE:
        _CAN_RAISE[pid] = can_raise_limits()
    return _CAN_RAISE[pid]


def runner_hard_limit(name: str) -> int | None:
    """This process's hard limit (None = unlimited)."""
    hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}", _RLIMIT_LOCKS))[1]
    return None if hard == resource.RLIM_INFINITY else hard


def _above(a: int | None, b: int | None) -> bool:
    return b is not None and (a is None or a > b)


def parse_rlimits(
    items: Iterable[object],
    where: str,
    *,
    can_raise: bool | None = None,
    hard_limit: Callable[[str], int | None] = runner_hard_limit,
) -> tuple[Rlimit, ...]:
    """Every limit, the defaults overridden by ``items`` (``NAME=V`` or ``NAME=SOFT:HARD``)."""
    raise_ok = _runner_can_raise() if can_raise is None else can_raise
    chosen = dict(DEFAULT_RLIMITS)
    if not raise_ok:
        for name, (soft, hard) in DEFAULT_RLIMITS.items():
            ceiling = hard_limit(name)
            if _above(hard, ceiling):
                chosen[name] = (ceiling if _above(soft, ceiling) else soft, ceiling)
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise UsageError(f"{where}: rlimit {item!r} must be 'NAME=VALUE' or 'NAME=SOFT:HARD'")
        name, _, value = item.partition("=")
        if name not in DEFAULT_RLIMITS:
            raise UsageError(f"{where}: unknown rlimit {name!r}; choose from {', '.join(RLIMIT_NAMES)}")
        soft_text, _, hard_text = value.partition(":")
        soft = _value(soft_text, where, item)
        hard = _value(hard_text, where, item) if hard_text else soft
        if hard is not None and (soft is None or soft > hard):
            raise UsageError(f"{where}: rlimit {item!r}: the soft limit exceeds the hard one")
        if not raise_ok and _above(hard, hard_limit(name)):
            raise UsageError(
                f"{where}: rlimit {item!r} is above the runner's hard limit {_fmt(hard_limit(name))}, "
                "and this host gives the runner no CAP_SYS_RESOURCE to raise it"
            )
        chosen[name] = (soft, hard)
    return tuple(Rlimit(n, *chosen[n]) for n in RLIMIT_NAMES)
