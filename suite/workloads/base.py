"""The workload protocol and registry.

A workload is defined once and runs identically through every driver: it asks its context for a
sandbox, runs real tools inside it, and turns their output into Measurements with a pure parser.
Workload modules live in ``suite/workloads/`` and expose ``WORKLOAD``; the registry finds them. Their
classes derive from ``_common.BaseWorkload`` (the protocol's defaults) and read their parameters
with ``XParams.of(ctx)``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from isobench.drivers.base import Driver, Sandbox, SandboxSpec
from isobench.errors import UsageError
from isobench.model import Measurement
from isobench.plugins import plugins

log = logging.getLogger(__name__)

__all__ = ["Workload", "WorkloadContext", "all_workloads", "check_fit", "check_params", "get_workload"]


class SandboxFactory(Protocol):
    def __call__(self, **overrides: Any) -> AbstractContextManager[Sandbox]: ...


@dataclass
class WorkloadContext:
    """What a workload gets from the runner for one cell (driver x workload x repetition)."""

    driver: Driver
    #: The cell's base spec; ``sandbox(**overrides)`` derives from it (e.g. ``network=True``).
    spec: SandboxSpec
    #: Opens a sandbox that the runner owns: destroyed on every path, Ctrl-C included.
    sandbox: SandboxFactory
    quick: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Seconds this cell may still take; workloads size their tool timeouts from it.
    timeout: float = 600.0
    #: An empty host directory for this cell's files (e.g. a volume), under the run's locked work
    #: dir: the runner removes it when the cell ends, ``isobench gc`` when the run died.
    scratch: Path | None = None
    #: The run's long-lived state (built images, cached layer stacks); None in tests that need none.
    state_dir: Path | None = None


class Workload(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]
    #: At most this many repetitions in any run (None: as configured), for workloads whose one cell
    #: already aggregates a lot (leakage verdicts, interference's baseline vs stress, fio's and
    #: iperf3's thousands of I/Os); under --quick, ``quick_repetitions`` caps further.
    max_repetitions: ClassVar[int | None]
    quick_repetitions: ClassVar[int | None]
    #: Figures (globs over metric names) a budgeted run repeats until their CI is narrow enough;
    #: empty for verdicts and aggregates that more repetitions would not sharpen (isobench.budget).
    precision_figures: ClassVar[tuple[str, ...]]
    #: Whether a budgeted run (which has no warm-up rounds) still gives it one unrecorded cell per
    #: driver before its first round: for a figure whose first-ever cell pays first-use costs
    #: (binaries and images into the page cache) that would otherwise sit in its rep 0.
    first_use_warmup: ClassVar[bool]
    #: Tools (basenames) that must exist in the sandbox; checked up front for a clear error.
    tools: ClassVar[tuple[str, ...]]
    #: Its parameters: a frozen dataclass deriving from ``_common.Params`` with a ``quick()``
    #: classmethod; ``[workloads.<name>]`` in the config is checked against it (types, ranges, allowed
    #: values) before a run starts.
    params_type: ClassVar[type]

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]: ...


#: The default matrix, in the order they are run within a repetition: every workload, cheapest first,
#: so a short run still covers start-up, CPU and memory before the long I/O and leakage cells.
DEFAULT_WORKLOADS = (
    "startup",
    "idle-memory",
    "cpu",
    "memory-bandwidth",
    "syscall",
    "overlay",
    "disk",
    "network",
    "leakage",
    "escape",
    "interference",
    "limits",
    "density",
)


def all_workloads() -> dict[str, type[Workload]]:
    """Every workload module that imports, by name. A module that fails to import is logged, not fatal."""
    found: dict[str, type[Workload]] = {}
    for _, cls in plugins("isobench.workloads", "WORKLOAD", "workload module"):
        found[cls.name] = cls
    return dict(sorted(found.items()))


def get_workload(name: str) -> Workload:
    found = all_workloads()
    if name not in found:
        raise UsageError(f"unknown workload {name!r}; known: {', '.join(found) or 'none'}")
    return found[name]()


def check_params(params: Mapping[str, Mapping[str, Any]], *, quick: bool) -> None:
    """Every ``[workloads.<name>]`` table, checked before a run starts: a typo is one clear error
    then, not a failed cell in every repetition of an hour-long run."""
    from isobench.workloads._common import resolve_params

    known = all_workloads()
    for name, given in params.items():
        if name not in known:
            raise UsageError(f"[workloads.{name}]: no such workload; known: {', '.join(known)}")
        resolve_params(known[name].params_type, quick, given, name)


def check_fit(
    workloads: Iterable[str],
    params: Mapping[str, Mapping[str, Any]],
    *,
    quick: bool,
    memory_mib: int,
    cpus: Collection[int] | None,
) -> None:
    """The chosen workloads' parameters (defaults included) against the run's sandbox and host,
    before a run starts: a block that cannot fit the sandbox's memory is one error then, not a
    failed cell in every repetition. ``quick``: the sizes the run will use."""
    from isobench.workloads._common import Params, resolve_params

    known = all_workloads()
    for name in workloads:
        chosen: Params = resolve_params(known[name].params_type, quick, params.get(name, {}), name)
        misfit = chosen.misfit(memory_mib, cpus)
        if misfit:
            raise UsageError(misfit)
