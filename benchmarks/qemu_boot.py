"""Boot-to-agent-ready: the ``vm`` driver (libvirt) vs this driver on microvm and on q35.

Side by side in one run, round-robin, so all three see the same host load; ``boot_total`` is each
driver's own phase (create start -> agent ready frame). What libvirt costs is vm - qemu/q35 (same
machine type and devices); what the smallest machine saves is q35 - microvm.
Usage: .venv/bin/python benchmarks/qemu_boot.py [--runs N] [--memory-mib 512]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.drivers.qemu import QemuDriver
from isobench.drivers.vm import VmDriver
from isobench.stats import ratio_ci, summarize


def main() -> None:

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--state-dir", type=Path, default=Path("/var/lib/isobench"))
    ap.add_argument("--memory-mib", type=int, default=512)
    args = ap.parse_args()
    run_id = f"qbench{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix=f"isobench-{run_id}-"))
    microvm = QemuDriver(DriverContext(args.state_dir, work / "m", run_id, {"machine": "microvm"}))
    q35 = QemuDriver(DriverContext(args.state_dir, work / "q", run_id, {"machine": "q35"}))
    # The auto choice (with its cached TSC rate) is what a run gets; reuse it for the microvm leg.
    auto = QemuDriver(DriverContext(args.state_dir, work / "a", run_id, {})).machine()
    if auto.machine == "microvm":
        microvm._machine = auto
    drivers: dict[str, Driver] = {
        "vm": VmDriver(DriverContext(args.state_dir, work / "vm", run_id, {})),
        "qemu-microvm": microvm,
        "qemu-q35": q35,
    }
    boot: dict[str, list[float]] = {k: [] for k in drivers}
    phases: dict[str, dict[str, list[float]]] = {k: {} for k in drivers}
    try:
        for i in range(args.runs):
            for label, drv in drivers.items():
                sb = drv.create(SandboxSpec(f"b{i}", run_id, memory_mib=args.memory_mib))
                sb.destroy()
                for p in sb.phases:
                    phases[label].setdefault(p.name, []).append(p.seconds)
                boot[label].append(next(p.seconds for p in sb.phases if p.name == "boot_total"))
    finally:
        for drv in drivers.values():
            drv.gc(run_id)
            drv.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"accel={q35.accel()} runs={args.runs} memory={args.memory_mib}MiB machine(auto)={auto}")
    for label, xs in boot.items():
        s = summarize(xs)
        ph = ", ".join(f"{k}={statistics.median(v):.3f}" for k, v in phases[label].items())
        print(f"{label:13s} boot_total median {s.median:.3f}s [{s.ci_low:.3f}, {s.ci_high:.3f}] | {ph}")
    for label in ("qemu-q35", "qemu-microvm"):
        r = ratio_ci(boot["vm"], boot[label])
        print(f"vm/{label} boot ratio {r.value:.3f}  95% CI [{r.ci_low:.3f}, {r.ci_high:.3f}]")


if __name__ == "__main__":
    main()
