"""Pure parser for fio ``--output-format=json`` (fio 3.x)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from isobench.errors import WorkloadError

__all__ = ["FioDirection", "FioJob", "parse_fio_json"]


@dataclass(frozen=True)
class FioDirection:
    """One direction (read or write) of one job."""

    io_bytes: int
    bytes_per_second: float
    iops: float
    runtime_seconds: float
    #: Completion latency percentiles, seconds (fio's default percentile list includes 50 and 99).
    clat_p50_seconds: float
    clat_p99_seconds: float
    clat_mean_seconds: float


@dataclass(frozen=True)
class FioJob:
    name: str
    rw: str
    bs: str
    iodepth: int
    direct: bool
    read: FioDirection | None
    write: FioDirection | None

    @property
    def main(self) -> FioDirection:
        """The direction this job was about (reads for read jobs, writes for write jobs)."""
        d = self.write if "write" in self.rw else self.read
        if d is None:
            raise WorkloadError(f"fio job {self.name} did no {self.rw} I/O")
        return d


def _direction(job: dict[str, Any], key: str) -> FioDirection | None:
    d = job.get(key) or {}
    if not d.get("io_bytes"):
        return None
    clat = d.get("clat_ns") or {}
    pct = clat.get("percentile") or {}
    try:
        p50 = float(pct["50.000000"]) / 1e9
        p99 = float(pct["99.000000"]) / 1e9
    except KeyError as err:
        raise WorkloadError(f"fio job {job.get('jobname')} has no {err.args[0]} clat percentile") from err
    return FioDirection(
        io_bytes=int(d["io_bytes"]),
        bytes_per_second=float(d["bw_bytes"]),
        iops=float(d["iops"]),
        runtime_seconds=float(d["runtime"]) / 1e3,
        clat_p50_seconds=p50,
        clat_p99_seconds=p99,
        clat_mean_seconds=float(clat.get("mean", 0.0)) / 1e9,
    )


def parse_fio_json(stdout: str) -> list[FioJob]:
    """Jobs of one fio run; any job error or an empty job is a WorkloadError.

    fio prints error lines (``fio: pid=..., err=22/...``) before the JSON on the same stream, so the
    document starts at the first ``{``.
    """
    start = stdout.find("{")
    if start < 0:
        raise WorkloadError(f"fio printed no JSON: {stdout.strip()[:200] or 'no output'}")
    try:
        doc = json.loads(stdout[start:])
    except json.JSONDecodeError as err:
        raise WorkloadError(f"fio JSON is malformed: {err}") from err
    glob = doc.get("global options") or {}
    jobs: list[FioJob] = []
    for job in doc.get("jobs") or []:
        name = str(job.get("jobname"))
        if job.get("error"):
            raise WorkloadError(f"fio job {name} failed with errno {job['error']}")
        opts = {**glob, **(job.get("job options") or {})}
        parsed = FioJob(
            name=name,
            rw=str(opts.get("rw", "read")),
            bs=str(opts.get("bs", "4k")),
            iodepth=int(opts.get("iodepth", 1)),
            direct=str(opts.get("direct", "0")) == "1",
            read=_direction(job, "read"),
            write=_direction(job, "write"),
        )
        main = parsed.main
        if main.runtime_seconds <= 0:
            raise WorkloadError(f"fio job {name} ran for no time")
        jobs.append(parsed)
    if not jobs:
        raise WorkloadError("fio reported no jobs")
    return jobs
