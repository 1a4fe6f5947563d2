"""The ``cpu`` workload: a fixed amount of compute (sysbench cpu primes), on one thread and on all
vCPUs. Same event count in both variants, so the time shows the scaling.

"All vCPUs" means every CPU the run may use (``sandbox.cpuset``, else this process's affinity), not
only the spec's ``vcpus``: the default spec has one vCPU, where an all-vCPU variant would repeat the
single-thread one. When the spec has fewer, the variant gets a sandbox of its own with that many
vCPUs, created through the same override on every driver, so the comparison stays matched (a VM gets
that many vCPUs, a container a CPU quota of that many CPUs). ``all_vcpus`` sets the count; 1 turns
the variant off.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from isobench.drivers.base import Sandbox, SandboxSpec
from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params, run_checked
from isobench.workloads._sysbench import SysbenchCpu, parse_sysbench_cpu
from isobench.workloads.base import WorkloadContext

__all__ = ["WORKLOAD", "CpuParams", "CpuWorkload", "all_vcpus", "cpu_measurements"]


@dataclass(frozen=True)
class CpuParams(Params):
    workload: ClassVar[str] = "cpu"

    #: Total events (prime searches up to ``max_prime``) per variant: ~1.2 s on one native core, and
    #: 20-50x that in a TCG guest, which a default run must still finish.
    events: int = 5000
    max_prime: int = 10000
    #: vCPUs of the all-vCPU variant: 0 = every CPU the run may use; 1 = no such variant.
    all_vcpus: int = field(default=0, metadata={"min": 0})

    @classmethod
    def quick(cls) -> CpuParams:
        # ~0.1 s natively; TCG guests are 20-50x slower.
        return cls(events=500)

    def misfit(self, memory_mib: int, cpus: Collection[int] | None) -> str | None:
        if cpus is not None and self.all_vcpus > len(cpus):
            return (
                f"workload cpu: all_vcpus={self.all_vcpus} is more than the CPUs this run may use "
                f"({len(cpus)}): the threads would take turns on them, so the all-vCPU figure would measure "
                f"overcommit; set at most {len(cpus)}, or 0 for every CPU the run may use"
            )
        return None


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


def all_vcpus(params: CpuParams, spec: SandboxSpec, usable: int) -> int:
    """Pure: the vCPUs of the all-vCPU variant; ``usable`` is how many CPUs this process may use.
    Never fewer than the spec gives (its sandbox already has them)."""
    wanted = params.all_vcpus or (len(spec.cpuset) if spec.cpuset else usable)
    return max(spec.vcpus, wanted)


def cpu_measurements(result: SysbenchCpu, params: CpuParams, variant: str, vcpus: int) -> list[Measurement]:
    if result.events != params.events:
        raise WorkloadError(f"sysbench cpu ran {result.events} events, asked for {params.events}")
    p = {
        "variant": variant,
        "threads": result.threads,
        "events": params.events,
        "max_prime": params.max_prime,
    }
    meta = {"tool": "sysbench cpu", "sandbox_vcpus": vcpus}
    return [
        Measurement("cpu.events_per_second", result.events_per_second, "ops_per_second", "higher", p, meta),
        Measurement("cpu.time", result.total_seconds, "seconds", "lower", p, meta),
        Measurement("cpu.event_latency.avg", result.latency_avg_seconds, "seconds", "lower", p, meta),
        Measurement("cpu.event_latency.p95", result.latency_p95_seconds, "seconds", "lower", p, meta),
    ]


class CpuWorkload(BaseWorkload):
    name = "cpu"
    description = "sysbench cpu: fixed prime-search work, 1 thread and all vCPUs"
    tools = ("sysbench",)
    precision_figures = ("cpu.events_per_second",)
    params_type = CpuParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = CpuParams.of(ctx)
        budget = self.budget(ctx)
        vcpus = ctx.spec.vcpus
        usable = os.sched_getaffinity(0)
        if misfit := params.misfit(ctx.spec.memory_mib, usable):  # a fleet's host, unchecked before
            raise WorkloadError(misfit)
        wide = all_vcpus(params, ctx.spec, len(usable))

        def variant(sandbox: Sandbox, name: str, threads: int, sandbox_vcpus: int) -> list[Measurement]:
            argv = sysbench_cpu_argv(params, threads)
            res = run_checked(sandbox, argv, timeout=budget.left(), what="sysbench cpu")
            return cpu_measurements(parse_sysbench_cpu(res.stdout), params, name, sandbox_vcpus)

        with ctx.sandbox() as sandbox:
            out = variant(sandbox, "single", 1, vcpus)
            if wide > 1 and wide == vcpus:
                out += variant(sandbox, "all", wide, vcpus)
        if wide > vcpus:
            with ctx.sandbox(vcpus=wide) as sandbox:
                out += variant(sandbox, "all", wide, wide)
        return out


WORKLOAD = CpuWorkload
