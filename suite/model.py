"""The values every part of isobench exchanges: Measurement, Sample, PhaseTiming.

A workload produces :class:`Measurement` values (what it saw); the runner stamps each with where and
when it was measured and turns it into a :class:`Sample`, the unit of everything stored and reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Better = Literal["lower", "higher", "none"]

__all__ = ["Better", "Interval", "Measurement", "PhaseTiming", "Sample"]


@dataclass(frozen=True)
class Measurement:
    """One figure a workload observed, before the runner knows which cell it belongs to."""

    metric: str
    value: float
    unit: str
    better: Better = "lower"
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    phase: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, int | float) or math.isnan(float(self.value)):
            raise ValueError(f"measurement {self.metric!r} has no numeric value: {self.value!r}")


class Interval:
    """What carries a CLOCK_MONOTONIC interval, ``start_ns`` to ``end_ns``, and its length."""

    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True)
class PhaseTiming(Interval):
    """An interval of a sandbox's life (create, ready, exec, destroy, or finer)."""

    name: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class Sample:
    """A measured value with everything needed to interpret it later (PerfKitBenchmarker's Sample).

    A failed cell is a Sample too: ``value`` is None and ``error`` says why, so a run never hides
    what it could not measure.
    """

    run_id: str
    driver: str
    workload: str
    metric: str
    value: float | None
    unit: str
    repetition: int
    better: Better = "lower"
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    phase: str | None = None
    warmup: bool = False
    error: str | None = None
    timestamp: float = field(default_factory=time.time)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def from_measurement(
        cls,
        m: Measurement,
        *,
        run_id: str,
        driver: str,
        workload: str,
        repetition: int,
        warmup: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Sample:
        return cls(
            run_id=run_id,
            driver=driver,
            workload=workload,
            metric=m.metric,
            value=float(m.value),
            unit=m.unit,
            repetition=repetition,
            better=m.better,
            params=dict(m.params),
            metadata={**(metadata or {}), **m.metadata},
            phase=m.phase,
            warmup=warmup,
        )

    @classmethod
    def failure(
        cls,
        *,
        run_id: str,
        driver: str,
        workload: str,
        repetition: int,
        error: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> Sample:
        return cls(
            run_id=run_id,
            driver=driver,
            workload=workload,
            metric=f"{workload}.failed",
            value=None,
            unit="",
            repetition=repetition,
            better="none",
            metadata=dict(metadata or {}),
            error=error,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = dict(self.params)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        return cls(**kwargs)
