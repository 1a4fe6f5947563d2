"""The ``interference`` workload: how much one sandbox's noise hurts its neighbour (IBS-style).

Two sandboxes of the same driver with the same limits: a *victim* runs a steady benchmark alone
(baseline), then once next to each *stressor* running in the *aggressor*. Per pair it reports the
degradation D of the victim's mean throughput and p99 latency (see :mod:`isobench.interference`),
whether the aggressor stayed contained, and host CPU time spent outside both sandboxes.

Host CPU outside (best effort): busy jiffies of the whole host (/proc/stat) minus the CPU time the
driver accounts to the two sandboxes (``stats().cpu_seconds``: cgroup cpuacct for containers,
the qemu process for guests), minus the same figure per second during the baseline. Drivers that
account no CPU (``host``) get no such figure. What remains is work the kernel did for the aggressor
without charging it: writeback, softirqs, kswapd.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from isobench.drivers.base import ExecResult, Sandbox, SandboxStats
from isobench.errors import IsobenchError, WorkloadError
from isobench.interference.catalogue import (
    DEFAULT_STRESSORS,
    DEFAULT_VICTIMS,
    QUICK_STRESSORS,
    QUICK_VICTIMS,
    STRESSORS,
    VICTIMS,
    Stressor,
    Victim,
)
from isobench.interference.parsers import VictimResult, degradation
from isobench.model import Measurement
from isobench.procs import run_command
from isobench.workloads._common import BaseWorkload, Params, oom_kills
from isobench.workloads.base import WorkloadContext

log = logging.getLogger(__name__)

__all__ = ["WORKLOAD", "InterferenceWorkload"]

#: Seconds the stressor runs before the victim starts, so the victim meets it at full strength.
RAMP_S = 0.5
#: The host counts as alive while a trivial host command keeps answering within this.
HOST_ALIVE_S = 2.0


@dataclass
class _Window:
    host_busy_s: float = 0.0
    sandbox_cpu_s: float | None = None
    seconds: float = 0.0

    @property
    def outside_rate(self) -> float | None:
        if self.sandbox_cpu_s is None or self.seconds <= 0:
            return None
        return (self.host_busy_s - self.sandbox_cpu_s) / self.seconds


@dataclass
class _Liveness:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0


def _host_busy_s() -> float:
    with open("/proc/stat") as fh:
        f = [float(x) for x in fh.readline().split()[1:9]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _cpu(sb: Sandbox) -> float | None:
    try:
        return sb.stats().cpu_seconds
    except IsobenchError:
        return None


class _Meter:
    """Host busy time and the two sandboxes' accounted CPU over one window."""

    def __init__(self, *sandboxes: Sandbox) -> None:
        self._sbs = sandboxes
        self._t = time.monotonic()
        self._busy = _host_busy_s()
        self._cpu = [_cpu(sb) for sb in sandboxes]

    def stop(self) -> _Window:
        cpu_now = [_cpu(sb) for sb in self._sbs]
        w = _Window(host_busy_s=_host_busy_s() - self._busy, seconds=time.monotonic() - self._t)
        pairs = [(a, b) for a, b in zip(self._cpu, cpu_now, strict=True) if a is not None and b is not None]
        if len(pairs) == len(self._sbs):
            w.sandbox_cpu_s = sum(b - a for a, b in pairs)
        return w


def _watch_host(stop: threading.Event, out: _Liveness) -> None:
    while not stop.is_set():
        t = time.monotonic()
        try:
            run_command(["true"], timeout=HOST_ALIVE_S * 5)
            out.latencies.append(time.monotonic() - t)
        except IsobenchError:
            out.failures += 1
        stop.wait(0.25)


def _run_victim(sb: Sandbox, victim: Victim, duration: float) -> VictimResult:
    res = sb.exec(["sh", "-c", victim.command(duration, sb.workdir)], timeout=duration + 60)
    if not res.ok:
        raise WorkloadError(
            f"victim {victim.name} failed in {sb.name} (exit {res.exit_code}): {res.stderr.strip()[:200]}"
        )
    return victim.parse(res.stdout)


@dataclass(frozen=True)
class InterferenceParams(Params):
    workload: ClassVar[str] = "interference"

    #: seconds each victim runs, alone and next to each stressor
    duration: float = 3.0
    victims: tuple[str, ...] = field(default=DEFAULT_VICTIMS, metadata={"choices": tuple(VICTIMS)})
    stressors: tuple[str, ...] = field(default=DEFAULT_STRESSORS, metadata={"choices": tuple(STRESSORS)})

    @classmethod
    def quick(cls) -> InterferenceParams:
        return cls(duration=2.0, victims=QUICK_VICTIMS, stressors=QUICK_STRESSORS)


class InterferenceWorkload(BaseWorkload):
    name = "interference"
    description = "noisy neighbour: victim degradation next to stress-ng aggressors"
    tools = ("sh", "stress-ng", "sysbench")
    #: One cell holds its own comparison (verdicts / baseline vs stress); a smoke run needs one.
    max_repetitions = 1
    quick_repetitions = 1
    params_type = InterferenceParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        p = InterferenceParams.of(ctx)
        duration = p.duration
        victims = [VICTIMS[v] for v in p.victims]
        stressors = [STRESSORS[s] for s in p.stressors]
        params: dict[str, Any] = {"duration_s": duration}
        if "hardening" in ctx.spec.options:
            params["hardening"] = bool(ctx.spec.options["hardening"])
        out: list[Measurement] = []
        contained: dict[str, list[dict[str, Any]]] = {}
        outside: dict[str, list[float]] = {}
        with (
            ctx.sandbox(name=f"{ctx.spec.name}-victim") as victim_sb,
            ctx.sandbox(name=f"{ctx.spec.name}-aggressor") as aggr_sb,
        ):
            for victim in victims:
                meter = _Meter(victim_sb, aggr_sb)
                base = _run_victim(victim_sb, victim, duration)
                base_win = meter.stop()
                out.append(
                    Measurement(
                        f"interference.{victim.name}.baseline",
                        base.throughput,
                        base.unit,
                        "higher",
                        params=params,
                        metadata={"p99_ms": base.p99_ms, "mean_latency_ms": base.mean_latency_ms},
                    )
                )
                for stressor in stressors:
                    stressed, facts, win = self._pair(ctx, victim_sb, aggr_sb, victim, stressor, duration)
                    d_mean, d_p99 = degradation(base, stressed)
                    meta = {
                        "stressor": stressor.description,
                        "baseline": base.throughput,
                        "stressed": stressed.throughput,
                        "unit": base.unit,
                        "baseline_p99_ms": base.p99_ms,
                        "stressed_p99_ms": stressed.p99_ms,
                    }
                    prefix = f"interference.{victim.name}.{stressor.name}"
                    out.append(
                        Measurement(
                            f"{prefix}.d_mean",
                            round(d_mean, 4),
                            "ratio",
                            "lower",
                            params=params,
                            metadata=meta,
                        )
                    )
                    if d_p99 is not None:
                        out.append(
                            Measurement(
                                f"{prefix}.d_p99",
                                round(d_p99, 4),
                                "ratio",
                                "lower",
                                params=params,
                                metadata=meta,
                            )
                        )
                    contained.setdefault(stressor.name, []).append({"victim": victim.name, **facts})
                    base_rate, rate = base_win.outside_rate, win.outside_rate
                    if base_rate is not None and rate is not None:
                        outside.setdefault(stressor.name, []).append((rate - base_rate) * win.seconds)
        for name, runs in contained.items():
            ok = all(r["contained"] for r in runs)
            out.append(
                Measurement(
                    f"interference.{name}.contained",
                    1.0 if ok else 0.0,
                    "bool",
                    "higher",
                    params=params,
                    metadata={"runs": runs},
                )
            )
        for name, secs in outside.items():
            out.append(
                Measurement(
                    f"interference.{name}.host_cpu_outside_s",
                    round(sum(secs) / len(secs), 3),
                    "s",
                    "lower",
                    params=params,
                    metadata={
                        "how": "host /proc/stat busy - sandboxes' accounted cpu_seconds, minus baseline rate"
                    },
                )
            )
        return out

    def _pair(
        self,
        ctx: WorkloadContext,
        victim_sb: Sandbox,
        aggr_sb: Sandbox,
        victim: Victim,
        stressor: Stressor,
        duration: float,
    ) -> tuple[VictimResult, dict[str, Any], _Window]:
        cmd = stressor.command(duration + RAMP_S + 1.0, aggr_sb.workdir, ctx.spec.memory_mib, ctx.spec.vcpus)
        box: dict[str, ExecResult | BaseException] = {}

        def aggress() -> None:
            try:
                box["res"] = aggr_sb.exec(["sh", "-c", cmd], timeout=duration + RAMP_S + 30)
            except BaseException as err:  # reported below; the thread must not die silently
                box["res"] = err

        thread = threading.Thread(target=aggress, name=f"isobench-aggressor-{stressor.name}", daemon=True)
        stop = threading.Event()
        alive = _Liveness()
        watcher = threading.Thread(target=_watch_host, args=(stop, alive), daemon=True)
        oom_before = oom_kills(aggr_sb)
        thread.start()
        watcher.start()
        try:
            time.sleep(RAMP_S)
            meter = _Meter(victim_sb, aggr_sb)
            stressed = _run_victim(victim_sb, victim, duration)
            win = meter.stop()
        finally:
            thread.join(timeout=duration + RAMP_S + 40)
            stop.set()
            watcher.join(timeout=HOST_ALIVE_S * 6)
        res = box.get("res")
        facts = self._containment(ctx, aggr_sb, res, alive, oom_before)
        log.info("interference %s/%s: %s", victim.name, stressor.name, facts)
        return stressed, facts, win

    @staticmethod
    def _containment(
        ctx: WorkloadContext,
        aggr_sb: Sandbox,
        res: ExecResult | BaseException | None,
        alive: _Liveness,
        oom_before: float | None,
    ) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if isinstance(res, ExecResult):
            facts["aggressor_exit"] = res.exit_code
        else:
            facts["aggressor_error"] = str(res) if res is not None else "aggressor did not finish"
        worst = max(alive.latencies, default=0.0)
        facts["host_probe_max_s"] = round(worst, 3)
        host_alive = alive.failures == 0 and worst < HOST_ALIVE_S and bool(alive.latencies)
        facts["host_alive"] = host_alive
        try:
            st = aggr_sb.stats()
        except IsobenchError:
            st = SandboxStats()
        limits_held = True
        peak = st.memory_peak_bytes
        if peak is not None:
            # The cgroup's high-water mark since creation: it covers every stressor so far.
            facts["aggressor_memory_peak_mib"] = round(peak / 2**20, 1)
            limits_held &= peak <= ctx.spec.memory_mib * 2**20 * 1.05
        if st.oom_kills is not None and oom_before is not None:
            facts["aggressor_oom_kills"] = st.oom_kills - oom_before
        if st.pids is not None and ctx.spec.pids_limit is not None:
            limits_held &= st.pids <= ctx.spec.pids_limit
        facts["limits_checked"] = peak is not None
        facts["contained"] = host_alive and limits_held
        return facts


WORKLOAD = InterferenceWorkload
