"""The ``memory-bandwidth`` workload: STREAM-like sequential read and write bandwidth, in bytes/s.

sysbench memory walks one shared buffer (``--memory-scope=global``) sequentially in blocks larger
than any last-level cache this suite targets, so the figure is DRAM (or, in a guest, its emulation)
rather than cache bandwidth. Time-bound rather than size-bound so TCG guests finish on time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params, run_checked
from isobench.workloads._sysbench import SysbenchMemory, parse_sysbench_memory
from isobench.workloads.base import WorkloadContext

__all__ = ["WORKLOAD", "MemoryBandwidthParams", "MemoryBandwidthWorkload", "bandwidth_measurements"]


@dataclass(frozen=True)
class MemoryBandwidthParams(Params):
    workload: ClassVar[str] = "memory-bandwidth"

    #: Seconds per (operation, threads) variant.
    seconds: int = 5
    #: Buffer walked per event; 4x the 32 MiB L3 of the reference machine.
    block_mib: int = 128
    operations: tuple[str, ...] = field(default=("read", "write"), metadata={"choices": ("read", "write")})

    @classmethod
    def quick(cls) -> MemoryBandwidthParams:
        return cls(seconds=1, block_mib=64)

    def misfit(self, memory_mib: int, cpus: Collection[int] | None) -> str | None:
        if self.block_mib * 2 > memory_mib:
            return (
                f"workload memory-bandwidth: block_mib={self.block_mib} does not fit a {memory_mib} MiB "
                "sandbox; lower block_mib or raise sandbox.memory_mib"
            )
        return None


def sysbench_memory_argv(params: MemoryBandwidthParams, operation: str, threads: int) -> list[str]:
    return [
        "sysbench",
        "memory",
        f"--threads={threads}",
        f"--memory-block-size={params.block_mib}M",
        # Effectively unbounded: --time is the limit.
        "--memory-total-size=1T",
        f"--memory-oper={operation}",
        "--memory-access-mode=seq",
        "--memory-scope=global",
        f"--time={params.seconds}",
        "run",
    ]


def bandwidth_measurements(
    result: SysbenchMemory, params: MemoryBandwidthParams, variant: str
) -> list[Measurement]:
    # A run that stopped well short of its time limit ran into something else (OOM, signal).
    if result.total_seconds < 0.9 * params.seconds:
        raise WorkloadError(f"sysbench memory stopped after {result.total_seconds:.2f}s of {params.seconds}s")
    p = {
        "operation": result.operation,
        "variant": variant,
        "threads": result.threads,
        "block_bytes": result.block_bytes,
        "access": "seq",
    }
    meta = {"tool": "sysbench memory", "duration_seconds": result.total_seconds}
    return [
        Measurement(
            f"memory-bandwidth.{result.operation}.bandwidth",
            result.bytes_per_second,
            "bytes_per_second",
            "higher",
            p,
            meta,
        )
    ]


class MemoryBandwidthWorkload(BaseWorkload):
    name = "memory-bandwidth"
    description = "sysbench memory: sequential read/write bandwidth, 1 thread and all vCPUs"
    tools = ("sysbench",)
    precision_figures = ("memory-bandwidth.*.bandwidth",)
    params_type = MemoryBandwidthParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = MemoryBandwidthParams.of(ctx)
        misfit = params.misfit(ctx.spec.memory_mib, None)
        if misfit:
            raise WorkloadError(misfit)
        budget = self.budget(ctx)
        variants = [("single", 1)]
        if ctx.spec.vcpus > 1:
            variants.append(("all", ctx.spec.vcpus))
        out: list[Measurement] = []
        with ctx.sandbox() as sandbox:
            for op in params.operations:
                for variant, threads in variants:
                    res = run_checked(
                        sandbox,
                        sysbench_memory_argv(params, op, threads),
                        timeout=budget.left(),
                        what="sysbench memory",
                    )
                    out += bandwidth_measurements(parse_sysbench_memory(res.stdout), params, variant)
        return out


WORKLOAD = MemoryBandwidthWorkload
