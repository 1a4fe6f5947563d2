"""How often does the regression gate cry wolf, and how often does it catch a real regression?

Measured on this host with real budgeted runs, not simulated samples. Each *pair* is two
``isobench run --budget B`` runs back to back and one ``isobench compare --fail-on RULES`` of them:

- an **A/A pair** runs the same configuration twice: any alarm (exit 1) is a false alarm, with
  run-to-run variation included (two runs, as a CI job makes them);
- an **A/B pair** runs the baseline, then a candidate with a real injected slowdown: the
  container's CPU quota (``[drivers.container] cpus``, default 1.0 vs 0.9: the container's CPU
  figures lose ~10%) and, with ``--start-delay S``, ``[drivers.host] start_delay = S`` (seconds
  slept inside the host driver's create: a start-up regression). An alarm is a detection; one that
  names an injected figure is counted apart ("on target").

Pairs alternate A/A and A/B so drift of the machine hits both kinds alike. It prints every pair's
exit code and gate lines, then the per-compare false-alarm and detection rates with Wilson 95%
intervals. Exit 3 of compare ("cannot judge", the merged gate) is counted on its own line, never as a
pass or an alarm.

    .venv/bin/python benchmarks/gate_validity.py --pairs 2 --budget 2m \\
        --drivers host,container --workloads startup,cpu

Every run is a real matrix run: ``--pairs N`` makes N A/A and N A/B pairs, i.e. 4N runs of
``--budget`` each plus set-up and report time (~20 s per run here); keep it small on a shared host.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RULES = "startup.*:5%,cpu.*:5%"


@dataclass(frozen=True)
class Pair:
    kind: str  # "A/A" or "A/B"
    exit_code: int
    gate_lines: tuple[str, ...]
    on_target: bool


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (sound at small n and at 0 or n successes)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_once(args: argparse.Namespace, config: Path, out: Path) -> Path:
    """One budgeted run into ``out``; returns its run directory."""
    cmd = [
        args.isobench,
        "run",
        "--budget",
        args.budget,
        "--drivers",
        args.drivers,
        "--workloads",
        args.workloads,
        "--config",
        str(config),
        "--output",
        str(out),
        "--no-report",
    ]
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode not in (0, 1):
        sys.exit(f"run failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    print(f"    run {run_dir.name}: exit {res.returncode}, {time.monotonic() - started:.0f} s", flush=True)
    return run_dir


def compare(args: argparse.Namespace, base: Path, cur: Path) -> tuple[int, tuple[str, ...]]:
    cmd = [args.isobench, "compare", str(base), str(cur), "--fail-on", args.fail_on]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    gate = tuple(line for line in res.stderr.splitlines() if "gate" in line)
    if res.returncode not in (0, 1, 3):
        sys.exit(f"compare failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return res.returncode, gate


def write_configs(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    a = work / "A.toml"
    b = work / "B.toml"
    a.write_text(f"[drivers.container]\ncpus = {args.quota_a}\n")
    text = f"[drivers.container]\ncpus = {args.quota_b}\n"
    if args.start_delay:
        text += f"[drivers.host]\nstart_delay = {args.start_delay}\n"
    b.write_text(text)
    return a, b


def injected(line: str, args: argparse.Namespace) -> bool:
    """Whether a gate line names a figure the injection slows."""
    return "container/cpu." in line or (bool(args.start_delay) and "host/startup." in line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="A/A pairs, and as many A/B pairs")
    ap.add_argument("--budget", default="15m", help="each run's --budget")
    ap.add_argument("--drivers", default="host,container")
    ap.add_argument("--workloads", default="startup,cpu")
    ap.add_argument("--fail-on", default=DEFAULT_RULES, help=f"the gate's rules (default {DEFAULT_RULES})")
    ap.add_argument("--quota-a", type=float, default=1.0, help="baseline [drivers.container] cpus")
    ap.add_argument("--quota-b", type=float, default=0.9, help="candidate [drivers.container] cpus")
    ap.add_argument("--start-delay", type=float, default=0.0, help="candidate [drivers.host] start_delay (s)")
    ap.add_argument("--isobench", default=str(Path(sys.executable).parent / "isobench"))
    ap.add_argument("--keep", type=Path, help="keep the runs here (default: a temporary directory)")
    args = ap.parse_args()
    if "container" not in args.drivers.split(",") and not args.start_delay:
        ap.error("the injected slowdown is the container's CPU quota: include container in --drivers")

    work = args.keep or Path(tempfile.mkdtemp(prefix="isobench-gate-validity-"))
    work.mkdir(parents=True, exist_ok=True)
    conf_a, conf_b = write_configs(work, args)
    print(
        f"gate validity: {args.pairs} A/A + {args.pairs} A/B pairs, budget {args.budget} per run, "
        f"drivers {args.drivers}, workloads {args.workloads}, --fail-on '{args.fail_on}'; "
        f"A/B injects container cpus {args.quota_a} -> {args.quota_b}"
        + (f" and host start_delay {args.start_delay} s" if args.start_delay else ""),
        flush=True,
    )
    pairs: list[Pair] = []
    started = time.monotonic()
    for i in range(2 * args.pairs):
        kind = "A/A" if i % 2 == 0 else "A/B"
        print(f"pair {i + 1}/{2 * args.pairs} ({kind})", flush=True)
        base = run_once(args, conf_a, work / f"{i:02d}-base")
        cur = run_once(args, conf_a if kind == "A/A" else conf_b, work / f"{i:02d}-cur")
        code, gate = compare(args, base, cur)
        pair = Pair(kind, code, gate, any(injected(g, args) for g in gate))
        pairs.append(pair)
        print(f"    compare: exit {code}" + "".join(f"\n      {g}" for g in gate[:6]), flush=True)

    print(f"\n{len(pairs)} pairs in {(time.monotonic() - started) / 60:.1f} min; runs kept in {work}")
    print(f"{'':24}{'compares':>9}{'alarms':>8}{'rate':>7}  Wilson 95% CI   cannot judge")
    for kind, what in (("A/A", "false alarms (A/A)"), ("A/B", "detections (A/B)")):
        group = [p for p in pairs if p.kind == kind]
        alarms = sum(p.exit_code == 1 for p in group)
        judged = [p for p in group if p.exit_code != 3]
        lo, hi = wilson(alarms, len(judged))
        rate = alarms / len(judged) if judged else math.nan
        undecided = len(group) - len(judged)
        print(f"{what:24}{len(judged):9d}{alarms:8d}{rate:7.0%}  [{lo:4.0%}, {hi:4.0%}]   {undecided:12d}")
    ab = [p for p in pairs if p.kind == "A/B" and p.exit_code != 3]
    hits = sum(p.on_target for p in ab)
    lo, hi = wilson(hits, len(ab))
    print(
        f"{'on an injected figure':24}{len(ab):9d}{hits:8d}{hits / len(ab) if ab else math.nan:7.0%}  [{lo:4.0%}, {hi:4.0%}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
