"""Pure parsers for sysbench 1.0 text output (``cpu`` and ``memory`` tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from isobench.errors import WorkloadError

__all__ = ["SysbenchCpu", "SysbenchMemory", "parse_sysbench_cpu", "parse_sysbench_memory"]

MIB = 1 << 20


@dataclass(frozen=True)
class SysbenchCpu:
    threads: int
    events: int
    total_seconds: float
    events_per_second: float
    latency_avg_seconds: float
    latency_p95_seconds: float


@dataclass(frozen=True)
class SysbenchMemory:
    threads: int
    operation: str
    block_bytes: int
    transferred_bytes: float
    bytes_per_second: float
    total_seconds: float
    events: int


def _missing(text: str, what: str) -> NoReturn:
    # sysbench's own FATAL line says more than "field missing" ever could.
    fatal = re.search(r"^FATAL: (.*)$", text, re.MULTILINE)
    if fatal:
        raise WorkloadError(f"sysbench failed: {fatal.group(1).strip()}")
    raise WorkloadError(f"sysbench output has no {what}; is this sysbench 1.0?")


def _field(text: str, pattern: str, what: str) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    if m is None:
        _missing(text, what)
    return m.group(1)


def _common(text: str) -> tuple[int, int, float]:
    threads = int(_field(text, r"^Number of threads:\s+(\d+)", "thread count"))
    events = int(_field(text, r"total number of events:\s+(\d+)", "event count"))
    total = float(_field(text, r"total time:\s+([\d.]+)s", "total time"))
    if events <= 0 or total <= 0:
        raise WorkloadError(f"sysbench ran no events ({events} in {total}s)")
    return threads, events, total


def parse_sysbench_cpu(text: str) -> SysbenchCpu:
    threads, events, total = _common(text)
    eps = float(_field(text, r"events per second:\s+([\d.]+)", "events per second"))
    avg = float(_field(text, r"^\s+avg:\s+([\d.]+)", "average latency"))
    p95 = float(_field(text, r"95th percentile:\s+([\d.]+)", "95th percentile latency"))
    return SysbenchCpu(threads, events, total, eps, avg / 1e3, p95 / 1e3)


def parse_sysbench_memory(text: str) -> SysbenchMemory:
    threads, events, total = _common(text)
    op = _field(text, r"^\s+operation:\s+(\w+)", "operation")
    block_kib = int(_field(text, r"^\s+block size:\s+(\d+)KiB", "block size"))
    m = re.search(r"^([\d.]+) MiB transferred \(([\d.]+) MiB/sec\)", text, re.MULTILINE)
    if m is None:
        _missing(text, "transfer summary")
    transferred = float(m.group(1)) * MIB
    rate = float(m.group(2)) * MIB
    if transferred <= 0 or rate <= 0:
        raise WorkloadError("sysbench memory transferred nothing")
    return SysbenchMemory(threads, op, block_kib * 1024, transferred, rate, total, events)
