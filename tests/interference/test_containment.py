"""Whether an aggressor stayed contained, judged from its sandbox's typed stats (no root needed)."""

from __future__ import annotations

from typing import Any

from isobench.drivers.base import ExecResult, SandboxSpec, SandboxStats
from isobench.errors import SandboxError
from isobench.testing import FakeDriver, FakeSandbox, workload_context
from isobench.workloads._common import oom_kills
from isobench.workloads.interference import InterferenceWorkload, _cpu, _Liveness

MIB = 2**20


def facts(stats: SandboxStats, *, oom_before: float | None = 0.0, latency: float = 0.01) -> dict[str, Any]:
    ctx = workload_context(FakeDriver())
    ctx.spec = SandboxSpec(name="s", run_id="r", memory_mib=64, pids_limit=32)
    aggressor = FakeSandbox(ctx.spec, stats=stats)
    done = ExecResult(("sh",), 0, "", "", 0, 1)
    return InterferenceWorkload._containment(ctx, aggressor, done, _Liveness([latency]), oom_before)


def test_within_its_limits_on_a_live_host_is_contained() -> None:
    f = facts(SandboxStats(memory_peak_bytes=60 * MIB, oom_kills=2, pids=10))
    assert (f["contained"], f["limits_checked"], f["aggressor_memory_peak_mib"]) == (True, True, 60.0)
    assert (f["aggressor_oom_kills"], f["aggressor_exit"], f["host_alive"]) == (2.0, 0, True)


def test_over_its_memory_or_pids_limit_is_not() -> None:
    assert not facts(SandboxStats(memory_peak_bytes=80 * MIB, pids=1))["contained"]
    assert not facts(SandboxStats(memory_peak_bytes=1 * MIB, pids=33))["contained"]


def test_a_slow_host_is_not_contained() -> None:
    assert not facts(SandboxStats(memory_peak_bytes=1 * MIB), latency=5.0)["contained"]


def test_a_sandbox_that_measures_nothing_checks_no_limits() -> None:
    f = facts(SandboxStats())
    assert (f["limits_checked"], f["contained"]) == (False, True)
    assert "aggressor_oom_kills" not in f and "aggressor_memory_peak_mib" not in f


def test_unreadable_stats_count_as_unknown() -> None:
    def broken() -> SandboxStats:
        raise SandboxError("runc events failed")

    sb = FakeSandbox(stats=broken)
    assert (_cpu(sb), oom_kills(sb)) == (None, None)
    assert (_cpu(FakeSandbox(stats=SandboxStats(cpu_seconds=1.5))), oom_kills(FakeSandbox())) == (1.5, None)
