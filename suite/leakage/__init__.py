"""Information-leakage probes: what a sandbox can learn about its host and neighbours.

Each probe runs inside the sandbox while the host reads or plants the same thing, and decides by one
of four rules (:mod:`isobench.leakage.rules`). The catalogue and its weights are in
:mod:`isobench.leakage.catalogue` (static probes) and :mod:`isobench.leakage.correlation`.
"""

from isobench.leakage.catalogue import STATIC_PROBES, Facts, StaticProbe
from isobench.leakage.correlation import CORRELATION_PROBES, CorrelationProbe
from isobench.leakage.host import Canaries, HostView, env_canary, gc, planted_canaries
from isobench.leakage.rules import Verdict
from isobench.leakage.runner import (
    CorrelationSettings,
    ProbeResult,
    Score,
    measurements,
    run_correlations,
    run_static,
    score,
)

__all__ = [
    "CORRELATION_PROBES",
    "STATIC_PROBES",
    "Canaries",
    "CorrelationProbe",
    "CorrelationSettings",
    "Facts",
    "HostView",
    "ProbeResult",
    "Score",
    "StaticProbe",
    "Verdict",
    "env_canary",
    "gc",
    "measurements",
    "planted_canaries",
    "run_correlations",
    "run_static",
    "score",
]
