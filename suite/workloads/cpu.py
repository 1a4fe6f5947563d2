"""The ``cpu`` workload: a fixed amount of compute (sysbench cpu primes), on one thread and on every
vCPU the spec gives the sandbox. Same event count in both variants, so the time shows the scaling."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import Budget, resolve_params, run_checked
from isobench.workloads._sysbench import SysbenchCpu, parse_sysbench_cpu
from isobench.workloads.base import WorkloadContext

__all__ = ["WORKLOAD", "CpuParams", "CpuWorkload", "cpu_measurements"]


@dataclass(frozen=True)
class CpuParams:
    #: Total events (prime searches up to ``max_prime``) per variant: ~1.2 s on one native core, and
    #: 20-50x that in a TCG guest, which a default run must still finish.
    events: int = 5000
    max_prime: int = 10000

    @classmethod
    def quick(cls) -> CpuParams:
        # ~0.1 s natively; TCG guests are 20-50x slower.
        return cls(events=500)


def sysbench_cpu_argv(params: CpuParams, threads: int) -> list[str]:
    return [
        "sysbench",
        "cpu",
        f"--threads={threads}",
        f"--events={params.events}",
        "--time=0",
        f"--cpu-max-prime={params.max_prime}",
        "run",
    ]


def cpu_measurements(result: SysbenchCpu, params: CpuParams, variant: str) -> list[Measurement]:
    if result.events != params.events:
        raise WorkloadError(f"sysbench cpu ran {result.events} events, asked for {params.events}")
    p = {
        "variant": variant,
        "threads": result.threads,
        "events": params.events,
        "max_prime": params.max_prime,
    }
    meta = {"tool": "sysbench cpu"}
    return [
        Measurement("cpu.events_per_second", result.events_per_second, "ops_per_second", "higher", p, meta),
        Measurement("cpu.time", result.total_seconds, "seconds", "lower", p, meta),
        Measurement("cpu.event_latency.avg", result.latency_avg_seconds, "seconds", "lower", p, meta),
        Measurement("cpu.event_latency.p95", result.latency_p95_seconds, "seconds", "lower", p, meta),
    ]


class CpuWorkload:
    name: ClassVar[str] = "cpu"
    description: ClassVar[str] = "sysbench cpu: fixed prime-search work, 1 thread and all vCPUs"
    tools: ClassVar[tuple[str, ...]] = ("sysbench",)
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None
    params_type: ClassVar[type] = CpuParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = resolve_params(CpuParams, ctx.quick, ctx.params, self.name)
        budget = Budget(ctx.timeout, "cpu")
        variants = [("single", 1)]
        if ctx.spec.vcpus > 1:
            variants.append(("all", ctx.spec.vcpus))
        out: list[Measurement] = []
        with ctx.sandbox() as sandbox:
            for variant, threads in variants:
                res = run_checked(
                    sandbox, sysbench_cpu_argv(params, threads), timeout=budget.left(), what="sysbench cpu"
                )
                out += cpu_measurements(parse_sysbench_cpu(res.stdout), params, variant)
        return out


WORKLOAD = CpuWorkload
