"""The ``escape`` workload: every known escape primitive tried from inside a sandbox.

Run once per driver, next to the leakage probes: the host plants canaries in the cell's scratch
directory (the volume beside them), the static probe goes into the sandbox on an exec's stdin and
reports what each attempt met, and the host decides open / blocked / n/a / error per primitive
(:mod:`isobench.escape`). A driver whose hardening can be switched off is tried with it on and off
in the same cell, as the leakage workload does.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.config import DEFAULT_STATE_DIR
from isobench.escape import ensure_probe, measurements, planted, run_battery
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params
from isobench.workloads.base import WorkloadContext
from isobench.workloads.leakage import _profiles as hardening_profiles

log = logging.getLogger(__name__)

__all__ = ["WORKLOAD", "EscapeParams", "EscapeWorkload"]


@dataclass(frozen=True)
class EscapeParams(Params):
    workload: ClassVar[str] = "escape"

    #: seconds the probe may take inside (it needs well under one)
    probe_timeout: float = 60.0

    @classmethod
    def quick(cls) -> EscapeParams:
        return cls()


def state_dir_of(scratch: Path | None) -> Path:
    """The run's state directory (the cell's scratch is ``<state_dir>/runs/<id>/work/cells/<n>``),
    where the probe is cached; the default one outside a run."""
    for parent in scratch.parents if scratch is not None else ():
        if parent.name == "runs":
            return parent.parent
    return DEFAULT_STATE_DIR


@contextmanager
def _base(scratch: Path | None) -> Iterator[Path]:
    if scratch is not None:
        yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="isobench-escape-", dir="/var/tmp") as tmp:
        yield Path(tmp)


class EscapeWorkload(BaseWorkload):
    name = "escape"
    description = "escape battery: known container-escape primitives, blocked or open"
    tools = ("sh", "cat", "chmod", "rm")
    #: One cell holds every verdict; repeating it sharpens nothing.
    max_repetitions = 1
    quick_repetitions = 1
    params_type = EscapeParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = EscapeParams.of(ctx)
        probe = ensure_probe(state_dir_of(ctx.scratch))
        caps = ctx.driver.capabilities
        out: list[Measurement] = []
        with _base(ctx.scratch) as base:
            for hardening in hardening_profiles(ctx):
                tags: dict[str, Any] = {} if hardening is None else {"hardening": hardening}
                where = base / ("default" if hardening is None else f"hardening-{str(hardening).lower()}")
                where.mkdir()
                with planted(where, probe, lifetime=ctx.timeout) as canaries:
                    overrides: dict[str, Any] = (
                        {} if hardening is None else {"options": {"hardening": hardening}}
                    )
                    volume_inside = None
                    if caps.volume is not None:
                        overrides["volume"] = canaries.volume
                        volume_inside = caps.volume_path(canaries.volume)
                    with ctx.sandbox(**overrides) as sandbox:
                        results = run_battery(
                            sandbox,
                            canaries,
                            probe,
                            volume_inside=volume_inside,
                            timeout=min(params.probe_timeout, ctx.timeout),
                        )
                out += measurements(results, tags)
        return out


WORKLOAD = EscapeWorkload
