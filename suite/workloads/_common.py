"""Helpers every workload shares: parameter resolution, time budgets and checked execs.

Private to the workload package (the registry finds no ``WORKLOAD`` here). Nothing in this module
knows about a specific tool; parsers live next to the workload that runs the tool.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from isobench.drivers.base import ExecResult, Sandbox
from isobench.errors import CellTimeout, UsageError, WorkloadError

__all__ = [
    "Budget",
    "last_line",
    "resolve_params",
    "run_checked",
    "strip_ansi",
]

P = TypeVar("P")


def resolve_params(cls: type[P], quick: bool, overrides: Mapping[str, Any], workload: str) -> P:
    """The workload's parameters: its quick or full defaults, with the user's config on top.

    ``cls`` is a frozen dataclass with a ``quick()`` classmethod; unknown keys are a usage error so a
    typo in the config file does not silently measure the default.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    base: Any = cls.quick() if quick else cls()  # type: ignore[attr-defined]
    known = {f.name: f for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UsageError(
            f"workload {workload}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    fixed: dict[str, Any] = {}
    for key, given in overrides.items():
        current = getattr(base, key)
        value = given
        # Config files give lists for tuples and ints for floats; anything else is the user's mistake.
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if current is not None and not isinstance(value, type(current)):
            raise UsageError(
                f"workload {workload}: parameter {key} must be {type(current).__name__}, got {value!r}"
            )
        _check_range(workload, key, value, known[key].metadata.get("min"))
        fixed[key] = value
    result: P = dataclasses.replace(base, **fixed)
    return result


def _check_range(workload: str, key: str, value: object, minimum: float | None) -> None:
    """Sizes, counts and durations are positive; a field whose metadata names a ``min`` (e.g. 0 for
    "off" or "auto") may go down to it. Checked here, before the run, not by the tool an hour in."""
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        n = float(v)
        if (minimum is None and not n > 0) or (minimum is not None and not n >= minimum):
            bound = "> 0" if minimum is None else f">= {minimum:g}"
            raise UsageError(f"workload {workload}: parameter {key} must be {bound}, got {value!r}")


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
