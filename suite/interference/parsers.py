"""Victims' tool output in, figures out; and the degradation figure D.

Degradation D is positive when the victim got worse:

- mean: D = (baseline - stressed) / baseline of the victim's throughput (higher is better);
- p99:  D = (stressed - baseline) / baseline of its 99th percentile latency (lower is better).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from isobench.errors import WorkloadError

__all__ = ["VictimResult", "degradation", "parse_fio", "parse_iperf3", "parse_sysbench"]


@dataclass(frozen=True)
class VictimResult:
    throughput: float
    unit: str
    p99_ms: float | None = None
    mean_latency_ms: float | None = None


def _float(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


def parse_sysbench(text: str) -> VictimResult:
    """``sysbench cpu|memory run`` text output: events/s (cpu) or MiB/s (memory), avg and p99 latency."""
    mib = _float(r"\(([\d.]+) MiB/sec\)", text)
    eps = _float(r"events per second:\s*([\d.]+)", text)
    p99 = _float(r"99th percentile:\s*([\d.]+)", text)
    avg = _float(r"^\s*avg:\s*([\d.]+)", text)
    if mib is not None:
        return VictimResult(mib, "MiB/s", p99, avg)
    if eps is not None:
        return VictimResult(eps, "events/s", p99, avg)
    raise WorkloadError(f"sysbench output has no throughput: {text.strip()[-200:]!r}")


def parse_fio(text: str) -> VictimResult:
    """fio ``--output-format=json``: IOPS of the first job (read+write) and the p99 completion latency."""
    try:
        start = text.index("{")
        job = json.loads(text[start:])["jobs"][0]
    except (ValueError, KeyError, IndexError) as err:
        raise WorkloadError(f"fio output is not JSON with a job: {text.strip()[:200]!r}") from err
    iops = 0.0
    p99: float | None = None
    mean: float | None = None
    for side in ("read", "write"):
        d = job.get(side, {})
        if d.get("iops", 0) > 0:
            iops += float(d["iops"])
            clat = d.get("clat_ns", {})
            pct = clat.get("percentile", {})
            if "99.000000" in pct:
                p99 = max(p99 or 0.0, pct["99.000000"] / 1e6)
            if "mean" in clat:
                mean = max(mean or 0.0, clat["mean"] / 1e6)
    if iops <= 0:
        raise WorkloadError("fio did no I/O; check the victim's workdir")
    return VictimResult(iops, "IOPS", p99, mean)


def parse_iperf3(text: str) -> VictimResult:
    try:
        start = text.index("{")
        bps = json.loads(text[start:])["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError) as err:
        raise WorkloadError(f"iperf3 output has no received throughput: {text.strip()[:200]!r}") from err
    return VictimResult(float(bps) / 1e9, "Gbit/s")


def degradation(baseline: VictimResult, stressed: VictimResult) -> tuple[float, float | None]:
    """(D of the mean throughput, D of the p99 latency or None); positive means worse."""
    if baseline.throughput <= 0:
        raise WorkloadError("victim baseline throughput is zero; the victim itself is broken")
    d_mean = (baseline.throughput - stressed.throughput) / baseline.throughput
    d_p99: float | None = None
    if baseline.p99_ms and stressed.p99_ms is not None:
        d_p99 = (stressed.p99_ms - baseline.p99_ms) / baseline.p99_ms
    return d_mean, d_p99
