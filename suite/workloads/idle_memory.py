"""The ``idle-memory`` workload: the footprint of one idle sandbox, seen from the host and from inside.

* host view: what the sandbox's memory costs the host. For a cgroup (container, runc, docker) its
  pages and kernel objects, from ``memory.stat`` (``memory_footprint_bytes``): the usage counter
  (``memory.usage_in_bytes``, ``memory.current``) also holds a per-CPU charge reserve of up to 64
  pages a CPU, which at an idle container's size is most of the reading (on a 2-CPU host an idle
  container's counter read 244-512 KiB while its pages and kernel objects were 132-140 KiB); it is
  kept as ``host_view.memory_bytes``. For a VM, qemu's PSS + guest RAM RSS (``memory_bytes``). The driver's
  other byte figures come along, each under the name ``SandboxStats.as_dict`` gives it.
* inside view: MemTotal - MemAvailable of the sandbox's /proc/meminfo. A container shares the host
  kernel, so its /proc/meminfo is the host's; the metadata says which kernel the figure is about.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from isobench.drivers.base import SandboxStats
from isobench.drivers.stats import memcg_lag_left
from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params, run_checked
from isobench.workloads.base import WorkloadContext

__all__ = ["WORKLOAD", "IdleMemoryParams", "IdleMemoryWorkload", "idle_measurements", "parse_meminfo"]


@dataclass(frozen=True)
class IdleMemoryParams(Params):
    workload: ClassVar[str] = "idle-memory"

    #: Seconds the sandbox idles before it is measured (lets a guest finish booting services).
    settle_seconds: float = field(default=5.0, metadata={"min": 0})

    @classmethod
    def quick(cls) -> IdleMemoryParams:
        return cls(settle_seconds=1.0)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes by field name."""
    out: dict[str, int] = {}
    for m in re.finditer(r"^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?$", text, re.MULTILINE):
        out[m.group(1)] = int(m.group(2)) * 1024
    for need in ("MemTotal", "MemAvailable"):
        if need not in out:
            raise WorkloadError(f"/proc/meminfo inside the sandbox has no {need}")
    return out


def idle_measurements(
    stats: SandboxStats, inside: Mapping[str, int], host: Mapping[str, int], driver: str
) -> list[Measurement]:
    out: list[Measurement] = []
    figures = stats.memory_figures()
    # A cgroup's pages and kernel objects where its memory.stat gives them; its usage counter,
    # which also holds a per-CPU charge reserve, stays beside as host_view.memory_bytes.
    main = "memory_footprint_bytes" if stats.memory_footprint_bytes is not None else "memory_bytes"
    meta = {"driver_method": driver, "host_view": main}
    if (value := figures.pop(main, None)) is not None:
        out.append(Measurement("idle-memory.host_view", value, "bytes", "lower", {}, meta))
    for key, value in sorted(figures.items()):
        out.append(Measurement(f"idle-memory.host_view.{key}", value, "bytes", "lower", {}, meta))
    # Same MemTotal as the host's: the sandbox reads the host kernel's accounting.
    own_kernel = inside["MemTotal"] != host["MemTotal"]
    inside_meta = {
        "source": "/proc/meminfo MemTotal-MemAvailable",
        "kernel": "own" if own_kernel else "shared with host",
        "mem_total_bytes": inside["MemTotal"],
    }
    # No direction: a shared kernel shows the whole host's use (the native figure is that too), a
    # guest its own, so a guest's 28 MiB against the host's 585 MiB is not "better than native".
    out.append(
        Measurement(
            "idle-memory.inside_used",
            float(inside["MemTotal"] - inside["MemAvailable"]),
            "bytes",
            "none",
            {},
            inside_meta,
        )
    )
    return out


class IdleMemoryWorkload(BaseWorkload):
    name = "idle-memory"
    description = "footprint of one idle sandbox: host view (driver) and inside view"
    tools = ("cat",)
    precision_figures = ("idle-memory.host_view", "idle-memory.inside_used")
    params_type = IdleMemoryParams

    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._proc = proc_root

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = IdleMemoryParams.of(ctx)
        budget = self.budget(ctx)
        with ctx.sandbox() as sandbox:
            ready = time.monotonic()
            time.sleep(budget.cap(params.settle_seconds))
            stats = sandbox.stats()
            # A cgroup's memory.stat shows the sandbox's last pages only after the kernel's next
            # flush: a shorter settle (quick: 1 s) read a fresh container without its init's.
            if (lag := memcg_lag_left(ready, [stats], time.monotonic())) > 0:
                time.sleep(budget.cap(lag))
                stats = sandbox.stats()
            res = run_checked(
                sandbox, ["cat", "/proc/meminfo"], timeout=budget.cap(60), what="cat /proc/meminfo"
            )
        inside = parse_meminfo(res.stdout)
        host = parse_meminfo((self._proc / "meminfo").read_text())
        return idle_measurements(stats, inside, host, ctx.driver.name)


WORKLOAD = IdleMemoryWorkload
