"""The escape battery: each known container-escape primitive tried from inside a sandbox, recorded
as open, blocked, n/a or error with its evidence.

The probe (``probe.c``, static, built on the host by :mod:`isobench.escape.build`) attempts every
primitive without walking through an open door; the host plants the canaries it aims at
(:mod:`isobench.escape.canaries`) and decides what the probe saw (:mod:`isobench.escape.verdicts`).
"""

from isobench.escape.battery import run_battery
from isobench.escape.build import ensure_probe
from isobench.escape.canaries import LINK_NAME, Canaries, planted
from isobench.escape.verdicts import (
    PRIMITIVES,
    HostFacts,
    Primitive,
    Result,
    Verdict,
    decide,
    measurements,
    parse_lines,
)

__all__ = [
    "LINK_NAME",
    "PRIMITIVES",
    "Canaries",
    "HostFacts",
    "Primitive",
    "Result",
    "Verdict",
    "decide",
    "ensure_probe",
    "measurements",
    "parse_lines",
    "planted",
    "run_battery",
]
