"""Synthetic results with known values for every report section."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
from isobench.model import Sample
from isobench.reports import ReportPaths, render
from isobench.results import Results

RUN_ID = "20261201-000000-test"


def _samples(
    driver: str,
    workload: str,
    metric: str,
    values: Iterable[float],
    unit: str = "s",
    better: str = "lower",
    params: dict[str, Any] | None = None,
    phase: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Sample]:
    return [
        Sample(
            run_id=RUN_ID,
            driver=driver,
            workload=workload,
            metric=metric,
            value=float(v),
            unit=unit,
            repetition=i,
            better=better,  # type: ignore[arg-type]
            params=params or {},
            metadata=metadata or {},
            phase=phase,
            timestamp=1.0e9 + i,
        )
        for i, v in enumerate(values)
    ]


def build_results() -> Results:
    rng = np.random.default_rng(42)
    n = 10

    def noisy(centre: float, cov: float = 0.02) -> np.ndarray:
        return centre * (1 + cov * rng.standard_normal(n))

    s: list[Sample] = []
    phases = {
        "host": {"create": 0.001, "ready": 0.0005},
        "container": {"create": 0.004, "namespaces": 0.003, "rootfs": 0.010, "ready": 0.002},
        "vm": {"create": 0.05, "define": 0.02, "boot": 2.0, "ready": 0.3},
    }
    for d, ph in phases.items():
        for name, dur in ph.items():
            s += _samples(d, "startup", f"startup.{name}", noisy(dur), phase=name)
        s += _samples(
            d, "startup", "startup.total", noisy(sum(ph.values())), metadata={"tool": "isobench-clock"}
        )
    for d, c in {"host": 10.0, "container": 10.2, "vm": 11.5}.items():
        s += _samples(d, "cpu", "cpu.events_per_s", noisy(1000 / c), unit="events/s", better="higher")
    for d, f in {"host": 1.0, "container": 0.97, "vm": 0.7}.items():
        for storage, base in {"rootfs": 400.0, "volume": 500.0}.items():
            s += _samples(
                d,
                "disk",
                "disk.read_mib_s",
                noisy(base * f),
                unit="MiB/s",
                better="higher",
                params={"storage": storage},
            )
    for d, f in {"host": 1.0, "container": 0.9, "vm": 0.5}.items():
        s += _samples(
            d,
            "network",
            "network.tcp_gbit_s",
            noisy(40 * f),
            unit="Gbit/s",
            better="higher",
            params={"path": "veth" if d != "host" else "loopback"},
        )
    for d, leaks in {"host": [1, 1, 1, 1], "container": [1, 0, 0, 1], "vm": [0, 0, 0, 0]}.items():
        for hardening in ("default", "strict"):
            use = leaks if hardening == "default" else [0, 0, 0, leaks[3]]
            # As suite/leakage emits them: 0/1 probes in unit "bool", a count and a % score.
            for probe, v in zip(("cpuinfo", "meminfo", "uptime", "kernel"), use, strict=True):
                s += _samples(
                    d,
                    "leakage",
                    f"leakage.{probe}",
                    [v] * 3,
                    unit="bool",
                    better="lower",
                    params={"hardening": hardening},
                )
            s += _samples(
                d, "leakage", "leakage.count", [sum(use)] * 3, unit="probes", params={"hardening": hardening}
            )
            s += _samples(
                d,
                "leakage",
                "leakage.score",
                [100 * sum(use) / 4] * 3,
                unit="%",
                better="lower",
                params={"hardening": hardening},
            )
    # As suite/workloads/interference.py emits them: degradations (fractions, unit "ratio"),
    # which can be near zero or negative, and one containment verdict per stressor.
    for d, f in {"host": 1.4, "container": 1.0, "vm": 0.6}.items():
        for stressor, deg in {"cpu": 0.3, "memory": 0.5, "io": -0.01}.items():
            for kind in ("d_mean", "d_p99"):
                s += _samples(
                    d,
                    "interference",
                    f"interference.cpu.{stressor}.{kind}",
                    [deg * f],
                    unit="ratio",
                    params={"duration_s": 2.0},
                )
            s += _samples(
                d,
                "interference",
                f"interference.{stressor}.contained",
                [0.0 if (d, stressor) == ("host", "memory") else 1.0],
                unit="bool",
                better="higher",
                params={"duration_s": 2.0},
            )
    # As suite/workloads/idle_memory.py emits them (bytes): the host-side total and what is behind
    # it; a container's limit and its inside view are no overhead.
    mib = 2.0**20
    vm_parts = {".vm.qemu_pss_bytes": (60, 62, 58), ".vm.guest_ram_rss_bytes": (180, 185, 178)}
    vm_figures = {
        "": tuple(a + b for a, b in zip(*vm_parts.values(), strict=True)),
        **vm_parts,
        ".vm.host_memavailable_delta_bytes": (270, 280, 266),
    }
    for suffix, values in vm_figures.items():
        s += _samples(
            "vm", "idle-memory", f"idle-memory.host_view{suffix}", [v * mib for v in values], "bytes"
        )
    for suffix, v in {"": 0.5, ".memory_limit_bytes": 512.0}.items():
        s += _samples("container", "idle-memory", f"idle-memory.host_view{suffix}", [v * mib] * 3, "bytes")
    for d in ("host", "container", "vm"):
        s += _samples(
            d, "idle-memory", "idle-memory.inside_used", noisy(900 * mib)[:3], unit="bytes", better="none"
        )
    # Two noisy cells and a failed cell with hostile text.
    s += _samples("container", "cpu", "cpu.latency_ms", [1, 2, 5, 1, 9, 1, 3, 1, 1, 7], unit="ms")
    s += _samples(
        "container", "syscall", "syscall.read_write.per_call", [2e-7, 3e-7, 2e-7, 5e-7, 2e-7], "seconds"
    )
    s += _samples("host", "cpu", "cpu.latency_ms", noisy(1.0), unit="ms")
    s.append(
        Sample.failure(
            run_id=RUN_ID,
            driver="vm",
            workload="disk",
            repetition=3,
            error="fio exited 1: <script>alert('x')</script> | cannot open /data",
        )
    )
    # Warm-up samples must never enter a figure.
    s += [
        Sample(
            run_id=RUN_ID,
            driver="host",
            workload="cpu",
            metric="cpu.events_per_s",
            value=1e9,
            unit="events/s",
            repetition=-1,
            better="higher",
            warmup=True,
        )
    ]
    run = {
        "run_id": RUN_ID,
        "started": 1.0e9,
        "ended": 1.0e9 + 60,
        "status": "complete",
        "isobench_version": "0.1.0",
        "host": {
            "kernel": "6.1.0-56-cloud-amd64",
            "cgroup_mode": "hybrid",
            "nesting": True,
            "accel": "tcg",
            "cpus": 2,
            "note": "<b>untrusted</b>",
        },
        "drivers": {
            "host": {"isolation": "none"},
            "container": {"isolation": "namespaces"},
            "vm": {"accel": "tcg", "libvirt": "9.0.0", "domain_type": "qemu"},
        },
    }
    return Results(run=run, samples=s)


@pytest.fixture
def results() -> Results:
    return build_results()


@pytest.fixture
def make_samples() -> Callable[..., list[Sample]]:
    return _samples


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Results, ReportPaths]:
    """The synthetic run rendered once; tests only read it."""
    out = tmp_path_factory.mktemp("report")
    r = build_results()
    return r, render(r, out)


# A run shaped like a real `isobench run --quick`: the workloads' own metric names, units and params
# (see suite/workloads/), with known medians, so the headline's choices can be checked.
REAL_DRIVERS = ("host", "container", "runc", "bwrap", "vm", "qemu")
REAL_WORKLOADS = (
    "startup",
    "idle-memory",
    "cpu",
    "memory-bandwidth",
    "disk",
    "network",
    "syscall",
    "leakage",
    "interference",
)
#: per driver: (to_ready s, idle bytes or None, cpu factor, disk factor, rtt s, syscall s, leak %, contained)
REAL_FIGURES: dict[str, tuple[float, float | None, float, float, float, float, float, int]] = {
    "host": (0.00015, None, 1.0, 1.0, 14e-6, 230e-9, 100.0, 0),
    "container": (0.0097, 524288.0, 1.0, 0.98, 66e-6, 270e-9, 20.0, 2),
    "runc": (0.125, 786432.0, 1.0, 0.97, 70e-6, 232e-9, 25.0, 2),
    "bwrap": (0.00046, None, 1.0, 0.99, 14e-6, 231e-9, 60.0, 0),
    "vm": (3.0, 259_000_000.0, 0.13, 0.3, 400e-6, 5e-6, 5.0, 2),
    "qemu": (2.6, 250_000_000.0, 0.13, 0.3, 380e-6, 5e-6, 5.0, 1),
}


#: per driver: the exec of `true` in a ready sandbox, s (bwrap makes its namespaces there)
REAL_EXEC: dict[str, float] = {
    "host": 0.001,
    "container": 0.002,
    "runc": 0.019,
    "bwrap": 0.0054,
    "vm": 0.14,
    "qemu": 0.1,
}


def build_real_results(
    drivers: Iterable[str] = REAL_DRIVERS, workloads: Iterable[str] = REAL_WORKLOADS, n: int = 3
) -> Results:
    rng = np.random.default_rng(7)
    wl = set(workloads)

    def vals(centre: float, count: int = n, cov: float = 0.01) -> np.ndarray:
        return centre * (1 + cov * rng.standard_normal(count))

    s: list[Sample] = []
    for d in drivers:
        ready, idle, cpu, disk, rtt, sysc, leak, contained = REAL_FIGURES[d]
        if "startup" in wl:
            to_ready = vals(ready)
            s += _samples(d, "startup", "startup.to_ready", to_ready, unit="seconds")
            s += _samples(d, "startup", "startup.to_exit", to_ready + REAL_EXEC[d], unit="seconds")
            s += _samples(
                d, "startup", "startup.phase.create", vals(ready / 2), unit="seconds", phase="create"
            )
        if "idle-memory" in wl:
            s += _samples(d, "idle-memory", "idle-memory.inside_used", vals(1e9), unit="bytes", better="none")
            if idle is not None:
                s += _samples(d, "idle-memory", "idle-memory.host_view", vals(idle), unit="bytes")
                if d in ("vm", "qemu"):
                    s += _samples(
                        d,
                        "idle-memory",
                        "idle-memory.host_view.vm.qemu_pss_bytes",
                        vals(idle * 0.3),
                        unit="bytes",
                    )
                    s += _samples(
                        d,
                        "idle-memory",
                        "idle-memory.host_view.vm.guest_ram_rss_bytes",
                        vals(idle * 0.7),
                        unit="bytes",
                    )
        if "cpu" in wl:
            for variant, threads, f in (("single", 1, 1.0), ("all", 2, 1.9)):
                p = {"variant": variant, "threads": threads, "events": 500, "max_prime": 10000}
                s += _samples(
                    d, "cpu", "cpu.events_per_second", vals(2900 * cpu * f), "ops_per_second", "higher", p
                )
                s += _samples(d, "cpu", "cpu.time", vals(0.17 / (cpu * f)), "seconds", "lower", p)
        if "memory-bandwidth" in wl:
            p = {
                "operation": "read",
                "variant": "single",
                "threads": 1,
                "block_bytes": 1048576,
                "access": "seq",
            }
            s += _samples(
                d,
                "memory-bandwidth",
                "memory-bandwidth.read.bandwidth",
                vals(6e9 * cpu),
                "bytes_per_second",
                "higher",
                p,
            )
        if "disk" in wl:
            for storage in ("root", "volume"):
                for qd, base in ((1, 9000.0), (32, 60000.0)):
                    p = {"storage": storage, "rw": "randread", "bs": "4k", "iodepth": qd, "direct": True}
                    s += _samples(
                        d, "disk", "disk.rand_read.iops", vals(base * disk, 1), "ops_per_second", "higher", p
                    )
        if "network" in wl:
            p = {"protocol": "tcp", "direction": "host_to_sandbox", "streams": 1, "placement": "cross-cpu"}
            s += _samples(
                d, "network", "network.tcp_throughput", vals(2e9 * disk, 1), "bytes_per_second", "higher", p
            )
            p = {"protocol": "tcp", "pattern": "ping-pong", "message_bytes": 64, "placement": "cross-cpu"}
            s += _samples(d, "network", "network.tcp_rtt.p50", vals(rtt, 1), "seconds", "lower", p)
        if "syscall" in wl:
            p = {"calls": 4000000, "syscalls": "read+write 1 byte"}
            s += _samples(d, "syscall", "syscall.read_write.per_call", vals(sysc), "seconds", "lower", p)
        if "leakage" in wl:
            for hardening in (True, False) if d == "container" else (None,):
                p = {} if hardening is None else {"hardening": hardening}
                score = leak if hardening in (None, True) else 45.0
                s += _samples(d, "leakage", "leakage.score", [score], "%", "lower", p)
                s += _samples(
                    d, "leakage", "leakage.cpuinfo", [1.0 if score > 10 else 0.0], "bool", "lower", p
                )
        if "interference" in wl:
            p = {"duration_s": 2.0}
            for i, stressor in enumerate(("cpu", "fork_bomb")):
                ok = 1.0 if i < contained else 0.0
                s += _samples(
                    d, "interference", f"interference.{stressor}.contained", [ok], "bool", "higher", p
                )
                s += _samples(
                    d,
                    "interference",
                    f"interference.cpu.{stressor}.d_mean",
                    [0.3 - 0.25 * ok],
                    "ratio",
                    "lower",
                    p,
                )
    run = {
        "run_id": RUN_ID,
        "started": 1.0e9,
        "status": "complete",
        "host": {"cpu_model": "AMD EPYC", "cpus": 2, "memory_bytes": 24 * 2**30, "kernel": "6.1.0"},
        "config": {"vcpus": 1, "memory_mib": 512, "quick": True},
        "drivers": {d: ({"accel": "tcg"} if d in ("vm", "qemu") else {"isolation": d}) for d in drivers},
    }
    return Results(run=run, samples=s)


@pytest.fixture
def real_results() -> Results:
    return build_real_results()
