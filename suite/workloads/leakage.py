"""The ``leakage`` workload: how much a sandbox can see of its host, probe by probe.

Run once per driver. A driver whose hardening can be switched off
(``capabilities.switchable_hardening``, as the container driver's can) is scored with the profile on
and off in the same cell, so the report shows what hardening buys; ``hardening`` is then in every
measurement's params. A spec that sets ``options["hardening"]`` itself is scored with that profile
only. The host plants canaries for each sandbox and drives the correlation loads; see
:mod:`isobench.leakage`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from isobench.leakage import (
    CorrelationSettings,
    env_canary,
    measurements,
    planted_canaries,
    run_correlations,
    run_static,
)
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["WORKLOAD", "LeakageWorkload"]


@dataclass(frozen=True)
class LeakageParams(Params):
    workload: ClassVar[str] = "leakage"

    #: also run the correlation channels (the static probes always run)
    correlations: bool = True

    @classmethod
    def quick(cls) -> LeakageParams:
        return cls()


class LeakageWorkload(BaseWorkload):
    name = "leakage"
    description = "information leakage probes (equality, canary, correlation, presence)"
    tools = ("sh", "cat", "grep", "sleep", "ls", "head", "wc", "readlink")
    #: One cell holds its own comparison (verdicts / baseline vs stress); a smoke run needs one.
    max_repetitions = 1
    quick_repetitions = 1
    params_type = LeakageParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        correlations = LeakageParams.of(ctx).correlations
        settings = CorrelationSettings.quick() if ctx.quick else CorrelationSettings()
        out: list[Measurement] = []
        for hardening in _profiles(ctx):
            params: dict[str, Any] = {} if hardening is None else {"hardening": hardening}
            overrides: dict[str, Any] = {} if hardening is None else {"options": {"hardening": hardening}}
            # The environment canary must be in place while the sandbox is created (its init
            # inherits it or not); the others are planted once it runs.
            with (
                env_canary(ctx.spec.run_id),
                ctx.sandbox(**overrides) as sandbox,
                planted_canaries(ctx.spec.run_id) as canaries,
            ):
                if canaries.problems:
                    log.warning("some canaries could not be planted: %s", "; ".join(canaries.problems))
                results = run_static(sandbox, ctx.spec, canaries, timeout=min(120.0, ctx.timeout))
                if correlations:
                    results += run_correlations(sandbox, run_id=ctx.spec.run_id, settings=settings)
            out += measurements(results, params)
        return out


def _profiles(ctx: WorkloadContext) -> tuple[bool | None, ...]:
    """Hardening profiles to score: both where the driver can switch it, else just what it has."""
    if "hardening" in ctx.spec.options:
        return (bool(ctx.spec.options["hardening"]),)
    if ctx.driver.capabilities.switchable_hardening:
        return (True, False)
    return (None,)


WORKLOAD = LeakageWorkload
