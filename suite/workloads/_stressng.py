"""Pure parser for stress-ng ``--metrics-brief`` output (stress-ng 0.15, printed on stderr)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from isobench.errors import WorkloadError

__all__ = ["StressNgMetric", "parse_stress_ng_metrics"]


@dataclass(frozen=True)
class StressNgMetric:
    stressor: str
    bogo_ops: int
    real_seconds: float
    usr_seconds: float
    sys_seconds: float
    ops_per_second_real: float
    ops_per_second_cpu: float


_ROW = re.compile(
    r"^stress-ng: metrc: \[\d+\] (?P<name>[a-z0-9-]+)\s+(?P<ops>\d+)\s+(?P<real>[\d.]+)\s+"
    r"(?P<usr>[\d.]+)\s+(?P<sys>[\d.]+)\s+(?P<rate>[\d.]+)\s+(?P<cpurate>[\d.]+)",
    re.MULTILINE,
)


def parse_stress_ng_metrics(text: str, stressor: str) -> StressNgMetric:
    """The metrics row of ``stressor``; stress-ng exits 0 even when it skipped the stressor
    (e.g. ``exec`` refuses to run as root), so a missing row is the failure signal."""
    for m in _ROW.finditer(text):
        if m.group("name") != stressor:
            continue
        metric = StressNgMetric(
            stressor=stressor,
            bogo_ops=int(m.group("ops")),
            real_seconds=float(m.group("real")),
            usr_seconds=float(m.group("usr")),
            sys_seconds=float(m.group("sys")),
            ops_per_second_real=float(m.group("rate")),
            ops_per_second_cpu=float(m.group("cpurate")),
        )
        if metric.bogo_ops <= 0 or metric.real_seconds <= 0:
            raise WorkloadError(f"stress-ng {stressor} did no work ({metric.bogo_ops} ops)")
        return metric
    reason = [
        line.split("]", 1)[-1].strip()
        for line in text.splitlines()
        if "skipping" in line or "error" in line or "unrecognized" in line
    ]
    raise WorkloadError(
        f"stress-ng printed no metrics for {stressor}: {'; '.join(reason) or 'no metrc lines'}"
    )
