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
    #: Total latency (fio ``lat``: submission + completion) percentiles, seconds: what an
    #: application waits for one I/O. Needs ``--lat_percentiles=1``.
    lat_p50_seconds: float
    lat_p99_seconds: float
    #: Completion latency alone (fio ``clat``), for the record: where io_submit does the I/O itself
    #: it holds only the reaping (2.6 us here, for a 4 KiB read that took 97 us).
    clat_p50_seconds: float
    #: Submission latency's mean (fio ``slat``; synchronous engines report none: 0).
    slat_mean_seconds: float


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


def _percentiles(job: dict[str, Any], d: dict[str, Any], key: str) -> tuple[float, float]:
    pct = (d.get(key) or {}).get("percentile") or {}
    try:
        return float(pct["50.000000"]) / 1e9, float(pct["99.000000"]) / 1e9
    except KeyError as err:
        what = "total latency (fio needs --lat_percentiles=1)" if key == "lat_ns" else key.removesuffix("_ns")
        raise WorkloadError(
            f"fio job {job.get('jobname')} reports no {err.args[0].split('.')[0]}th percentile of its {what}"
        ) from err


def _direction(job: dict[str, Any], key: str) -> FioDirection | None:
    d = job.get(key) or {}
    if not d.get("io_bytes"):
        return None
    lat_p50, lat_p99 = _percentiles(job, d, "lat_ns")
    clat_p50, _ = _percentiles(job, d, "clat_ns")
    return FioDirection(
        io_bytes=int(d["io_bytes"]),
        bytes_per_second=float(d["bw_bytes"]),
        iops=float(d["iops"]),
        runtime_seconds=float(d["runtime"]) / 1e3,
        lat_p50_seconds=lat_p50,
        lat_p99_seconds=lat_p99,
        clat_p50_seconds=clat_p50,
        slat_mean_seconds=float((d.get("slat_ns") or {}).get("mean", 0.0)) / 1e9,
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
