"""The ``leakage`` workload: how much a sandbox can see of its host, probe by probe.

Run it once per driver (and for the container driver with ``hardening`` on and off: the runner sets
``spec.options["hardening"]`` and the value is echoed in every measurement's params). The host plants
canaries for the whole run and drives the correlation loads; see :mod:`isobench.leakage`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from isobench.leakage import (
    CorrelationSettings,
    measurements,
    planted_canaries,
    run_correlations,
    run_static,
)
from isobench.model import Measurement
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["WORKLOAD", "LeakageWorkload"]


class LeakageWorkload:
    name: ClassVar[str] = "leakage"
    description: ClassVar[str] = "information leakage probes (equality, canary, correlation, presence)"
    tools: ClassVar[tuple[str, ...]] = ("sh", "cat", "grep", "sleep", "ls", "head", "wc", "readlink")
    #: One cell holds its own comparison (verdicts / baseline vs stress); a smoke run needs one.
    quick_repetitions: ClassVar[int | None] = 1

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params: dict[str, Any] = {}
        if "hardening" in ctx.spec.options:
            params["hardening"] = bool(ctx.spec.options["hardening"])
        correlations = ctx.params.get("correlations", True)
        settings = CorrelationSettings.quick() if ctx.quick else CorrelationSettings()
        with ctx.sandbox() as sandbox, planted_canaries(ctx.spec.run_id) as canaries:
            if canaries.problems:
                log.warning("some canaries could not be planted: %s", "; ".join(canaries.problems))
            results = run_static(sandbox, ctx.spec, canaries, timeout=min(120.0, ctx.timeout))
            if correlations:
                results += run_correlations(sandbox, run_id=ctx.spec.run_id, settings=settings)
        return measurements(results, params)


WORKLOAD = LeakageWorkload
