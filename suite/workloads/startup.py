"""The ``startup`` workload: cold start of a sandbox to ready, to the exit of a trivial command, and
through teardown, with the driver's own phase breakdown.

The timings come from the sandbox's PhaseClock (CLOCK_MONOTONIC, recorded by the driver) plus the
exec of ``true``; nothing is estimated.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from isobench.errors import WorkloadError
from isobench.model import Measurement, PhaseTiming
from isobench.workloads._common import BaseWorkload, Params, run_checked
from isobench.workloads.base import WorkloadContext

__all__ = ["WORKLOAD", "StartupParams", "StartupWorkload", "startup_measurements"]


@dataclass(frozen=True)
class StartupParams(Params):
    workload: ClassVar[str] = "startup"

    #: The trivial command whose exit marks "started"; ``true`` exists in every image.
    command: tuple[str, ...] = ("true",)

    @classmethod
    def quick(cls) -> StartupParams:
        return cls()


def startup_measurements(
    phases: Sequence[PhaseTiming],
    *,
    exec_start_ns: int,
    exec_end_ns: int,
    outer_start_ns: int,
    outer_end_ns: int,
) -> list[Measurement]:
    """Turn a sandbox's phases and the exec interval into measurements (pure, for testing).

    ``outer_*`` bracket the whole life as the workload saw it (factory call to after destroy), so
    ``startup.total`` includes anything the driver did not attribute to a phase.
    """
    by_name = {p.name: p for p in phases}
    missing = [n for n in ("create", "ready", "destroy") if n not in by_name]
    if missing:
        raise WorkloadError(f"driver recorded no {', '.join(missing)} phase; fix the driver's PhaseClock use")
    start = min(p.start_ns for p in phases)
    ready_end = by_name["ready"].end_ns
    if not start <= ready_end <= exec_start_ns <= exec_end_ns:
        raise WorkloadError("sandbox phases are out of order (ready after exec); driver clock is wrong")
    out = [
        Measurement(
            # One metric per phase, so each is summarised and gated on its own; "phase." keeps a
            # driver phase named like an aggregate (runc has "exec") from colliding with it.
            metric=f"startup.phase.{p.name}",
            value=p.seconds,
            unit="seconds",
            better="lower",
            phase=p.name,
            metadata={"clock": "CLOCK_MONOTONIC", "offset_s": (p.start_ns - start) / 1e9},
        )
        for p in phases
    ]
    out += [
        Measurement("startup.to_ready", (ready_end - start) / 1e9, "seconds", "lower"),
        Measurement("startup.exec", (exec_end_ns - exec_start_ns) / 1e9, "seconds", "lower"),
        # Ready plus the command, not the wall time from start to the command's exit: runc, docker
        # and bwrap run a check of their own inside create (``true`` once, so a broken sandbox fails
        # its create), which is the driver's choice, not the runtime's cost, and the gap between
        # create's return and the exec is this workload's. bwrap pays its namespaces in every exec
        # and is "ready" before any exist: this figure, not to_ready, compares it with the others.
        Measurement(
            "startup.to_exit",
            (ready_end - start + exec_end_ns - exec_start_ns) / 1e9,
            "seconds",
            "lower",
            metadata={"includes": "to_ready + exec (a check the driver runs inside create is not in it)"},
        ),
        Measurement(
            "startup.total",
            (outer_end_ns - outer_start_ns) / 1e9,
            "seconds",
            "lower",
            metadata={"includes": "create, ready, exec, destroy"},
        ),
    ]
    return out


class StartupWorkload(BaseWorkload):
    name = "startup"
    description = "cold start to ready and to a first command's exit (`true`), with the driver's phases"
    tools = ("true",)
    precision_figures = ("startup.*",)
    #: A driver's first start in a run was its slowest of six in default runs here (runc 247 ms
    #: against 140-164, bwrap 32.5 against 16.5-23.5), widening the interval users read first.
    first_use_warmup = True
    params_type = StartupParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = StartupParams.of(ctx)
        budget = self.budget(ctx)
        outer_start = time.monotonic_ns()
        with ctx.sandbox() as sandbox:
            res = run_checked(sandbox, params.command, timeout=budget.left(), what=" ".join(params.command))
        outer_end = time.monotonic_ns()
        # The factory destroyed the sandbox on leaving the block; its phases now include `destroy`.
        return startup_measurements(
            sandbox.phases,
            exec_start_ns=res.start_ns,
            exec_end_ns=res.end_ns,
            outer_start_ns=outer_start,
            outer_end_ns=outer_end,
        )


WORKLOAD = StartupWorkload
