"""The ``host`` driver: no isolation at all, so every other figure can be a ratio to it."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    Availability,
    DriverContext,
    ExecResult,
    OptionTypes,
    PhaseClock,
    SandboxBase,
    SandboxSpec,
)
from isobench.procs import run_command


class HostSandbox(SandboxBase):
    """A scratch directory on the host; commands run there as ordinary host processes."""

    kind = "host sandbox"

    def __init__(self, spec: SandboxSpec, scratch: Path, clock: PhaseClock) -> None:
        super().__init__(spec, clock)
        self._scratch = scratch

    @property
    def workdir(self) -> str:
        return str(self._scratch)

    @property
    def address(self) -> str | None:
        return "127.0.0.1" if self._spec.network else None

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        self._check_exec(argv)
        return run_command(argv, timeout=timeout, env=env, cwd=self._scratch, stdin=stdin)

    def stats(self) -> Mapping[str, float]:
        return {}

    def _teardown(self) -> list[str]:
        shutil.rmtree(self._scratch, ignore_errors=True)
        return []


class HostDriver:
    name: ClassVar[str] = "host"
    description: ClassVar[str] = "native baseline: no isolation, host binaries, host filesystem"
    option_types: ClassVar[OptionTypes] = {}

    def __init__(self, ctx: DriverContext) -> None:
        self._ctx = ctx

    def availability(self) -> Availability:
        return Availability(ok=True)

    def metadata(self) -> Mapping[str, Any]:
        # A volume is just a host directory: the baseline the sandboxes' volume rows compare to.
        return {"isolation": "none", "volume": "host directory"}

    def create(self, spec: SandboxSpec) -> HostSandbox:
        clock = PhaseClock()
        with clock.phase("create"):
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
