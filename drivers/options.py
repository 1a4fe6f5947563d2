"""Typed driver options: each driver's ``[drivers.<name>]`` table parsed into a frozen dataclass.

A driver declares its options once, as a frozen dataclass deriving from :class:`DriverOptions`
(like the workloads' ``*Params``); the accepted TOML types come from the field's type hint and the
allowed range from the field's metadata (:func:`option`). ``parse`` checks a table completely --
unknown keys, types, ranges, choices -- so ``isobench run`` refuses a bad table before the first
cell, not a driver an hour in.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, get_args, get_origin, get_type_hints

from isobench.errors import UsageError

__all__ = ["DriverOptions", "OptionTypes", "option"]

#: What each key of a driver's ``[drivers.<name>]`` table may hold: the accepted value types
#: (``type(None)`` where null means "off"). bool is accepted only where it is named, never as a number.
OptionTypes = Mapping[str, tuple[type, ...]]

_NULL = type(None)


def option(default: Any, *, gt: float | None = None, ge: float | None = None) -> Any:
    """A dataclass field with a range: ``gt`` (strictly above) or ``ge`` (at least)."""
    return dataclasses.field(default=default, metadata={"gt": gt, "ge": ge})


def _accepted(hint: Any) -> tuple[tuple[type, ...], tuple[str, ...]]:
    """The TOML value types a field's hint accepts, and its choices (a Literal's values)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        found: list[type] = []
        choices: tuple[str, ...] = ()
        for arg in get_args(hint):
            accepted, more = _accepted(arg)
            found += [t for t in accepted if t not in found]
            choices += more
        return tuple(found), choices
    if get_origin(hint) is Literal:
        return (str,), tuple(str(a) for a in get_args(hint))
    if get_origin(hint) is tuple:
        return (list, tuple), ()
    if hint is _NULL or hint is None:
        return (_NULL,), ()
    if hint is float:
        return (int, float), ()
    if hint is Path:
        return (str,), ()
    return (hint,), ()


def _names(accepted: tuple[type, ...]) -> str:
    return " or ".join("null" if t is _NULL else t.__name__ for t in accepted)


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


@dataclasses.dataclass(frozen=True)
class DriverOptions:
    """Base of every driver's options dataclass. Subclasses are frozen dataclasses whose fields
    all have defaults (an empty table is the driver's defaults)."""

    @classmethod
    def option_types(cls) -> dict[str, tuple[type, ...]]:
        hints = get_type_hints(cls)
        return {f.name: _accepted(hints[f.name])[0] for f in dataclasses.fields(cls)}

    @classmethod
    def parse(cls, driver: str, table: Mapping[str, Any]) -> Self:
        """The options of ``[drivers.<driver>]``; any problem is one UsageError naming the key."""
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in fields:
                raise UsageError(
                    f"[drivers.{driver}]: unknown option {key!r}; known: {', '.join(sorted(fields)) or 'none'}"
                )
            accepted, choices = _accepted(hints[key])
            if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
                raise UsageError(
                    f"[drivers.{driver}]: option {key} must be {_names(accepted)}, got {value!r}"
                )
            if choices and value is not None and value not in choices:
                raise UsageError(f"drivers.{driver}.{key} must be {_one_of(choices)}, not {value!r}")
            _check_range(driver, key, value, fields[key].metadata)
            values[key] = _convert(hints[key], value)
        return cls(**values)


def _check_range(driver: str, key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    gt, ge = meta.get("gt"), meta.get("ge")
    if gt is not None and not value > gt:
        raise UsageError(f"drivers.{driver}.{key} must be > {gt:g}, got {value!r}")
    if ge is not None and not value >= ge:
        raise UsageError(f"drivers.{driver}.{key} must be >= {ge:g}, got {value!r}")


def _convert(hint: Any, value: Any) -> Any:
    """TOML gives ints for floats, lists for tuples and strings for paths."""
    members = _members(hint)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and Path in members:
        return Path(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in members and int not in members:
        return float(value)
    return value


def _members(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) in (typing.Union, types.UnionType):
        return get_args(hint)
    return (hint,)
