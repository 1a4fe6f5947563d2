"""Harness overhead: a fixed CPU-bound command through the host driver vs run directly.

Both sides run the same command, alternating A/B in one process so machine drift hits both equally.
Wall time of the whole path is measured: for the driver side that is create + exec + destroy, i.e.
everything isobench adds around a workload. Prints medians, the ratio of medians with a bootstrap 95%
CI, and whether it meets the target (<= 1.03).

    .venv/bin/python benchmarks/harness_overhead.py [--pairs 15] [--events 4000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.host import HostDriver
from isobench.stats import ratio_ci, summarize

TARGET = 1.03


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--events", type=int, default=4000, help="sysbench cpu events per run (~1 s at 4000)")
    args = ap.parse_args()
    if shutil.which("sysbench") is None:
        print("sysbench is not installed; run scripts/setup.sh deps", file=sys.stderr)
        return 2
    argv = ["sysbench", "cpu", "--threads=1", f"--events={args.events}", "--time=0", "run"]
    work = Path(tempfile.mkdtemp(prefix="isobench-bench-"))
    try:
        driver = HostDriver(DriverContext(state_dir=work, work_dir=work / "w", run_id="bench"))
        direct: list[float] = []
        via: list[float] = []

        def run_direct() -> None:
            t = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            direct.append(time.perf_counter() - t)

        def run_driver(i: int) -> None:
            t = time.perf_counter()
            sb = driver.create(SandboxSpec(name=f"isobench-bench-{i}", run_id="bench"))
            try:
                res = sb.exec(argv, timeout=120)
            finally:
                sb.destroy()
            via.append(time.perf_counter() - t)
            if not res.ok:
                raise SystemExit(f"sysbench failed: {res.stderr}")

        run_direct()  # warm caches; not recorded
        direct.clear()
        for i in range(args.pairs):
            # Alternate which side goes first so neither always gets the warmer machine.
            if i % 2:
                run_direct()
                run_driver(i)
            else:
                run_driver(i)
                run_direct()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    d, v = summarize(direct), summarize(via)
    r = ratio_ci(via, direct)
    print(f"command: {' '.join(argv)}   pairs: {args.pairs}")
    print(f"direct      median {d.median:.4f} s  95% CI [{d.ci_low:.4f}, {d.ci_high:.4f}]  CoV {d.cov:.1%}")
    print(f"host driver median {v.median:.4f} s  95% CI [{v.ci_low:.4f}, {v.ci_high:.4f}]  CoV {v.cov:.1%}")
    verdict = "meets" if r.value <= TARGET else "MISSES"
    ci = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]"
    print(f"ratio driver/direct {r.value:.4f}  95% CI {ci}  {verdict} target <= {TARGET}")
    return 0 if r.value <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
