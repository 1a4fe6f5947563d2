"""The ``host`` driver: no isolation at all, so every other figure can be a ratio to it.

It honours ``spec.cpuset`` as CPU affinity of everything it runs, so the native baseline runs on
the CPUs the sandboxes get. ``[drivers.host] start_delay = S`` waits S seconds inside ``create``
(slept from 1 ms up, spun on the monotonic clock below: a sleep cannot be that short, so a spin is
the only way to add e.g. 18 us, 10% of a host start): a known, injected start-up regression for
validating the regression gate (``benchmarks/gate_validity.py``), never for measuring.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    Availability,
    Capabilities,
    DriverContext,
    DriverKind,
    DriverOptions,
    ExecModel,
    ExecRequest,
    ExecResult,
    PhaseClock,
    RootStorage,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
    Volume,
)
from isobench.drivers.options import option
from isobench.procs import run_command


@dataclass(frozen=True)
class HostOptions(DriverOptions):
    #: Seconds waited inside create: an injected regression for the gate's validation only.
    start_delay: float = option(0.0, ge=0)


#: Below this a start delay is spun, not slept: a sleep overshoots by tens of microseconds.
SPIN_BELOW = 0.001


def wait(seconds: float) -> None:
    """Wait ``seconds``: slept from :data:`SPIN_BELOW` up, spun on the monotonic clock below it."""
    if seconds >= SPIN_BELOW:
        time.sleep(seconds)
    elif seconds > 0:
        end = time.monotonic_ns() + round(seconds * 1e9)
        while time.monotonic_ns() < end:
            pass


class HostSandbox(SandboxBase):
    """A scratch directory on the host; commands run there as ordinary host processes."""

    kind = "host sandbox"

    def __init__(self, spec: SandboxSpec, scratch: Path, clock: PhaseClock) -> None:
        super().__init__(spec, clock, workdir=str(scratch), address="127.0.0.1" if spec.network else None)
        self._scratch = scratch

    def _exec(self, req: ExecRequest) -> ExecResult:
        return run_command(
            req.argv,
            timeout=req.timeout,
            env=req.env,
            cwd=self._scratch,
            stdin=req.stdin,
            cpus=self._spec.cpuset,
        )

    def stats(self) -> SandboxStats:
        # No cgroup of its own: nothing to attribute to it.
        return SandboxStats()

    def _teardown(self) -> list[str]:
        shutil.rmtree(self._scratch, ignore_errors=True)
        return []


class HostDriver:
    name: ClassVar[str] = "host"
    description: ClassVar[str] = "native baseline: no isolation, host binaries, host filesystem"
    capabilities: ClassVar[Capabilities] = Capabilities(
        kind=DriverKind.NATIVE,
        root_storage=RootStorage.HOST_FS,
        volume=Volume.HOST_PATH,
        switchable_hardening=False,
        exec_model=ExecModel.DIRECT,
        order=0,
    )
    options_type: ClassVar[type[DriverOptions]] = HostOptions
    #: It leaves nothing on the host for a sweep to find, so there is nothing to spare either.
    spares_live_runs: ClassVar[bool] = True

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx
        self.opts = HostOptions.parse(self.name, ctx.options)

    def availability(self) -> Availability:
        return Availability(ok=True)

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def metadata(self) -> Mapping[str, Any]:
        # A volume is just a host directory: the baseline the sandboxes' volume rows compare to.
        meta: dict[str, Any] = {
            "isolation": "none",
            "volume": "host directory",
            "cpu_affinity": "spec.cpuset",
        }
        if self.opts.start_delay:
            meta["start_delay_s"] = self.opts.start_delay
        return meta

    def create(self, spec: SandboxSpec) -> HostSandbox:
        clock = PhaseClock()
        with clock.phase("create"):
            wait(float(spec.options.get("start_delay", 0) or 0))
            self._ctx.work_dir.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=self._ctx.work_dir))
        now = time.monotonic_ns()
        clock.add("ready", now, now)
        return HostSandbox(spec, scratch, clock)

    def gc(self, run_id: str | None = None) -> list[str]:
        # Host sandboxes are only directories in the run's work dir, which the runner removes.
        return []

    def close(self) -> None:
        pass
