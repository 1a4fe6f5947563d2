"""The ``limits`` workload: what a sandbox was asked to be held to, and what it got.

Every driver gets the same requests, through the one spec (and, where the spec cannot say it, the
driver's own option for it):

- CPU quota (``cpu_quotas``, default 0.5 and 1 CPU): a sandbox per quota, without a cpuset, runs more
  busy processes than the host has CPUs for ``cpu_seconds``; delivered = their CPU time over wall
  time as measured inside (``limits.cpu.delivered``), and the CPU time the host charged to the
  sandbox over the same exec (``limits.cpu.host_accounted``, where the driver accounts it). A quota
  the driver cannot express (a fractional CPU where `capabilities.cpu_quota` is unset: whole vCPUs only) is not
  measured and is listed in the samples' metadata (``not_expressible``).
- cpuset (``cpuset``, default the host's last CPU): the burners again, in a sandbox pinned there;
  which CPUs they were seen running on (/proc/<pid>/stat field 39, sampled every 0.1 s; for a guest
  the host-side CPUs of its qemu threads, since guest CPU numbers are vCPUs).
- pids (``pids_limit``): fork until refused, with a cap of ``4 x pids_limit``; how many.
- memory (the spec's memory_mib): a memory eater holds one more MiB until something stops it, with a
  cap of ``memory_cap_factor x`` the limit (and never more than ``host_memory_fraction`` of the
  host's MemAvailable); where it stopped (bytes) and by what: cgroup OOM kill, guest OOM killer,
  allocation failure, or nothing (the cap: no limit).

- disk bandwidth (``io_mib_per_s``, default 20 MiB/s, read and write each): on drivers that can
  express it (``capabilities.io_throttle``: cgroup blkio / io.max, OCI ``blockIO``, Docker's
  ``device_*_bps``, libvirt ``<iotune>``, qemu ``throttling.bps-*``), the sandbox's volume at
  ``/data`` is written and then read with dd and O_DIRECT (buffered writes escape v1 blkio
  throttling), ``io_mib_per_s x io_seconds`` MiB each way; delivered = dd's bytes over its time. On
  the others the same dd runs unlimited and the samples say ``not_expressible``.

During the pids and memory probes a host-side probe runs ``true`` every 0.1 s: the worst latency
says whether the host stayed responsive; and a neighbour sandbox of the same driver runs a fixed
loop in short rounds (``limits.<probe>.neighbour_throughput``: its median round during the probe
over its median alone before; ``neighbour_latency_max``: its worst exec round trip beyond the loop).
On a 2-CPU host a neighbour shares CPUs with the bomb, so well below 1 can be plain CPU contention. Fidelity (``limits.<kind>.fidelity``) = delivered /
requested: 1 is a limit held exactly; well above 1 is no limit. The memory probe runs last (an OOM
kill may take the sandbox with it); ``limits.memory.sandbox_alive`` says whether it still answers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import Driver, Sandbox
from isobench.errors import IsobenchError, UsageError, WorkloadError
from isobench.model import Measurement
from isobench.periodic import periodically
from isobench.procs import run_command, split_stat
from isobench.workloads._common import BaseWorkload, Budget, Params, oom_kills
from isobench.workloads._fleet import (
    HostWatch,
    host_busy_seconds,
    is_guest,
    mem_available,
    qemu_pid,
    sandbox_cpu_seconds,
)
from isobench.workloads._limit_probes import (
    BURN,
    EAT,
    FORK,
    Burn,
    Copied,
    classify_memory_stop,
    new_log_lines,
    parse_burn,
    parse_dd,
    parse_forks,
)
from isobench.workloads._neighbour import Neighbour
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["WORKLOAD", "LimitsParams", "LimitsWorkload", "quota_overrides"]

MIB = 1 << 20
#: The disk probe's file, in the volume (or the sandbox's workdir when there is none).
IO_FILE = "isobench-limits-io.bin"


@dataclass(frozen=True)
class LimitsParams(Params):
    workload: ClassVar[str] = "limits"

    #: CPU quotas to request, in CPUs.
    cpu_quotas: tuple[float, ...] = (0.5, 1.0)
    #: Seconds each CPU burn runs.
    cpu_seconds: float = 3.0
    #: CPUs of the cpuset request; none = the host's last CPU.
    cpuset: tuple[int, ...] | None = field(default=None, metadata={"min": 0})
    #: The pids limit requested (the spec's pids_limit) for the fork probe.
    pids_limit: int = 128
    #: The memory eater stops itself at this multiple of the memory limit ...
    memory_cap_factor: float = 2.0
    #: ... and never holds more than this share of the host's MemAvailable.
    host_memory_fraction: float = 0.25
    #: Disk bandwidth to request (read and write each), MiB/s ...
    io_mib_per_s: float = field(default=20.0, metadata={"min": 0.1})
    #: ... and how long each direction should take at that rate (its size: rate x seconds).
    io_seconds: float = field(default=3.0, metadata={"min": 0.1})
    #: The neighbour sandbox's loop: seconds per round, and rounds alone for its baseline.
    neighbour_round_s: float = field(default=0.3, metadata={"min": 0.05})
    neighbour_baseline_rounds: int = field(default=3, metadata={"min": 1})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.host_memory_fraction <= 0.5:
            raise UsageError(
                f"workload limits: host_memory_fraction must be in (0, 0.5], got {self.host_memory_fraction}"
            )
        if self.memory_cap_factor <= 1:
            raise UsageError(f"workload limits: memory_cap_factor must be > 1, got {self.memory_cap_factor}")

    @classmethod
    def quick(cls) -> LimitsParams:
        return cls(cpu_seconds=2.0, io_seconds=2.0, neighbour_baseline_rounds=2)

    def misfit(self, memory_mib: int, cpus: Collection[int] | None) -> str | None:
        missing = sorted(set(self.cpuset or ()) - set(cpus)) if cpus is not None else []
        if missing:
            return f"workload limits: cpuset CPUs {missing} are not available to this run"
        return None


def quota_overrides(driver: Driver, quota: float) -> dict[str, Any] | None:
    """Spec overrides that ask ``driver`` for ``quota`` CPUs, or None when it cannot express it:
    a CPU-time quota where the driver has one (``capabilities.cpu_quota``), else whole vCPUs."""
    if driver.capabilities.cpu_quota:
        return {"vcpus": max(1, math.ceil(quota)), "cpu_quota": float(quota)}
    if float(quota).is_integer():
        return {"vcpus": int(quota)}
    return None


def _host_kernel_log() -> list[str]:
    try:
        res = run_command(["dmesg"], timeout=10.0)
    except IsobenchError:
        return []
    return res.stdout.splitlines() if res.ok else []


@dataclass
class _ThreadCpus:
    """Host CPUs a guest's qemu threads were seen running on, sampled while a probe runs."""

    pid: int
    proc_root: Path
    seen: Counter[int] = field(default_factory=Counter)

    def sample(self) -> None:
        try:
            for stat in (self.proc_root / str(self.pid) / "task").glob("*/stat"):
                fields = split_stat(stat.read_text())
                if fields and fields[0] == "R":
                    self.seen[int(fields[36])] += 1
        except (OSError, ValueError, IndexError):
            pass


class LimitsWorkload(BaseWorkload):
    name = "limits"
    description = "requested vs delivered: CPU quota, cpuset, disk bandwidth, pids, memory"
    tools = ("perl", "dd", "rm")
    max_repetitions = 3
    quick_repetitions = 1
    params_type = LimitsParams

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        kernel_log: Callable[[], list[str]] = _host_kernel_log,
    ) -> None:
        self._proc = proc_root
        self._kernel_log = kernel_log

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        p = LimitsParams.of(ctx)
        budget = self.budget(ctx)
        host_cpus = sorted(os.sched_getaffinity(0))
        burners = max(2, len(host_cpus))
        misfit = p.misfit(ctx.spec.memory_mib, host_cpus)
        if misfit:
            raise UsageError(misfit)
        cpuset = p.cpuset or (host_cpus[-1],)
        out: list[Measurement] = []
        not_expressible: list[float] = []
        for quota in p.cpu_quotas:
            overrides = quota_overrides(ctx.driver, quota)
            if overrides is None:
                not_expressible.append(quota)
                continue
            with ctx.sandbox(name=f"{ctx.spec.name}-cpu{quota:g}", cpuset=None, **overrides) as sb:
                out += self._cpu(sb, quota, burners, p.cpu_seconds, budget)
        if not_expressible:
            out = [_with_meta(m, not_expressible=not_expressible) for m in out]
        caps = ctx.driver.capabilities
        volume = ctx.spec.volume
        if volume is None and caps.volume is not None and ctx.scratch is not None:
            # The cell's own volume: an empty host directory the runner removes after the cell.
            volume = ctx.scratch / "limits-volume"
            volume.mkdir(exist_ok=True)
        io_bps = round(p.io_mib_per_s * MIB) if caps.io_throttle else None
        with (
            ctx.sandbox(
                name=f"{ctx.spec.name}-lim",
                vcpus=1,
                cpuset=tuple(cpuset),
                pids_limit=p.pids_limit,
                volume=volume,
                io_bps=io_bps,
            ) as sb,
            ctx.sandbox(name=f"{ctx.spec.name}-nbr", vcpus=1, cpuset=None, volume=None, io_bps=None) as nb,
        ):
            out += self._cpuset(sb, tuple(cpuset), burners, p.cpu_seconds, budget)
            directory = caps.volume_path(volume) if volume is not None else sb.workdir
            out += self._io(sb, directory, p, io_bps, budget)
            neighbour = Neighbour(nb, p.neighbour_round_s, timeout=budget.cap(120))
            neighbour.measure_baseline(p.neighbour_baseline_rounds)
            out += self._pids(sb, p.pids_limit, budget, neighbour)
            out += self._memory(ctx, sb, p, budget, neighbour)
        return out

    # ------------------------------------------------------------------------------------ probes

    def _burn(
        self, sb: Sandbox, burners: int, seconds: float, budget: Budget
    ) -> tuple[Burn, float | None, float]:
        """Run BURN; returns what it printed, the host-accounted CPUs over the exec, and how many
        CPUs the whole host was busy meanwhile."""
        before = sandbox_cpu_seconds(sb, self._proc)
        busy0 = host_busy_seconds(self._proc)
        t0 = time.monotonic()
        res = sb.exec(
            ["perl", "-e", BURN, str(burners), f"{seconds:g}"], timeout=budget.cap(seconds * 20 + 60)
        )
        wall = time.monotonic() - t0
        busy = (host_busy_seconds(self._proc) - busy0) / wall
        after = sandbox_cpu_seconds(sb, self._proc)
        if not res.ok:
            raise WorkloadError(
                f"CPU burner failed in {sb.name} (exit {res.exit_code}): {res.stderr.strip()[-200:]}"
            )
        host = (after - before) / wall if before is not None and after is not None else None
        return parse_burn(res.stdout), host, busy

    def _cpu(
        self, sb: Sandbox, quota: float, burners: int, seconds: float, budget: Budget
    ) -> list[Measurement]:
        burn, host, busy = self._burn(sb, burners, seconds, budget)
        params = {"requested_cpus": quota}
        meta = {
            "burners": burners,
            "seconds": round(burn.wall_s, 2),
            "view": "inside: children's CPU time / wall",
            # what else kept the host's CPUs busy meanwhile: below the quota with the host full,
            # the host's other work, not the limit, held the sandbox back
            "host_other_cpus": round(busy - (host if host is not None else burn.cpus), 2),
            "host_cpus": os.cpu_count(),
        }
        out = [
            Measurement("limits.cpu.delivered", burn.cpus, "CPUs", "none", params, meta),
            Measurement("limits.cpu.fidelity", burn.cpus / quota, "ratio", "none", params, meta),
        ]
        if host is not None:
            how = {"view": "host: CPU time charged to the sandbox (cgroup, qemu process) / exec wall time"}
            out.append(Measurement("limits.cpu.host_accounted", host, "CPUs", "none", params, how))
        return out

    def _cpuset(
        self, sb: Sandbox, cpuset: tuple[int, ...], burners: int, seconds: float, budget: Budget
    ) -> list[Measurement]:
        pid = qemu_pid(sb)
        threads = _ThreadCpus(pid, self._proc) if pid is not None else None
        sampling = (
            periodically(threads.sample, 0.1, name="isobench-qemu-cpus", join_timeout=5)
            if threads
            else contextlib.nullcontext()
        )
        with sampling:
            burn, _, _ = self._burn(sb, burners, seconds, budget)
        seen, view = (
            (threads.seen, "host: CPUs of the guest's qemu threads")
            if threads
            else (
                burn.seen,
                "inside: CPUs the burners ran on",
            )
        )
        total = sum(seen.values())
        if total == 0:
            raise WorkloadError(f"cpuset probe in {sb.name}: the burners were never seen running")
        outside = sum(c for cpu, c in seen.items() if cpu not in cpuset) / total
        params = {"requested_cpuset": ",".join(map(str, cpuset))}
        meta: dict[str, Any] = {
            "seen_cpus": sorted(seen),
            "samples": total,
            "view": view,
            "allowed_inside": list(burn.allowed) if burn.allowed is not None else None,
        }
        return [
            Measurement("limits.cpuset.outside_share", outside, "ratio", "lower", params, meta),
            Measurement("limits.cpuset.held", 1.0 if outside == 0 else 0.0, "bool", "higher", params, meta),
            Measurement("limits.cpuset.fidelity", 1.0 - outside, "ratio", "none", params, meta),
        ]

    def _io(
        self, sb: Sandbox, directory: str, p: LimitsParams, io_bps: int | None, budget: Budget
    ) -> list[Measurement]:
        size_mib = max(1, round(p.io_mib_per_s * p.io_seconds))
        path = posixpath.join(directory, IO_FILE)
        timeout = budget.cap(p.io_seconds * 20 + 60)

        def dd(*argv: str) -> Copied:
            res = sb.exec(["dd", *argv, "bs=1M"], timeout=timeout)
            if not res.ok:
                raise WorkloadError(
                    f"disk probe in {sb.name}: dd {argv[-1]} failed (exit {res.exit_code}): "
                    f"{res.stderr.strip()[-200:]}"
                )
            return parse_dd(res.stderr)

        try:
            wrote = dd("if=/dev/zero", f"of={path}", f"count={size_mib}", "oflag=direct")
            read = dd(f"if={path}", "of=/dev/null", "iflag=direct")
        finally:
            # The volume outlives the sandbox.
            with contextlib.suppress(IsobenchError):
                sb.exec(["rm", "-f", path], timeout=60)
        params = {"requested_bps": round(p.io_mib_per_s * MIB)}
        meta: dict[str, Any] = {
            "tool": "dd, O_DIRECT, 1 MiB blocks",
            "size_mib": size_mib,
            "directory": directory,
        }
        if io_bps is None:
            meta["not_expressible"] = True
        out: list[Measurement] = []
        for direction, copied in (("write", wrote), ("read", read)):
            m = {**meta, "seconds": round(copied.seconds, 3)}
            out.append(
                Measurement(
                    f"limits.io.{direction}.delivered", copied.bps, "bytes_per_second", "none", params, m
                )
            )
            if io_bps is not None:
                out.append(
                    Measurement(
                        f"limits.io.{direction}.fidelity", copied.bps / io_bps, "ratio", "none", params, m
                    )
                )
        return out

    def _pids(self, sb: Sandbox, limit: int, budget: Budget, neighbour: Neighbour) -> list[Measurement]:
        cap = 4 * limit
        watch = HostWatch(interval=0.05)
        with watch.running(), neighbour.running() as during:
            res = sb.exec(["perl", "-e", FORK, str(cap)], timeout=budget.cap(300))
        forks = parse_forks(res.stdout)
        params = {"requested_pids": limit}
        meta: dict[str, Any] = {
            "stopped_by": "fork refused (" + forks.why.removeprefix("refused: ") + ")"
            if forks.refused
            else f"not stopped: reached the probe's cap of {cap} (no limit enforced)",
            "enforced": forks.refused,
            "counted": "the probe's children plus the probe itself; the sandbox's own init is not counted",
        }
        out = [
            Measurement("limits.pids.forks", float(forks.count), "processes", "none", params, meta),
            Measurement("limits.pids.fidelity", (forks.count + 1) / limit, "ratio", "none", params, meta),
        ]
        if watch.worst is not None:
            out.append(Measurement("limits.pids.host_probe_max", watch.worst, "seconds", "lower", params))
        return out + neighbour.measurements("pids", during, params)

    def _memory(
        self, ctx: WorkloadContext, sb: Sandbox, p: LimitsParams, budget: Budget, neighbour: Neighbour
    ) -> list[Measurement]:
        limit_mib = ctx.spec.memory_mib
        cap = int(
            min(p.memory_cap_factor * limit_mib, p.host_memory_fraction * mem_available(self._proc) / MIB)
        )
        oom_before = oom_kills(sb)
        log_before = self._kernel_log()
        watch = HostWatch(interval=0.1)
        with watch.running(), neighbour.running() as during:
            res = sb.exec(["perl", "-e", EAT, str(cap)], timeout=budget.cap(600))
        host_log = [x for x in new_log_lines(log_before, self._kernel_log()) if "perl" in x]
        oom_after = oom_kills(sb)
        alive = _answers(sb)
        guest_log: list[str] = []
        if is_guest(ctx.driver) and alive:
            try:
                dm = sb.exec(["dmesg"], timeout=budget.cap(60))
                guest_log = dm.stdout.splitlines()
            except IsobenchError:
                pass
        delta = oom_after - oom_before if oom_before is not None and oom_after is not None else None
        stop = classify_memory_stop(
            exit_code=res.exit_code,
            stdout=res.stdout,
            stderr=res.stderr,
            oom_kills_delta=delta,
            host_log=host_log,
            guest_log=guest_log,
        )
        params = {"requested_mib": limit_mib}
        meta: dict[str, Any] = {
            "stopped_by": stop.by,
            "enforced": stop.enforced,
            "exit_code": res.exit_code,
            "eater_cap_mib": cap,
        }
        out = [
            Measurement("limits.memory.stopped_at", stop.bytes, "bytes", "none", params, meta),
            Measurement(
                "limits.memory.fidelity", stop.bytes / (limit_mib * MIB), "ratio", "none", params, meta
            ),
            Measurement("limits.memory.sandbox_alive", 1.0 if alive else 0.0, "bool", "higher", params),
        ]
        if watch.worst is not None:
            out.append(Measurement("limits.memory.host_probe_max", watch.worst, "seconds", "lower", params))
        return out + neighbour.measurements("memory", during, params)


def _answers(sb: Sandbox) -> bool:
    try:
        return sb.exec(["true"], timeout=60).ok
    except IsobenchError:
        return False


def _with_meta(m: Measurement, **extra: Any) -> Measurement:
    return Measurement(m.metric, m.value, m.unit, m.better, m.params, {**m.metadata, **extra}, m.phase)


WORKLOAD = LimitsWorkload
