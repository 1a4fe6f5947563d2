"""A neighbour sandbox of the same driver, for the ``limits`` workload's "the other sandboxes stayed
unaffected": it runs a fixed loop (NEIGHBOUR) in short rounds, first alone for a baseline, then while
a fork bomb or a memory eater runs next door. Per round, the loop's throughput as measured inside
(work units per second) and the round trip the host saw beyond the loop's own time (exec latency).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from isobench.drivers.base import Sandbox
from isobench.errors import IsobenchError
from isobench.model import Measurement
from isobench.workloads._limit_probes import NEIGHBOUR, parse_neighbour

log = logging.getLogger(__name__)

__all__ = ["Neighbour", "Rounds"]


@dataclass
class Rounds:
    """What the neighbour's rounds gave: throughput (units/s) and exec latency (s) per round."""

    throughput: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Neighbour:
    """Runs NEIGHBOUR rounds of ``round_s`` seconds in ``sb``."""

    def __init__(self, sb: Sandbox, round_s: float, timeout: float) -> None:
        self._sb = sb
        self._round_s = round_s
        self._timeout = timeout
        self.baseline = Rounds()

    def _round(self, into: Rounds) -> None:
        t0 = time.monotonic()
        try:
            res = self._sb.exec(["perl", "-e", NEIGHBOUR, f"{self._round_s:g}"], timeout=self._timeout)
            wall = time.monotonic() - t0
            if not res.ok:
                into.errors.append(f"exit {res.exit_code}: {res.stderr.strip()[-120:]}")
                return
            rate = parse_neighbour(res.stdout)
        except IsobenchError as err:
            into.errors.append(str(err))
            return
        into.throughput.append(rate)
        into.latency.append(max(0.0, wall - self._round_s))

    def measure_baseline(self, rounds: int) -> None:
        for _ in range(rounds):
            self._round(self.baseline)

    @contextmanager
    def running(self) -> Iterator[Rounds]:
        """Rounds back to back while the ``with`` body runs (at least one, which overlaps it)."""
        during = Rounds()
        stop = threading.Event()
        started = threading.Event()

        def loop() -> None:
            while True:
                started.set()
                self._round(during)
                if stop.is_set():
                    return

        worker = threading.Thread(target=loop, name=f"neighbour-{self._sb.name}", daemon=True)
        worker.start()
        started.wait(timeout=5)
        try:
            yield during
        finally:
            stop.set()
            worker.join(timeout=self._timeout + 5)

    def measurements(self, probe: str, during: Rounds, params: dict[str, Any]) -> list[Measurement]:
        """``limits.<probe>.neighbour_throughput`` (median round during / alone: 1 = unaffected) and
        ``limits.<probe>.neighbour_latency_max`` (worst exec round trip beyond the loop, seconds)."""
        base = self.baseline
        if not base.throughput or not during.throughput:
            log.warning(
                "neighbour of %s probe: no rounds completed (%s)", probe, (base.errors + during.errors)[:2]
            )
            return []
        base_rate = statistics.median(base.throughput)
        meta: dict[str, Any] = {
            "neighbour": self._sb.name,
            "round_s": self._round_s,
            "baseline_units_per_s": round(base_rate, 1),
            "during_units_per_s": [round(x, 1) for x in during.throughput],
            "baseline_latency_s": round(max(base.latency), 4),
            "failed_rounds": len(during.errors),
            "view": "a second sandbox of the same driver running a fixed loop, alone vs during the probe",
        }
        # the median round: one round of a fraction of a second on a shared host is noisy
        meta["slowest_round_ratio"] = round(min(during.throughput) / base_rate, 3)
        pace = statistics.median(during.throughput) / base_rate
        return [
            Measurement(f"limits.{probe}.neighbour_throughput", pace, "ratio", "higher", params, meta),
            Measurement(
                f"limits.{probe}.neighbour_latency_max", max(during.latency), "seconds", "lower", params, meta
            ),
        ]
