"""The ``disk`` workload: fio sequential 1 MiB and random 4 KiB reads and writes at queue depth 1
and 32, on the sandbox's root storage and on a volume: the spec's, or else one the cell makes
for drivers that can attach one (``capabilities.volume``). Sandboxes see it at ``/data``; the native
driver sees a plain directory of the host filesystem at its own path: the baseline of the volume
rows, as its root storage is the baseline of the root rows.

O_DIRECT is used where the filesystem accepts it (probed first: tmpfs before Linux 6.6 and some
overlay setups refuse it); without it reads may come from a warm page cache, and every figure says
which in its metadata. One fio process runs all jobs back to back (``stonewall``) on one shared file,
so the file is laid out once per storage.
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

from isobench.drivers.base import VOLUME_MOUNT, Sandbox, Volume
from isobench.errors import IsobenchError, UsageError, WorkloadError
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
                out += self._one_storage(sandbox, params, storage, directory, budget, extra)
        return out

    def _one_storage(
        self,
        sandbox: Sandbox,
        params: DiskParams,
        storage: str,
        directory: str,
        budget: Budget,
        extra: dict[str, Any],
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
            res = run_checked(sandbox, fio_argv(params, directory, direct), timeout=budget.left(), what="fio")
            jobs = parse_fio_json(res.stdout)
        finally:
            # The volume outlives the sandbox, and a full root disk would skew the next cell.
            files = [shlex.quote(posixpath.join(directory, f)) for f in (DATA_FILE, PROBE_FILE)]
            with contextlib.suppress(IsobenchError):
                sandbox.exec(["sh", "-c", "rm -f " + " ".join(files)], timeout=60)
        return disk_measurements(jobs, storage=storage, direct=direct, extra_meta=meta)


WORKLOAD = DiskWorkload
