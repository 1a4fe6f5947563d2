"""Boot-to-agent-ready: the stock guest (Debian's cloud kernel) and the micro guest (the minimal
kernel, vmlinux through PVH: drivers/guest/flavour.py), on the ``vm`` driver (libvirt) and this
driver on microvm and q35.

Side by side in one run, round-robin, so every leg sees the same host load; ``boot_total`` is each
driver's own phase (create start -> agent ready frame). What libvirt costs is vm - qemu/q35 (same
machine type and devices); what the smallest machine saves is q35 - microvm; what the kernel costs
is stock - micro on the same machine. The load average before and after is printed: under TCG
every figure moves with what else the host runs.

``--against S0`` adds every leg once more booted from state dir ``S0`` (label ``<leg>-base``), in
the same rounds, and prints each leg's ratio to its base: this revision's micro kernel (in
``--state-dir``) against another build (e.g. the one main's recipe built, in /var/lib/isobench).
Usage: .venv/bin/python benchmarks/qemu_boot.py [--runs N] [--memory-mib 512] [--legs a,b] [--against S0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.drivers.qemu import QemuDriver
from isobench.drivers.vm import VmDriver
from isobench.stats import ratio_ci, summarize

#: label -> (driver class, options). The stock legs are the ones this benchmark always had.
LEGS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "vm": (VmDriver, {"kernel": "stock"}),
    "vm-micro": (VmDriver, {"kernel": "micro"}),
    "qemu-q35": (QemuDriver, {"machine": "q35", "kernel": "stock"}),
    "qemu-microvm": (QemuDriver, {"machine": "microvm", "kernel": "stock"}),
    "qemu-microvm-micro": (QemuDriver, {"machine": "microvm", "kernel": "micro"}),
}
#: The label suffix of a leg booted from the ``--against`` state dir.
BASE = "-base"
#: (slower, faster) pairs whose ratio is printed.
RATIOS = (
    ("vm", "qemu-q35"),
    ("vm", "qemu-microvm"),
    ("qemu-microvm", "qemu-microvm-micro"),
    ("vm", "vm-micro"),
    ("vm", "qemu-microvm-micro"),
)


def _driver(label: str, state_dir: Path, work: Path, run_id: str) -> Driver:
    cls, options = LEGS[label.removesuffix(BASE)]
    drv: Driver = cls(DriverContext(state_dir, work / label, run_id, options))
    if isinstance(drv, QemuDriver) and options.get("machine") == "microvm":
        # The auto choice (with its cached TSC rate) is what a run gets; reuse it for the microvm leg.
        auto = QemuDriver(
            DriverContext(state_dir, work / f"{label}-auto", run_id, {"kernel": options["kernel"]})
        ).machine()
        if auto.machine == "microvm":
            drv._machine = auto
    return drv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--state-dir", type=Path, default=Path("/var/lib/isobench"))
    ap.add_argument("--memory-mib", type=int, default=512)
    ap.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated, of: {', '.join(LEGS)}")
    ap.add_argument("--against", type=Path, help="also boot every leg from this state dir (A/B)")
    args = ap.parse_args()
    labels = [x for x in args.legs.split(",") if x]
    unknown = [x for x in labels if x not in LEGS]
    if unknown:
        ap.error(f"unknown legs {unknown}; choose from {', '.join(LEGS)}")
    run_id = f"qbench{int(time.time())}"
    work = Path(tempfile.mkdtemp(prefix=f"isobench-{run_id}-"))
    drivers = {label: _driver(label, args.state_dir, work, run_id) for label in labels}
    if args.against is not None:
        for label in labels:
            drivers[label + BASE] = _driver(label + BASE, args.against, work / "base", run_id)
    boot: dict[str, list[float]] = {k: [] for k in drivers}
    phases: dict[str, dict[str, list[float]]] = {k: {} for k in drivers}
    load_before = os.getloadavg()
    try:
        for i in range(args.runs):
            for label, drv in drivers.items():
                sb = drv.create(SandboxSpec(f"b{i}-{label}", run_id, memory_mib=args.memory_mib))
                sb.destroy()
                for p in sb.phases:
                    phases[label].setdefault(p.name, []).append(p.seconds)
                boot[label].append(next(p.seconds for p in sb.phases if p.name == "boot_total"))
    finally:
        for drv in drivers.values():
            drv.gc(run_id)
            drv.close()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    accel = next(iter(drivers.values())).metadata().get("accel")
    print(
        f"accel={accel} runs={args.runs} memory={args.memory_mib}MiB"
        f" load average before {load_before[0]:.1f} after {load_after[0]:.1f} (1 min)"
    )
    for label, xs in boot.items():
        s = summarize(xs)
        ph = ", ".join(f"{k}={statistics.median(v):.3f}" for k, v in phases[label].items())
        print(f"{label:19s} boot_total median {s.median:.3f}s [{s.ci_low:.3f}, {s.ci_high:.3f}] | {ph}")
    pairs = list(RATIOS) + [(label + BASE, label) for label in labels if args.against is not None]
    for slow, fast in pairs:
        if slow in boot and fast in boot:
            r = ratio_ci(boot[slow], boot[fast])
            print(f"{slow}/{fast} boot ratio {r.value:.3f}  95% CI [{r.ci_low:.3f}, {r.ci_high:.3f}]")


if __name__ == "__main__":
    main()
