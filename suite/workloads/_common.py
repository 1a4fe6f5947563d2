"""Helpers every workload shares: parameter resolution, time budgets and checked execs.

Private to the workload package (the registry finds no ``WORKLOAD`` here). Nothing in this module
knows about a specific tool; parsers live next to the workload that runs the tool.
"""

from __future__ import annotations

import dataclasses
import re
import time
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from isobench.drivers.base import ExecResult, Sandbox
from isobench.errors import CellTimeout, IsobenchError, UsageError, WorkloadError

if TYPE_CHECKING:
    from isobench.workloads.base import WorkloadContext

__all__ = [
    "BaseWorkload",
    "Budget",
    "Params",
    "last_line",
    "oom_kills",
    "resolve_params",
    "run_checked",
    "strip_ansi",
]


class Params:
    """Base of every workload's parameters: a frozen dataclass with a ``quick()`` classmethod, every
    field checked when it is made, so a bad ``[workloads.<name>]`` value is one clear error before a
    run, not a failed tool an hour in.

    A field is checked against its annotation (``int``, ``float`` (an int will do), ``str``,
    ``bool``, ``tuple[X, ...]`` (not empty), ``X | None``) and its metadata: numbers are > 0 unless
    ``min`` names a lower bound (e.g. 0 for "off" or "auto"); ``choices`` lists the allowed values of
    a string, or of each item of a tuple; ``path`` asks for an absolute path. A subclass checks what
    spans fields in its own ``__post_init__`` after calling this one.
    """

    #: The workload's name, for the error messages.
    workload: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_field(self.workload, f, hints[f.name], getattr(self, f.name))

    def misfit(self, memory_mib: int, cpus: Collection[int] | None) -> str | None:
        """Why these parameters cannot run in a sandbox of ``memory_mib`` on a host whose usable CPUs
        are ``cpus`` (None where unknown, e.g. a fleet's workers), or None when they can. Checked
        before a run against the run's sandbox and again in the cell; most workloads have nothing."""
        return None

    @classmethod
    def of(cls: type[P], ctx: WorkloadContext) -> P:
        """This cell's parameters: the quick or full defaults with the user's config on top."""
        return resolve_params(cls, ctx.quick, ctx.params, cls.workload)


P = TypeVar("P", bound=Params)


class BaseWorkload:
    """The defaults of the :class:`~isobench.workloads.base.Workload` protocol, so a workload states
    only what is its own: name, description, tools, the figures a budget repeats, repetition caps
    where one cell already aggregates, and its ``params_type`` (read with ``XParams.of(ctx)``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None
    precision_figures: ClassVar[tuple[str, ...]] = ()
    first_use_warmup: ClassVar[bool] = False
    params_type: ClassVar[type[Params]]

    def budget(self, ctx: WorkloadContext) -> Budget:
        """What is left of this cell's deadline (``ctx.timeout``), named after the workload."""
        return Budget(ctx.timeout, self.name)


def resolve_params(cls: type[P], quick: bool, overrides: Mapping[str, Any], workload: str) -> P:
    """The workload's parameters: its quick or full defaults, with the user's config on top.

    Unknown keys are a usage error so a typo in the config file does not silently measure the
    default; the values are checked by the class (see :class:`Params`).
    """
    base: Any = cls.quick() if quick else cls()  # type: ignore[attr-defined]
    known = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UsageError(
            f"workload {workload}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    # Config files give lists for tuples and ints for floats; anything else is checked as given.
    hints = typing.get_type_hints(cls)
    fixed: dict[str, Any] = {}
    for key, given in overrides.items():
        value = given
        if isinstance(value, list):
            value = tuple(value)
        elif hints[key] is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        fixed[key] = value
    result: P = dataclasses.replace(base, **fixed)
    return result


def _type_ok(value: object, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_type_ok(v, item) for v in value)
    if origin in (types.UnionType, typing.Union):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return "none" if hint is type(None) else str(hint.__name__)


def _check_field(workload: str, f: dataclasses.Field[Any], hint: Any, value: object) -> None:
    key = f.name
    if not _type_ok(value, hint):
        raise UsageError(f"workload {workload}: parameter {key} must be {_type_name(hint)}, got {value!r}")
    if value is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    if not values:
        raise UsageError(f"workload {workload}: parameter {key} must not be empty")
    minimum: float | None = f.metadata.get("min")
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if (minimum is None and not v > 0) or (minimum is not None and not v >= minimum):
            bound = "> 0" if minimum is None else f">= {minimum:g}"
            raise UsageError(f"workload {workload}: parameter {key} must be {bound}, got {value!r}")
    choices: Collection[str] | None = f.metadata.get("choices")
    if choices is not None:
        bad = [v for v in values if v not in choices]
        if bad and isinstance(value, tuple):
            raise UsageError(
                f"{workload}.{key}: unknown {', '.join(map(str, bad))}; known: {', '.join(choices)}"
            )
        if bad:
            raise UsageError(f"{workload}.{key} must be one of {', '.join(choices)}, not {value!r}")
    if f.metadata.get("path") and not all(str(v).startswith("/") for v in values):
        raise UsageError(f"workload {workload}: parameter {key} must be an absolute path, got {value!r}")


class Budget:
    """What is left of a cell's deadline, so every tool timeout fits inside it."""

    def __init__(self, seconds: float, what: str) -> None:
        self._end = time.monotonic() + seconds
        self._what = what

    def left(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise CellTimeout(f"{self._what} ran out of time; raise the cell timeout or use --quick")
        return remaining

    def cap(self, seconds: float) -> float:
        """``seconds``, or less if the cell has less left."""
        return min(seconds, self.left())


def run_checked(
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    env: Mapping[str, str] | None = None,
) -> ExecResult:
    """Run inside ``sandbox``; a non-zero exit is a WorkloadError naming the tool and its last words."""
    res = sandbox.exec(list(argv), timeout=timeout, env=env)
    if not res.ok:
        raise WorkloadError(
            f"{what} failed in sandbox {sandbox.name} (exit {res.exit_code}): "
            f"{last_line(res.stderr) or last_line(res.stdout) or 'no output'}"
        )
    return res


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def last_line(text: str) -> str:
    lines = [line.strip() for line in strip_ansi(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def oom_kills(sb: Sandbox) -> float | None:
    """The sandbox's OOM kills so far, or None when its driver cannot tell."""
    try:
        value = sb.stats().oom_kills
    except IsobenchError:
        return None
    return float(value) if value is not None else None
