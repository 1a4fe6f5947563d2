"""Limit fidelity: per driver and limit, what was requested, what was delivered, and their ratio.

One row per (driver, limit) of the ``limits`` workload, medians over repetitions, in human units;
the last column says what stopped the probe (a cgroup OOM kill, a refused fork, the probe's own cap
when nothing did). A ratio near x1 is a limit held; well above it, no limit at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
from isobench.model import Sample
from isobench.results import Results

from .cells import driver_order
from .units import NA, human, human_ratio

__all__ = ["COLUMNS", "limits_table"]

COLUMNS = ("driver", "limit", "requested", "delivered", "ratio", "stopped by / note", "n")


#: Probes that run until something stops them: per metric, the limit's name, how the requested
#: and delivered values read, and the fidelity metric. The fork count gets the probe itself added.
_STOPPED: dict[str, tuple[str, Callable[[str], str], Callable[[float], str], str]] = {
    "limits.memory.stopped_at": (
        "memory",
        lambda p: human(float(p) * 2**20, "bytes"),
        lambda v: human(v, "bytes"),
        "limits.memory.fidelity",
    ),
    "limits.pids.forks": (
        "pids",
        lambda p: f"{p} processes",
        lambda v: f"{v + 1:.0f} processes",
        "limits.pids.fidelity",
    ),
}


#: While the pids and memory probes run: the host's probe and the neighbour sandbox.
OTHERS = ("host_probe_max", "neighbour_throughput", "neighbour_latency_max")

#: The disk probe: per delivered metric, the row's limit name and its fidelity metric.
_IO = {
    "limits.io.write.delivered": ("disk write", "limits.io.write.fidelity"),
    "limits.io.read.delivered": ("disk read", "limits.io.read.fidelity"),
}


def _median(samples: list[Sample]) -> float:
    return statistics.median(float(s.value) for s in samples if s.value is not None)


def _meta(samples: list[Sample], key: str) -> Any:
    return next((s.metadata[key] for s in samples if key in s.metadata), None)


def _cpu_note(delivered: list[Sample], host: list[Sample]) -> str:
    parts = []
    if host:
        parts.append(f"host accounted {human(_median(host), 'CPUs')}")
    other, cpus = _meta(delivered, "host_other_cpus"), _meta(delivered, "host_cpus")
    if isinstance(other, int | float) and cpus:
        parts.append(f"other work kept {max(other, 0):.2f} of the host's {cpus} CPUs busy meanwhile")
    return "; ".join(parts)


def _others_note(host: list[Sample], throughput: list[Sample], latency: list[Sample]) -> str:
    """How the host (its probe's worst latency) and the neighbour sandbox (its pace) fared."""
    parts = []
    if host:
        parts.append(f"host probe worst {human(_median(host), 'seconds')}")
    if throughput:
        extra = f", exec worst +{human(_median(latency), 'seconds')}" if latency else ""
        parts.append(f"neighbour ran at {human(_median(throughput), 'ratio')} of its pace alone{extra}")
    return "; ".join(parts)


def limits_table(results: Results | Iterable[Sample]) -> pd.DataFrame:
    samples = list(results.measured() if isinstance(results, Results) else results)
    by: dict[tuple[str, str, str], list[Sample]] = {}
    for s in samples:
        if s.workload != "limits" or s.value is None or s.warmup:
            continue
        param = next(iter(s.params.values()), "") if s.params else ""
        by.setdefault((s.driver, s.metric, str(param)), []).append(s)
    rows: list[dict[str, Any]] = []
    drivers = sorted({d for d, _, _ in by}, key=driver_order)

    def get(driver: str, metric: str, param: str) -> list[Sample]:
        return by.get((driver, metric, param), [])

    for d in drivers:
        quotas = sorted({float(p) for dd, m, p in by if dd == d and m == "limits.cpu.delivered"})
        unexpressed: set[float] = set()
        for q in quotas:
            delivered = get(d, "limits.cpu.delivered", str(q))
            fidelity = get(d, "limits.cpu.fidelity", str(q))
            unexpressed |= {float(x) for x in _meta(delivered, "not_expressible") or ()}
            rows.append(
                _row(
                    d,
                    "CPU quota",
                    human(q, "CPUs"),
                    human(_median(delivered), "CPUs"),
                    fidelity,
                    _cpu_note(delivered, get(d, "limits.cpu.host_accounted", str(q))),
                    len(delivered),
                )
            )
        for q in sorted(unexpressed):
            rows.append(
                _row(d, "CPU quota", human(q, "CPUs"), "not expressible by this driver's spec", [], "", 0)
            )
        for (dd, metric, param), group in by.items():
            if dd != d:
                continue
            if metric == "limits.cpuset.fidelity":
                seen = _meta(group, "seen_cpus") or []
                delivered_text = "ran on CPU " + ",".join(str(c) for c in seen) if seen else NA
                rows.append(
                    _row(
                        d,
                        "cpuset",
                        f"CPU {param}",
                        delivered_text,
                        group,
                        str(_meta(group, "view") or ""),
                        len(group),
                    )
                )
            elif metric in _STOPPED:
                limit, asked, got, ratio_metric = _STOPPED[metric]
                probe = metric.split(".")[1]
                others = _others_note(*(get(d, f"limits.{probe}.{m}", param) for m in OTHERS))
                note = "; ".join(x for x in (str(_meta(group, "stopped_by") or ""), others) if x)
                rows.append(
                    _row(
                        d,
                        limit,
                        asked(param),
                        got(_median(group)),
                        get(d, ratio_metric, param),
                        note,
                        len(group),
                    )
                )
            elif metric in _IO:
                limit, ratio_metric = _IO[metric]
                unlimited = bool(_meta(group, "not_expressible"))
                note = (
                    "not expressible by this driver: measured unlimited"
                    if unlimited
                    else f"dd, O_DIRECT, {_meta(group, 'size_mib')} MiB"
                )
                rows.append(
                    _row(
                        d,
                        limit,
                        human(float(param), "bytes_per_second"),
                        human(_median(group), "bytes_per_second"),
                        [] if unlimited else get(d, ratio_metric, param),
                        note,
                        len(group),
                    )
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _row(
    driver: str,
    limit: str,
    requested: str,
    delivered: str,
    fidelity: list[Sample],
    note: str,
    n: int,
) -> dict[str, Any]:
    ratio = human_ratio(_median(fidelity)) if fidelity else NA
    return {
        "driver": driver,
        "limit": limit,
        "requested": requested,
        "delivered": delivered,
        "ratio": ratio,
        "stopped by / note": note,
        "n": n,
    }
