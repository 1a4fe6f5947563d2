"""What differs between the two sides of a comparison besides the code: the sandboxes' settings,
the host's software, and the accelerator the guests ran on. A regression gate attributes every
change to the code under test; a side measured with 2 vCPUs, after a kernel or QEMU upgrade, or
with guests under TCG instead of KVM (a KVM probe that timed out in one run and not the other)
changes figures by itself, by up to an order of magnitude for guests. ``isobench compare`` names
each such difference as a warning; the isobench commit is the change itself and is not one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from isobench.results import Results

from .units import human

__all__ = ["confounds"]

#: The run config's sandbox settings that shape every figure but are not a sample's params.
SETTINGS = ("vcpus", "memory_mib", "cpuset")
#: The host's facts whose change changes figures, as a reader names them (the hostname has its
#: own warning).
HOST_FACTS = {
    "kernel": "kernel",
    "cpu_model": "CPU",
    "cpus": "CPUs",
    "memory_bytes": "memory",
    "cgroup_mode": "cgroups",
    "cpu_governor": "governor",
}

#: Keys into a run record, outermost first: ("config", "memory_mib").
KeyPath = tuple[str, ...]


def _dig(doc: Any, path: KeyPath) -> Any:
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any, path: KeyPath) -> str:
    if isinstance(value, bool):  # as the TOML config spells it
        return "true" if value else "false"
    if path[-1] == "memory_bytes" and isinstance(value, int | float):
        return human(value, "bytes")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _values(runs: Iterable[Results], path: KeyPath, default: str | None = None) -> tuple[str, ...]:
    """The distinct values a run record holds at ``path`` over ``runs``; a run without one counts
    as ``default``, or is left out when there is none."""
    seen = set()
    for r in runs:
        value = _dig(r.run, path)
        if value is not None:
            seen.add(_text(value, path))
        elif default is not None:
            seen.add(default)
    return tuple(sorted(seen))


def _differences(
    base: Sequence[Results],
    cur: Sequence[Results],
    fields: Iterable[tuple[str, KeyPath]],
    default: str | None = None,
) -> list[str]:
    """``name a vs b`` for every field whose values differ between the sides (recorded on both, or
    ``default`` where a run has none)."""
    out = []
    for name, path in fields:
        a, b = _values(base, path, default), _values(cur, path, default)
        if a and b and a != b:
            out.append(f"{name} {'/'.join(a)} vs {'/'.join(b)}")
    return out


def _keys(runs: Iterable[Results], path: KeyPath) -> list[str]:
    return sorted({k for r in runs if isinstance(d := _dig(r.run, path), Mapping) for k in d})


def _host_fields(runs: Sequence[Results]) -> list[tuple[str, KeyPath]]:
    """Where the measuring host's facts are: ``run["host"]`` for a local run; per host name under
    ``run["cluster"]`` for a fleet run (whose ``run["host"]`` is the client's machine, which
    measures nothing); none when one side is a fleet and the other is not (the hostnames differ,
    which compare says anyway)."""
    fleets = sum("cluster" in r.run for r in runs)
    if not fleets:
        where: list[tuple[str, KeyPath]] = [("", ("host",))]
    elif fleets == len(runs):
        where = [(f"{h}: ", ("cluster", "hosts", h, "info")) for h in _keys(runs, ("cluster", "hosts"))]
    else:
        return []
    return [
        field
        for prefix, at in where
        for field in (
            *((prefix + name, (*at, k)) for k, name in HOST_FACTS.items()),
            *((prefix + t, (*at, "versions", t)) for t in _keys(runs, (*at, "versions"))),
        )
    ]


def confounds(base: Sequence[Results], cur: Sequence[Results], sides: str = "the sides") -> list[str]:
    """One warning line per kind of difference between the sides (none when they match); ``sides``
    names them in the words of the caller ("the latest run and the one before")."""
    both = (*base, *cur)
    lines = []
    settings = _differences(base, cur, [(k, ("config", k)) for k in SETTINGS])
    # a [drivers.X] option one side did not set is that side's default
    options = [
        (f"drivers.{d}.{o}", ("config", "driver_options", d, o))
        for d in _keys(both, ("config", "driver_options"))
        for o in _keys(both, ("config", "driver_options", d))
    ]
    settings += _differences(base, cur, options, default="default")
    if settings:
        lines.append(
            f"{sides} ran under different settings ({'; '.join(settings)}): a change may be the "
            "setting's, not the code's"
        )
    if host := _differences(base, cur, _host_fields(both)):
        lines.append(
            f"the host differs between {sides} ({'; '.join(host)}): a change may be the host's, "
            "not the code's"
        )
    guests = [(d, ("drivers", d, "accel")) for d in _keys(both, ("drivers",))]
    if accel := _differences(base, cur, guests):
        lines.append(
            f"the guests' accelerator differs between {sides} ({'; '.join(accel)}): their figures "
            "compare the accelerators (KVM, or TCG software emulation), not the code"
        )
    return lines
