"""The ``density`` workload: how many idle sandboxes fit on this host, and what each one costs.

For N stepping through the driver's sizes (container-type drivers 1, 2, 5, 10, 20, 50, 100; guests
1, 2, 4, 8), the workload grows a population of idle sandboxes one after another (each holds what
the driver keeps alive: a container's init, a guest and its agent; ``host`` and ``bwrap`` keep no
process between commands) and at each N measures:

- ``density.ready_all`` (param ``start=sequential``): time until all N were ready, started one after
  another (the sum of the N creates, each started when the previous one was ready);
- ``density.start_latency_nth``: how long the N-th create took with N-1 already running;
- ``density.memavailable_drop_per_instance``: the host's MemAvailable drop since before the first
  sandbox, divided by N (everything: runtime processes, page tables, page cache; and anything else
  the host did meanwhile);
- ``density.attributable_per_instance``: the sum of what the driver attributes to its sandboxes
  (``stats().host_memory_bytes``: a container cgroup's pages and kernel objects, as idle-memory's
  host view, qemu PSS without guest RAM + guest RAM backed for guests), divided by N; its parts
  are in the metadata;
- ``density.idle_cpu_per_instance``: CPU seconds per second the N idle sandboxes were charged
  (cgroup cpuacct, the qemu processes) over a short idle window, divided by N, and
  ``density.host_idle_cpu_per_instance``: the host's busy time over the same window minus the rate
  before any sandbox existed, divided by N (every driver, noisy on a shared host);
- with ``ksm = true`` for guests: KSM turned on for the measurement (``/sys/kernel/mm/ksm/run``,
  restored afterwards on every path), ``density.ksm_saved_per_instance`` from ``pages_sharing``;

then, with ``concurrent = true``, starts N at once from a thread pool for every N the ramp reached
(``density.ready_all`` with ``start=concurrent``). Before each step it checks that the step fits:
memory (the step's estimated need must stay within ``memory_fraction`` of the MemAvailable found at
the start; a guest is counted at its full RAM), idle CPU (the population must not already burn more
than ``max_idle_cpu`` of the host's CPUs) and time (the cell's deadline). ``density.n_reached``
says how far it got and, in its metadata, why it stopped. Everything started is destroyed on every
path (see :mod:`isobench.workloads._fleet`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.stats import SandboxStats, memcg_lag_left
from isobench.errors import DriverUnavailable, SandboxError, UsageError, WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Budget, Params
from isobench.workloads._fleet import (
    SERIAL_CREATE,
    Fleet,
    KsmSwitch,
    host_busy_seconds,
    is_guest,
    mem_available,
    sandbox_cpu_seconds,
    sum_keys,
)
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = [
    "WORKLOAD",
    "DensityParams",
    "DensityWorkload",
    "Observation",
    "memory_estimate",
    "stop_reason",
]

MIB = 1 << 20
#: What one sandbox is assumed to need before anything was measured: a guest its RAM plus this
#: for qemu, a process-type sandbox this much.
GUEST_OVERHEAD = 128 * MIB
PROCESS_GUESS = 64 * MIB
#: Estimates from measured per-instance memory get this margin (a guest also never counts below
#: its RAM: it may touch all of it later).
MARGIN = 1.25
#: Parts of ``stats()`` that are disjoint host memory attributable to one sandbox.
MEMORY_PARTS = ("memory_bytes", "vm.qemu_pss_bytes", "vm.guest_ram_rss_bytes", "memory_rss_bytes")


def _exact(stats: SandboxStats) -> dict[str, float]:
    flat = stats.as_dict()
    if stats.host_memory_bytes is not None:
        flat["memory_bytes"] = stats.host_memory_bytes
    flat.pop("memory_footprint_bytes", None)
    return flat


def _fraction(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise UsageError(f"workload density: parameter {name} must be in (0, 1], got {value!r}")


@dataclass(frozen=True)
class DensityParams(Params):
    workload: ClassVar[str] = "density"

    #: N for drivers whose sandboxes are processes (containers, runc, bwrap, host).
    container_steps: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    #: N for drivers that boot a guest; more is allowed while memory allows.
    guest_steps: tuple[int, ...] = (1, 2, 4, 8)
    #: Also start N at once (a thread pool) for every N the ramp reached.
    concurrent: bool = True
    #: Seconds the population idles after a step before it is measured (guests finish booting).
    settle_seconds: float = field(default=3.0, metadata={"min": 0})
    #: Length of the idle-CPU window.
    idle_seconds: float = 3.0
    #: At most this share of the MemAvailable found at the start may be used by the sandboxes.
    memory_fraction: float = 0.5
    #: Stop growing once the idle population burns more than this share of the host's CPUs.
    max_idle_cpu: float = 0.75
    #: Guests only: KSM on for the measurement (restored afterwards), pages shared recorded.
    ksm: bool = False
    #: Extra seconds for KSM to merge before each step is measured (ksm = true only).
    ksm_settle_seconds: float = field(default=10.0, metadata={"min": 0})
    #: ksmd's pages per 20 ms wake-up during the measurement (restored afterwards; kernel default 100).
    ksm_pages_to_scan: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("container_steps", "guest_steps"):
            steps = getattr(self, name)
            if not steps or list(steps) != sorted(set(steps)):
                raise UsageError(f"workload density: {name} must be increasing, got {list(steps)}")
        _fraction("memory_fraction", self.memory_fraction)
        _fraction("max_idle_cpu", self.max_idle_cpu)

    @classmethod
    def quick(cls) -> DensityParams:
        return cls(
            container_steps=(1, 5, 20),
            guest_steps=(1, 2),
            settle_seconds=1.0,
            idle_seconds=1.0,
            ksm_settle_seconds=3.0,
        )


def memory_estimate(observed: float | None, *, guest: bool, memory_mib: int) -> float:
    """Bytes one more sandbox is assumed to need: what one measured so far with a margin, a guest
    never less than its RAM (it may touch all of it); before any measurement, a fixed guess."""
    ram = memory_mib * MIB
    if observed is None:
        return float(ram + GUEST_OVERHEAD) if guest else float(PROCESS_GUESS)
    est = max(observed, 0.0) * MARGIN
    return max(est, float(ram)) if guest else max(est, float(MIB))


def stop_reason(
    *,
    target: int,
    running: int,
    per_instance: float,
    budget_bytes: float,
    used_bytes: float,
    idle_share: float | None,
    max_idle: float,
    seconds_needed: float,
    seconds_left: float,
) -> tuple[str, str] | None:
    """Why the step to ``target`` sandboxes must not start, as (category, sentence), or None."""
    need = (target - running) * per_instance
    if used_bytes + need > budget_bytes:
        return (
            "memory",
            f"N={target} would need ~{need / MIB:.0f} MiB more on top of {max(used_bytes, 0) / MIB:.0f} MiB "
            f"used, over the {budget_bytes / MIB:.0f} MiB allowed (memory_fraction of MemAvailable)",
        )
    if idle_share is not None and idle_share > max_idle:
        return (
            "idle-cpu",
            f"{running} idle sandboxes already burn {idle_share:.0%} of the host's CPUs (max_idle_cpu)",
        )
    if seconds_needed > seconds_left:
        return (
            "time",
            f"N={target} would take ~{seconds_needed:.0f}s, the cell has {seconds_left:.0f}s left",
        )
    return None


def _failure_category(err: BaseException) -> str:
    text = str(err).lower()
    if "memory" in text or "enomem" in text:
        return "memory"
    if "fork" in text or "resource temporarily unavailable" in text or "pids" in text:
        return "pids"
    return "failed"


@dataclass(frozen=True)
class Observation:
    """What one step measured on the running population of ``n`` sandboxes."""

    n: int
    memavailable_drop: float
    attributable: Mapping[str, float]
    idle_cpu_accounted: float | None
    idle_cpu_host: float
    window_s: float
    ksm: Mapping[str, int] = field(default_factory=dict)

    def measurements(self, *, ready_all: float, nth: float, page_size: int) -> list[Measurement]:
        n = self.n
        params = {"n": n}
        seq = {"n": n, "start": "sequential"}
        out = [
            Measurement("density.ready_all", ready_all, "seconds", "lower", seq),
            Measurement("density.start_latency_nth", nth, "seconds", "lower", params),
            Measurement(
                "density.memavailable_drop_per_instance",
                self.memavailable_drop / n,
                "bytes",
                "lower",
                params,
                {"memavailable_drop_bytes": self.memavailable_drop},
            ),
            Measurement(
                "density.host_idle_cpu_per_instance",
                self.idle_cpu_host / n,
                "CPUs",
                "lower",
                params,
                {
                    "how": "host /proc/stat busy rate minus the rate before any sandbox",
                    "window_s": self.window_s,
                },
            ),
        ]
        total = self.attributable.get("memory_bytes")
        if total is not None:
            parts = {k: v / n for k, v in self.attributable.items() if k != "memory_bytes"}
            out.append(
                Measurement(
                    "density.attributable_per_instance",
                    total / n,
                    "bytes",
                    "lower",
                    params,
                    {"parts_per_instance": parts, "source": "sandbox.stats()"},
                )
            )
        if self.idle_cpu_accounted is not None:
            out.append(
                Measurement(
                    "density.idle_cpu_per_instance",
                    self.idle_cpu_accounted / n,
                    "CPUs",
                    "lower",
                    params,
                    {
                        "how": "CPU time charged to the sandboxes (cgroup, qemu process)",
                        "window_s": self.window_s,
                    },
                )
            )
        if "pages_sharing" in self.ksm:
            saved = self.ksm["pages_sharing"] * page_size
            # host-wide: other guests' merged pages count too, so this is an upper bound
            meta = {**self.ksm, "scope": "host-wide pages_sharing"}
            out.append(
                Measurement("density.ksm_saved_per_instance", saved / n, "bytes", "higher", params, meta)
            )
            if total is not None:
                out.append(
                    Measurement(
                        "density.attributable_ksm_per_instance",
                        max(total - saved, 0.0) / n,
                        "bytes",
                        "lower",
                        params,
                        {**meta, "how": "attributed memory (RSS-based, without sharing) minus KSM's saving"},
                    )
                )
        return out


class DensityWorkload(BaseWorkload):
    name = "density"
    description = "N idle sandboxes: start time vs N, memory and idle CPU per instance"
    #: One cell steps through every N; a few repetitions at most.
    max_repetitions = 3
    quick_repetitions = 1
    params_type = DensityParams

    def __init__(self, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> None:
        self._proc = proc_root
        self._sys = sys_root

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        p = DensityParams.of(ctx)
        guest = is_guest(ctx.driver)
        steps = p.guest_steps if guest else p.container_steps
        ksm = KsmSwitch(self._sys, p.ksm_pages_to_scan) if p.ksm and guest else None
        with ksm if ksm is not None else contextlib.nullcontext():
            return self._run(ctx, p, steps, guest, ksm)

    # ------------------------------------------------------------------------------------ steps

    def _run(
        self,
        ctx: WorkloadContext,
        p: DensityParams,
        steps: Sequence[int],
        guest: bool,
        ksm: KsmSwitch | None,
    ) -> list[Measurement]:
        budget = self.budget(ctx)
        serial = ctx.driver.name in SERIAL_CREATE
        start_avail = mem_available(self._proc)
        base_rate = self._host_rate(p.idle_seconds)
        out: list[Measurement] = []
        creates: list[float] = []
        reached, category, why = 0, "done", "every step done"
        per_instance: float | None = None
        idle_share: float | None = None
        observe_s = 0.0
        fleet = Fleet(ctx.sandbox, f"{ctx.spec.name}-dens", serial=serial)
        try:
            for target in steps:
                t_create = max(creates, default=5.0)
                new = target - len(fleet)
                seconds_needed = (
                    new * t_create
                    + (target * t_create if p.concurrent else 0.0)
                    + p.settle_seconds
                    + p.idle_seconds
                    + (p.ksm_settle_seconds if ksm else 0.0)
                    + observe_s * target / max(reached, 1)
                    + target * t_create  # teardown, at most about a create each
                )
                stop = stop_reason(
                    target=target,
                    running=len(fleet),
                    per_instance=memory_estimate(per_instance, guest=guest, memory_mib=ctx.spec.memory_mib),
                    budget_bytes=p.memory_fraction * start_avail,
                    used_bytes=start_avail - mem_available(self._proc),
                    idle_share=idle_share,
                    max_idle=p.max_idle_cpu,
                    seconds_needed=seconds_needed,
                    seconds_left=budget.left(),
                )
                if stop is not None:
                    category, why = stop
                    break
                try:
                    while len(fleet) < target:
                        creates.append(fleet.start_one())
                except (SandboxError, DriverUnavailable, OSError) as err:
                    category = _failure_category(err)
                    why = f"create of sandbox {len(fleet) + 1} failed: {err}"
                    log.warning("density %s: %s", ctx.driver.name, why)
                    break
                t_obs = time.monotonic()
                obs = self._observe(fleet, target, p, start_avail, base_rate, ksm)
                observe_s = time.monotonic() - t_obs
                out += obs.measurements(
                    ready_all=sum(creates[:target]),
                    nth=creates[target - 1],
                    page_size=os.sysconf("SC_PAGESIZE"),
                )
                reached = target
                per_instance = max(obs.memavailable_drop, obs.attributable.get("memory_bytes", 0.0)) / target
                idle = obs.idle_cpu_accounted if obs.idle_cpu_accounted is not None else obs.idle_cpu_host
                idle_share = idle / (os.cpu_count() or 1)
        finally:
            fleet.close()
        if reached == 0:
            raise WorkloadError(f"density: not even one sandbox: {why}")
        concurrent_note = self._concurrent(ctx, steps, reached, serial, budget, out) if p.concurrent else ""
        meta: dict[str, Any] = {
            "stopped": category,
            "why": why,
            "steps": list(steps),
            "kind": "guest" if guest else "process",
            "memory_fraction": p.memory_fraction,
            "start_memavailable_bytes": start_avail,
            "concurrent_create": "serialized (driver create not thread-safe)" if serial else "thread pool",
        }
        if concurrent_note:
            meta["concurrent_stopped"] = concurrent_note
        if ksm is not None:
            meta["ksm"] = "on during the measurement, restored afterwards"
        out.append(Measurement("density.n_reached", float(reached), "sandboxes", "higher", {}, meta))
        return out

    def _concurrent(
        self,
        ctx: WorkloadContext,
        steps: Sequence[int],
        reached: int,
        serial: bool,
        budget: Budget,
        out: list[Measurement],
    ) -> str:
        """N started at once, for every N the ramp reached; returns why it stopped early, if it did."""
        for target in [s for s in steps if s <= reached]:
            fleet = Fleet(ctx.sandbox, f"{ctx.spec.name}-conc{target}", serial=serial)
            t0 = time.monotonic()
            try:
                fleet.start_concurrently(target)
                took = time.monotonic() - t0
            except (SandboxError, DriverUnavailable, OSError) as err:
                return f"N={target} started at once failed: {err}"
            finally:
                fleet.close()
            out.append(
                Measurement(
                    "density.ready_all",
                    took,
                    "seconds",
                    "lower",
                    {"n": target, "start": "concurrent"},
                    {"threads": 1 if serial else target},
                )
            )
            if budget.left() < took * 3:
                return f"time: N={target} took {took:.0f}s, {budget.left():.0f}s left"
        return ""

    def _host_rate(self, seconds: float) -> float:
        """The host's busy CPUs (CPU seconds per second) over ``seconds``."""
        t0, b0 = time.monotonic(), host_busy_seconds(self._proc)
        time.sleep(seconds)
        return (host_busy_seconds(self._proc) - b0) / max(time.monotonic() - t0, 1e-9)

    def _observe(
        self,
        fleet: Fleet,
        n: int,
        p: DensityParams,
        start_avail: int,
        base_rate: float,
        ksm: KsmSwitch | None,
    ) -> Observation:
        made = time.monotonic()  # the step's last sandbox is up
        time.sleep(p.settle_seconds + (p.ksm_settle_seconds if ksm else 0.0))
        sandboxes = fleet.sandboxes
        drop = float(start_avail - mem_available(self._proc))
        t0, busy0 = time.monotonic(), host_busy_seconds(self._proc)
        cpu0 = [sandbox_cpu_seconds(sb, self._proc) for sb in sandboxes]
        time.sleep(p.idle_seconds)
        cpu1 = [sandbox_cpu_seconds(sb, self._proc) for sb in sandboxes]
        window = max(time.monotonic() - t0, 1e-9)
        busy = (host_busy_seconds(self._proc) - busy0) / window
        # memory_bytes as exactly as each driver knows it (a cgroup's footprint: see idle-memory),
        # read after the idle window, which spends most of the wait for the kernel to flush the
        # cgroups' memory.stat (the quick settle alone, 1 s, may miss a fresh sandbox's last pages)
        # (one sandbox says whether its driver's figures come from memory.stat: they are all alike)
        if sandboxes and (lag := memcg_lag_left(made, [sandboxes[0].stats()], time.monotonic())) > 0:
            time.sleep(lag)
        stats = [_exact(sb.stats()) for sb in sandboxes]
        pairs = [(a, b) for a, b in zip(cpu0, cpu1, strict=True) if a is not None and b is not None]
        accounted = sum(b - a for a, b in pairs) / window if pairs and len(pairs) == len(sandboxes) else None
        return Observation(
            n=n,
            memavailable_drop=drop,
            attributable=sum_keys(stats, MEMORY_PARTS),
            idle_cpu_accounted=accounted,
            idle_cpu_host=busy - base_rate,
            window_s=window,
            ksm=ksm.counters() if ksm is not None else {},
        )


WORKLOAD = DensityWorkload
