"""The ``disk`` workload: fio sequential 1 MiB and random 4 KiB reads and writes at queue depth 1
and 32, on the sandbox's root storage and on a volume: the spec's, or else one the cell makes
for drivers that can attach one (``capabilities.volume``). Sandboxes see it at ``/data``; the native
driver sees a plain directory of the host filesystem at its own path: the baseline of the volume
rows, as its root storage is the baseline of the root rows.

O_DIRECT is used where the filesystem accepts it (probed first: tmpfs before Linux 6.6 and some
overlay setups refuse it); without it reads may come from a warm page cache, and every figure says
which in its metadata. One fio process runs all jobs back to back (``stonewall``) on one shared file,
so the file is laid out once per storage.

A fio run gets a deadline of its own (:func:`fio_stall_deadline`: a minute plus four times its jobs'
time plus its layout at 4 MiB/s), not the cell's whole budget: a fio in a TCG guest once waited on its
volume for the rest of a 300 s cell after its eight 0.4 s jobs. Past that deadline it is killed,
the sandbox's block devices with I/O still in flight are noted, and it runs once more; the figures
of a second run say so (``fio_stall`` in their metadata), and a second stall ends the cell.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from isobench.drivers.base import VOLUME_MOUNT, ExecResult, Sandbox, Volume
from isobench.errors import CellTimeout, IsobenchError, UsageError, WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Budget, Params, last_line, run_checked
from isobench.workloads._fio import FioJob, parse_fio_json
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["PATTERNS", "WORKLOAD", "DiskParams", "DiskWorkload", "disk_measurements", "fio_argv"]

#: name -> (fio rw, block size)
PATTERNS: dict[str, tuple[str, str]] = {
    "seq_read": ("read", "1M"),
    "seq_write": ("write", "1M"),
    "rand_read": ("randread", "4k"),
    "rand_write": ("randwrite", "4k"),
}

#: The fio I/O engines a config may name: the synchronous ones and Linux's native asynchronous ones.
IOENGINES = ("libaio", "io_uring", "psync", "sync", "pvsync", "pvsync2", "posixaio")
_FIO_TIME = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)?")

#: fio's duration units, in seconds.
_FIO_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: A fio run's deadline: this much, plus STALL_FACTOR times its jobs' own time, plus laying out its
#: file at STALL_LAYOUT_BPS (or the sandbox's io_bps cap, if slower). In a TCG guest the eight jobs
#: of the smallest test size (8 x 0.4 s) took 7.7 s from exec to exit, 40 runs in a row.
STALL_SLACK_S = 60.0
STALL_FACTOR = 4.0
STALL_LAYOUT_BPS = 4 << 20

DATA_FILE = "isobench-fio.dat"
PROBE_FILE = "isobench-fio-probe.dat"


@dataclass(frozen=True)
class DiskParams(Params):
    workload: ClassVar[str] = "disk"

    size_mib: int = 512
    #: fio durations: a number with an optional unit (us, ms, s, m, h); ramp_time may be 0.
    runtime: str = "5s"
    ramp_time: str = "1s"
    iodepths: tuple[int, ...] = (1, 32)
    patterns: tuple[str, ...] = field(default=tuple(PATTERNS), metadata={"choices": tuple(PATTERNS)})
    ioengine: str = field(default="libaio", metadata={"choices": IOENGINES})
    #: Also measure a volume on drivers that can attach one (``capabilities.volume``): a bind-mounted
    #: host directory for containers, a raw disk image for guests, a plain directory natively.
    volume: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value, zero_ok in (("runtime", self.runtime, False), ("ramp_time", self.ramp_time, True)):
            m = _FIO_TIME.fullmatch(value)
            if m is None or (not zero_ok and float(m.group(1)) == 0):
                raise UsageError(
                    f"workload disk: parameter {key} must be a fio duration like 5s or 500ms"
                    f"{'' if zero_ok else ' (> 0)'}, got {value!r}"
                )

    def jobs_seconds(self) -> float:
        """The time fio's jobs run, back to back: each its ramp and its runtime."""
        return (
            len(self.patterns)
            * len(self.iodepths)
            * (fio_seconds(self.runtime) + fio_seconds(self.ramp_time))
        )

    @classmethod
    def quick(cls) -> DiskParams:
        # A smoke size: 8 jobs x 0.7 s per storage, two storages on most drivers.
        return cls(size_mib=32, runtime="500ms", ramp_time="200ms")


def fio_argv(params: DiskParams, directory: str, direct: bool) -> list[str]:
    argv = [
        "fio",
        "--output-format=json",
        f"--directory={directory}",
        f"--filename={DATA_FILE}",
        f"--size={params.size_mib}M",
        f"--ioengine={params.ioengine}",
        f"--direct={int(direct)}",
        # Total latency (submission + completion) percentiles too: where io_submit does the I/O
        # itself (libaio on this host's virtio disk: 69 us in io_submit, 2.8 us clat p50), the
        # completion latency alone says a 4 KiB read takes 3 us.
        "--lat_percentiles=1",
        "--time_based",
        f"--runtime={params.runtime}",
        f"--ramp_time={params.ramp_time}",
    ]
    for name in params.patterns:
        rw, bs = PATTERNS[name]
        for depth in params.iodepths:
            argv += [
                f"--name={name}-qd{depth}",
                f"--rw={rw}",
                f"--bs={bs}",
                f"--iodepth={depth}",
                "--stonewall",
            ]
    return argv


def fio_seconds(value: str) -> float:
    """A fio duration (``300ms``, ``5s``, ``2`` = seconds) in seconds."""
    m = _FIO_TIME.fullmatch(value)
    if m is None:
        raise UsageError(f"not a fio duration: {value!r}")
    return float(m.group(1)) * _FIO_UNITS[m.group(2) or "s"]


def fio_stall_deadline(params: DiskParams, io_bps: int | None = None) -> float:
    """How long one fio run of ``params`` may take before it is stalled rather than slow."""
    layout_bps = min(STALL_LAYOUT_BPS, io_bps) if io_bps is not None else STALL_LAYOUT_BPS
    return STALL_SLACK_S + STALL_FACTOR * params.jobs_seconds() + params.size_mib * (1 << 20) / layout_bps


#: Each block device with I/O in flight, as ``name reads writes`` (the kernel's ``inflight``).
INFLIGHT_ARGV = [
    "sh",
    "-c",
    'for d in /sys/block/*; do [ -r "$d/inflight" ] || continue; set -- $(cat "$d/inflight");'
    ' [ "$1$2" = 00 ] || echo "${d##*/} $1 $2"; done',
]


def probe_direct_argv(params: DiskParams, directory: str) -> list[str]:
    return [
        "fio",
        "--output-format=json",
        "--name=probe",
        f"--directory={directory}",
        f"--filename={PROBE_FILE}",
        "--size=1M",
        "--io_size=64k",
        "--bs=4k",
        "--rw=write",
        f"--ioengine={params.ioengine}",
        "--direct=1",
    ]


def disk_measurements(
    jobs: list[FioJob], *, storage: str, direct: bool, extra_meta: dict[str, Any]
) -> list[Measurement]:
    out: list[Measurement] = []
    by_rw = {rw: name for name, (rw, _) in PATTERNS.items()}
    for job in jobs:
        if job.direct != direct:
            raise WorkloadError(f"fio job {job.name} ran with direct={job.direct}, expected {direct}")
        pattern = by_rw.get(job.rw)
        if pattern is None:
            raise WorkloadError(f"fio job {job.name} has unexpected rw={job.rw}")
        d = job.main
        params = {"storage": storage, "rw": job.rw, "bs": job.bs, "iodepth": job.iodepth, "direct": direct}
        meta = {
            **extra_meta,
            # Direct I/O bypasses the page cache: nothing is served warm. Buffered reads of the file
            # fio just laid out are served from a warm cache.
            "cache": "cold" if direct else "warm",
            "latency": "total: submission + completion (fio lat)",
            "clat_p50_seconds": d.clat_p50_seconds,
            "slat_mean_seconds": d.slat_mean_seconds,
            "runtime_seconds": d.runtime_seconds,
        }
        base = f"disk.{pattern}"
        out += [
            Measurement(f"{base}.iops", d.iops, "ops_per_second", "higher", params, meta),
            Measurement(f"{base}.bandwidth", d.bytes_per_second, "bytes_per_second", "higher", params, meta),
            Measurement(f"{base}.latency.p50", d.lat_p50_seconds, "seconds", "lower", params, meta),
            Measurement(f"{base}.latency.p99", d.lat_p99_seconds, "seconds", "lower", params, meta),
        ]
    return out


class DiskWorkload(BaseWorkload):
    name = "disk"
    description = "fio: seq 1 MiB / rand 4 KiB read+write, QD 1 and 32, root and volume"
    tools = ("fio", "sh", "rm", "stat", "mountpoint")
    #: One cell already averages over time (thousands of I/Os or round trips): a few repetitions
    #: suffice, and one for a smoke run.
    max_repetitions = 3
    quick_repetitions = 1
    precision_figures = ("disk.*.iops",)
    params_type = DiskParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = DiskParams.of(ctx)
        budget = self.budget(ctx)
        out: list[Measurement] = []
        volume = ctx.spec.volume
        caps = ctx.driver.capabilities
        if volume is not None and caps.volume is None:
            raise WorkloadError(f"disk: driver {ctx.driver.name} attaches no volumes, but the spec gives one")
        if volume is None and caps.volume is not None and params.volume and ctx.scratch is not None:
            # The cell's own volume: an empty host directory the runner removes after the cell.
            volume = ctx.scratch / "volume"
            volume.mkdir()
        with ctx.sandbox(volume=volume) as sandbox:
            storages: list[tuple[str, str, dict[str, Any]]] = [("root", sandbox.workdir, {})]
            if volume is not None:
                # How the driver attaches it, in the words of its metadata: recorded with each figure.
                attach = ctx.driver.metadata().get("volume")
                storages.append(
                    ("volume", caps.volume_path(volume), {"volume": attach or "given by the spec"})
                )
            if volume is not None and caps.volume is Volume.DATA_MOUNT:
                # fio on an unmounted /data would measure the root disk under the volume's name
                check = sandbox.exec(["mountpoint", "-q", VOLUME_MOUNT], timeout=budget.cap(60))
                if not check.ok:
                    raise WorkloadError(
                        f"disk: {VOLUME_MOUNT} is not a mount point inside {sandbox.name}; the volume was"
                        " not attached (for guests: an image built before volumes? run `isobench image build`)"
                    )
            for storage, directory, extra in storages:
                out += self._one_storage(sandbox, params, storage, directory, budget, extra, ctx.spec.io_bps)
        return out

    def _one_storage(
        self,
        sandbox: Sandbox,
        params: DiskParams,
        storage: str,
        directory: str,
        budget: Budget,
        extra: dict[str, Any],
        io_bps: int | None,
    ) -> list[Measurement]:
        fs = sandbox.exec(["stat", "-f", "-c", "%T", directory], timeout=budget.cap(60))
        fstype = fs.stdout.strip() if fs.ok else "unknown"
        meta: dict[str, Any] = {"tool": "fio", "fstype": fstype, "directory": directory, **extra}
        probe = sandbox.exec(probe_direct_argv(params, directory), timeout=budget.cap(120))
        direct = probe.ok
        if not direct:
            meta["direct_unsupported"] = last_line(probe.stderr) or last_line(probe.stdout) or "probe failed"
            log.info("%s: O_DIRECT refused on %s (%s); running buffered", sandbox.name, directory, fstype)
        try:
            argv = fio_argv(params, directory, direct)
            res, stall = self._fio(sandbox, argv, budget, params, directory, io_bps)
            jobs = parse_fio_json(res.stdout)
            if stall is not None:
                meta["fio_stall"] = stall
        finally:
            # The volume outlives the sandbox, and a full root disk would skew the next cell.
            files = [shlex.quote(posixpath.join(directory, f)) for f in (DATA_FILE, PROBE_FILE)]
            with contextlib.suppress(IsobenchError):
                sandbox.exec(["sh", "-c", "rm -f " + " ".join(files)], timeout=60)
        return disk_measurements(jobs, storage=storage, direct=direct, extra_meta=meta)

    def _fio(
        self,
        sandbox: Sandbox,
        argv: list[str],
        budget: Budget,
        params: DiskParams,
        directory: str,
        io_bps: int | None,
    ) -> tuple[ExecResult, str | None]:
        """fio's result, run once more if the first run stalled (and what the stall was)."""
        deadline = fio_stall_deadline(params, io_bps)
        stall: str | None = None
        while True:
            left = budget.left()
            if left <= deadline:  # the cell's own end comes first: no second run after it
                return run_checked(sandbox, argv, timeout=left, what="fio"), stall
            try:
                return run_checked(sandbox, argv, timeout=deadline, what="fio"), stall
            except CellTimeout:
                what = (
                    f"fio on {directory} did not finish within {deadline:.0f} s"
                    f" (its jobs run {params.jobs_seconds():.1f} s)"
                )
                if stall is not None:
                    raise CellTimeout(
                        f"{what}, twice in sandbox {sandbox.name}; the first: {stall}"
                    ) from None
                stall = what + _inflight(sandbox, budget)
                log.warning("%s: %s; killed, running it once more", sandbox.name, stall)


def _inflight(sandbox: Sandbox, budget: Budget) -> str:
    """``; I/O still in flight: vdb 0 1`` after a killed fio, or ``""``: a request the device never
    completed is the disk's stall, not fio's."""
    with contextlib.suppress(IsobenchError):
        res = sandbox.exec(INFLIGHT_ARGV, timeout=budget.cap(30))
        lines = [line.strip() for line in res.stdout.splitlines() if line.strip()]
        if res.ok and lines:
            return "; I/O still in flight (device reads writes): " + ", ".join(lines)
    return ""


WORKLOAD = DiskWorkload
