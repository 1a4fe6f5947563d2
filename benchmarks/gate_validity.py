"""How often does the regression gate cry wolf, and how often does it catch a real regression?

Measured on this host with real budgeted runs, not simulated samples. Each *pair* is two
``isobench run --budget B`` runs back to back and one ``isobench compare --fail-on RULES`` of them:

- an **A/A pair** runs the same configuration twice: any alarm (exit 1) is a false alarm, with
  run-to-run variation included (two runs, as a CI job makes them);
- an **A/B pair** runs the baseline, then a candidate with a real injected slowdown: the
  container's CPU quota (``[drivers.container] cpus``, default 1.0 vs 0.9) and, with
  ``--start-delay S``, ``[drivers.host] start_delay = S`` (seconds slept inside the host driver's
  create: a start-up regression). An alarm is a detection; alarms that name an injected figure are
  counted apart, per injection ("on container cpu", "on host start-up"), and so are A/B alarms on a
  figure nothing slowed. The injections are not 10% each: measured here, the quota took 15% from
  the container's two-thread cpu figure and 2.5% from the single-thread one (a short burst on one
  thread rarely uses more than 0.9 CPU of a period); a start delay of S seconds adds S to a host
  start-to-ready of ~0.18 ms, so even 1 ms is a several-fold regression, a check of the pipeline
  rather than of the 10% target.

``--in-run`` measures the gate of an A/B run instead (``isobench run --ab``, README "A/B in one
run"): each pair is ONE run holding both configurations, interleaved round by round in a seeded
random order, judged by ``isobench compare RUN --ab A,B --fail-on RULES`` (the exact signed-rank test
over rounds, Holm over the gated family). A whole-run shift of the machine then hits both sides
alike; what is left to cry wolf is the round-to-round noise the test counts. Its run gets twice
``--budget`` (the budget is per side in both modes). Every pair also keeps the per-round change the
compare estimated for every gated figure (``effects`` in pairs.json), so the size of the injected
regression is measured, not assumed.

``--neighbour`` makes the shared runner on purpose: a background ``stress-ng --cpu 1`` switched on
and off at random (20-90 s on, 20-90 s off, seeded), the neighbour job whose coming and going
shifts whole runs. Without it the measurement shows this host as it is at the time.

A start delay below 1 ms is spun on the monotonic clock (the host driver's ``start_delay``): a sleep
cannot be that short, a spin adds its length to within microseconds, so ``--start-delay 0.000018``
is a ~10% regression of a ~0.18 ms host start-to-ready.

Pairs alternate A/A and A/B so drift of the machine hits both kinds alike. It prints every pair's
exit code, the 1-minute load average before, between and after its two runs (on a shared
runner a load change between the runs can make an A/A compare alarm), its rule lines and failures,
then the per-compare false-alarm and detection rates with Wilson 95% intervals; ``pairs.json`` in
the work directory keeps every pair. Exit 3 of compare ("cannot judge", the merged gate) is counted
on its own line, never as a pass or an alarm.

    .venv/bin/python benchmarks/gate_validity.py --pairs 2 --budget 2m \\
        --drivers host,container --workloads startup,cpu

Every run is a real matrix run: ``--pairs N`` makes N A/A and N A/B pairs, i.e. 4N runs of
``--budget`` each plus set-up and report time (~25 s per run here); keep it small on a shared host.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from isobench.atomic import replacing
from isobench.config import parse_duration
from isobench.reports.ab import compare_ab
from isobench.reports.cells import CellKey
from isobench.reports.compare import compare as compare_runs
from isobench.reports.gate import parse_rules
from isobench.results import load_results

DEFAULT_RULES = "startup.*:5%,cpu.*:5%"


@dataclass(frozen=True)
class Pair:
    kind: str  # "A/A" or "A/B"
    exit_code: int
    #: The compare's failures (``isobench: gate: ...``): one per violated rule and figure.
    gate_lines: tuple[str, ...]
    #: Its rule summaries: figures matched, failed, passed, cannot judge, detectable change.
    rule_lines: tuple[str, ...]
    on_cpu: bool  # an alarm names the container's cpu figures (the quota's target)
    on_startup: bool  # an alarm names the host's start-up figures (the start delay's target)
    #: 1-minute load average before the baseline run, between the runs, after the current run.
    load: tuple[float, float, float]
    base: str
    cur: str
    #: ``--in-run``: gated figure -> the compare's change (B/A - 1), e.g. "container/cpu.events_per_second
    #: [variant=single]": -0.09. Empty for two-run pairs.
    effects: dict[str, float] = field(default_factory=dict)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (sound at small n and at 0 or n successes)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_once(args: argparse.Namespace, config: Path | None, out: Path, ab: Sequence[str] = ()) -> Path:
    """One budgeted run into ``out`` (of ``config``, or an A/B run of ``ab``); returns its run directory."""
    budget = args.budget
    if ab:
        budget = f"{2 * parse_duration(args.budget):.0f}s"
    cmd = [
        args.isobench,
        "run",
        "--budget",
        budget,
        "--drivers",
        args.drivers,
        "--workloads",
        args.workloads,
        *(["--config", str(config)] if config else []),
        *(["--max-n", str(args.max_n)] if args.max_n else []),
        *[x for spec in ab for x in ("--ab", spec)],
        "--output",
        str(out),
        "--no-report",
    ]
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode not in (0, 1):
        sys.exit(f"run failed (exit {res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    print(
        f"    run {run_dir.name}: exit {res.returncode}, {time.monotonic() - started:.0f} s, load {load1():.2f}",
        flush=True,
    )
    return run_dir


def compare(
    args: argparse.Namespace, base: Path, cur: Path | None
) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    """Exit code, failure lines (stderr) and rule lines (stdout) of one gated compare (of two runs, or
    with ``cur`` None of the A/B run ``base``)."""
    sides = [str(base), str(cur)] if cur else [str(base), "--ab", "A,B"]
    cmd = [args.isobench, "compare", *sides, "--fail-on", args.fail_on]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode not in (0, 1, 3):
        sys.exit(f"compare failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    gate = tuple(line for line in res.stderr.splitlines() if "gate" in line)
    rules = tuple(line for line in res.stdout.splitlines() if line.startswith("rule "))
    return res.returncode, gate, rules


def ab_effects(run: Path, fail_on: str) -> dict[str, float]:
    """Per gated figure of the A/B run ``run``: the paired change B/A - 1 its compare estimates."""
    cmp = compare_ab(load_results(run), "A", "B", parse_rules([fail_on]))
    return {_figure(c.key): round(c.change, 5) for c in cmp.changes if c.gated and math.isfinite(c.change)}


def write_configs(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    a = work / "A.toml"
    b = work / "B.toml"
    a.write_text(f"[drivers.container]\ncpus = {args.quota_a}\n")
    text = f"[drivers.container]\ncpus = {args.quota_b}\n"
    if args.start_delay:
        text += f"[drivers.host]\nstart_delay = {args.start_delay}\n"
    b.write_text(text)
    return a, b


def names_cpu(line: str) -> bool:
    """Whether a gate line names a figure the container's CPU quota slows."""
    return "container/cpu." in line


def names_startup(line: str, delayed: bool) -> bool:
    """Whether a gate line names a figure the host's start delay (if any: ``delayed``) slows."""
    return delayed and "host/startup." in line


def names_other(line: str, delayed: bool) -> bool:
    """Whether a gate line fails a figure no injection slows (in an A/B pair: the machine moved)."""
    return "violates" in line and not names_cpu(line) and not names_startup(line, delayed)


def rate_line(what: str, hits: int, n: int, undecided: int | None = None) -> str:
    lo, hi = wilson(hits, n)
    rate = hits / n if n else math.nan
    tail = f"   {undecided:12d}" if undecided is not None else ""
    return f"{what:24}{n:9d}{hits:8d}{rate:7.0%}  [{lo:4.0%}, {hi:4.0%}]{tail}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="A/A pairs, and as many A/B pairs (default 5)")
    ap.add_argument("--budget", default="15m", help="each run's --budget (default 15m)")
    ap.add_argument(
        "--drivers", default="host,container", help="each run's --drivers (default host,container)"
    )
    ap.add_argument("--workloads", default="startup,cpu", help="each run's --workloads (default startup,cpu)")
    # argparse %-formats help strings: the rules' percent signs must be doubled.
    ap.add_argument(
        "--fail-on",
        default=DEFAULT_RULES,
        help=f"the gate's rules (default {DEFAULT_RULES.replace('%', '%%')})",
    )
    ap.add_argument(
        "--max-n", type=int, help="each run's --max-n (default: isobench's, 100; 400 in an A/B run)"
    )
    ap.add_argument("--quota-a", type=float, default=1.0, help="baseline [drivers.container] cpus")
    ap.add_argument("--quota-b", type=float, default=0.9, help="candidate [drivers.container] cpus")
    ap.add_argument("--start-delay", type=float, default=0.0, help="candidate [drivers.host] start_delay (s)")
    ap.add_argument(
        "--isobench",
        default=str(Path(sys.executable).parent / "isobench"),
        help="the isobench to run (default: this venv's)",
    )
    ap.add_argument(
        "--in-run",
        action="store_true",
        help="each pair is one A/B run (isobench run --ab, both sides interleaved), compared paired by round",
    )
    ap.add_argument(
        "--neighbour",
        action="store_true",
        help="a stress-ng --cpu 1 switched on and off at random (20-90 s each) during the measurement",
    )
    ap.add_argument("--seed", type=int, default=1, help="the neighbour's schedule (default 1)")
    ap.add_argument("--keep", type=Path, help="keep the runs here (default: a temporary directory)")
    ap.add_argument(
        "--summarize",
        type=Path,
        metavar="PAIRS_JSON",
        help="run nothing: print the table of a measurement's pairs.json (e.g. one that was stopped)",
    )
    ap.add_argument(
        "--history",
        action="store_true",
        help="with --summarize: re-judge every two-run pair with compare --history, the history being "
        "the measurement's other baseline-configuration runs (leave the pair out)",
    )
    args = ap.parse_args()
    if args.summarize:
        kept = load_pairs(args.summarize)
        print(f"{len(kept)} pairs from {args.summarize}")
        if args.history:
            kept = rejudge_with_history(kept, args.summarize.parent, args.fail_on)
        print_table(kept, with_startup=bool(args.start_delay) or any(p.on_startup for p in kept))
        return 0
    if args.pairs < 1:
        ap.error("--pairs must be at least 1")
    if "container" not in args.drivers.split(",") and not args.start_delay:
        ap.error("the injected slowdown is the container's CPU quota: include container in --drivers")

    work = args.keep or Path(tempfile.mkdtemp(prefix="isobench-gate-validity-"))
    work.mkdir(parents=True, exist_ok=True)
    conf_a, conf_b = write_configs(work, args)
    print(
        f"gate validity: {args.pairs} A/A + {args.pairs} A/B pairs, budget {args.budget} per "
        + ("side (one A/B run per pair), " if args.in_run else "run, ")
        + f"drivers {args.drivers}, workloads {args.workloads}, --fail-on '{args.fail_on}'; "
        f"A/B injects container cpus {args.quota_a} -> {args.quota_b}"
        + (f" and host start_delay {args.start_delay} s" if args.start_delay else ""),
        flush=True,
    )
    neighbour = Neighbour(args.seed) if args.neighbour else None
    try:
        pairs = measure(args, work, conf_a, conf_b)
    finally:
        if neighbour:
            neighbour.stop()
    print_table(pairs, with_startup=bool(args.start_delay))
    return 0


class Neighbour:
    """A noisy neighbour: ``stress-ng --cpu 1`` on and off at random, until :meth:`stop`."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="neighbour", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._rng.uniform(20, 90)):
            on = self._rng.uniform(20, 90)
            with self._lock:  # never start one after stop() looked
                if self._stop.is_set():
                    return
                print(f"    neighbour: stress-ng --cpu 1 for {on:.0f} s", flush=True)
                proc = self._proc = subprocess.Popen(
                    ["stress-ng", "--cpu", "1", "--timeout", f"{on:.0f}s", "--quiet"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            proc.wait()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait()
        self._thread.join(timeout=5)


def measure(args: argparse.Namespace, work: Path, conf_a: Path, conf_b: Path) -> list[Pair]:
    """The pairs, alternating A/A and A/B; pairs.json rewritten after each."""
    pairs: list[Pair] = []
    started = time.monotonic()
    for i in range(2 * args.pairs):
        kind = "A/A" if i % 2 == 0 else "A/B"
        before = load1()
        print(f"pair {i + 1}/{2 * args.pairs} ({kind}), load {before:.2f}", flush=True)
        effects: dict[str, float] = {}
        if args.in_run:
            other = conf_a if kind == "A/A" else conf_b
            base = run_once(args, None, work / f"{i:02d}-ab", ab=(f"A={conf_a}", f"B={other}"))
            between = math.nan
            code, gate, rules = compare(args, base, None)
            effects = ab_effects(base, args.fail_on)
            cur = base
        else:
            base = run_once(args, conf_a, work / f"{i:02d}-base")
            between = load1()
            cur = run_once(args, conf_a if kind == "A/A" else conf_b, work / f"{i:02d}-cur")
            code, gate, rules = compare(args, base, cur)
        pair = Pair(
            kind,
            code,
            gate,
            rules,
            any(names_cpu(g) for g in gate),
            any(names_startup(g, bool(args.start_delay)) for g in gate),
            (before, between, load1()),
            base.name,
            cur.name,
            effects,
        )
        pairs.append(pair)
        print(
            f"    compare: exit {code}, load {' -> '.join(f'{x:.2f}' for x in pair.load)}"
            + "".join(f"\n      {line}" for line in (*rules, *gate[:6]))
            + (
                "\n      changes: " + ", ".join(f"{k} {v:+.1%}" for k, v in sorted(effects.items()))
                if effects
                else ""
            ),
            flush=True,
        )
        with replacing(work / "pairs.json") as f:  # a kill mid-write keeps the pairs before
            f.write(json.dumps([asdict(p) for p in pairs], indent=1))

    print(f"\n{len(pairs)} pairs in {(time.monotonic() - started) / 60:.1f} min; runs kept in {work}")
    return pairs


def rejudge_with_history(pairs: Sequence[Pair], work: Path, fail_on: str) -> list[Pair]:
    """Each two-run pair judged again as ``isobench compare BASE CUR --history H`` would, H being
    every other kept run of the baseline configuration (the A/A pairs' runs and the A/B pairs'
    baselines, minus the pair's own): what a runner keeping its earlier runs would have decided.
    Prints each pair's verdict and the detectable change per gated figure."""
    if any(p.base == p.cur for p in pairs):
        sys.exit("--history re-judges two-run pairs; these pairs are A/B runs (--in-run): judged in one run")
    rules = parse_rules([fail_on])
    by_id = {d.name: d for d in work.glob("*/*") if d.is_dir()}
    a_runs = [p.base for p in pairs] + [p.cur for p in pairs if p.kind == "A/A"]
    loaded = {rid: load_results(by_id[rid]) for rid in {*a_runs, *(p.cur for p in pairs)}}
    out = []
    detectable: dict[str, list[float]] = {}
    delayed = any(p.on_startup for p in pairs)  # the measurement injected a host start delay
    for p in pairs:
        history = [loaded[r] for r in a_runs if r not in (p.base, p.cur)]
        cmp = compare_runs(loaded[p.base], loaded[p.cur], rules, resamples=0, history=history)
        gate = tuple(
            f"isobench: gate: {_figure(c.key)}: {c.change:+.1%}, violates {', '.join(c.failed_rules)}"
            for c in cmp.changes
            if c.failed
        )
        for c in cmp.changes:
            if c.gated:
                detectable.setdefault(_figure(c.key), []).append(c.detectable)
        out.append(
            replace(
                p,
                exit_code=cmp.exit_code,
                gate_lines=gate,
                on_cpu=any(names_cpu(g) for g in gate),
                on_startup=any(names_startup(g, delayed) for g in gate),
            )
        )
        print(f"  {p.kind} {p.base} -> {p.cur} (+{len(history)} history runs): exit {cmp.exit_code}")
        for g in gate:
            print(f"      {g}")
    print("detectable change (80% power) per gated figure, median over the pairs:")
    for k, vs in sorted(detectable.items()):
        print(f"  {k:58} {sorted(vs)[len(vs) // 2]:7.0%}")
    return out


def _figure(key: CellKey) -> str:
    return f"{key.driver}/{key.metric}" + (f" [{key.variant}]" if key.variant else "")


def load_pairs(path: Path) -> list[Pair]:
    """The pairs ``pairs.json`` kept (written after every pair, so an interrupted measurement keeps
    the pairs it finished)."""
    out = []
    for d in json.loads(path.read_text()):
        out.append(
            Pair(
                kind=str(d["kind"]),
                exit_code=int(d["exit_code"]),
                gate_lines=tuple(d["gate_lines"]),
                rule_lines=tuple(d["rule_lines"]),
                on_cpu=bool(d["on_cpu"]),
                on_startup=bool(d["on_startup"]),
                load=(float(d["load"][0]), float(d["load"][1]), float(d["load"][2])),
                base=str(d["base"]),
                cur=str(d["cur"]),
                effects={str(k): float(v) for k, v in d.get("effects", {}).items()},
            )
        )
    return out


def print_table(pairs: list[Pair], *, with_startup: bool) -> None:
    loads = [x for p in pairs for x in p.load if math.isfinite(x)]
    print(f"1-minute load average over the pairs: {min(loads):.2f} to {max(loads):.2f}")
    print(f"{'':24}{'compares':>9}{'alarms':>8}{'rate':>7}  Wilson 95% CI   cannot judge")
    for kind, what in (("A/A", "false alarms (A/A)"), ("A/B", "detections (A/B)")):
        group = [p for p in pairs if p.kind == kind]
        judged = [p for p in group if p.exit_code != 3]
        alarms = sum(p.exit_code == 1 for p in group)
        print(rate_line(what, alarms, len(judged), len(group) - len(judged)))
    ab = [p for p in pairs if p.kind == "A/B" and p.exit_code != 3]
    print(rate_line("on container cpu", sum(p.on_cpu for p in ab), len(ab)))
    if with_startup:
        print(rate_line("on host start-up", sum(p.on_startup for p in ab), len(ab)))
    # An A/B alarm on a figure nothing slowed is a false alarm inside a detection: when these are
    # common, the detections above say as much about the machine as about the injection.
    other = [any(names_other(g, with_startup) for g in p.gate_lines) for p in ab]
    print(rate_line("on a figure not injected", sum(other), len(ab)))
    print(
        rate_line(
            "on container cpu alone", sum(p.on_cpu and not o for p, o in zip(ab, other, strict=True)), len(ab)
        )
    )
    print_effects(pairs)


def print_effects(pairs: Sequence[Pair]) -> None:
    """In-run pairs: the measured size of each figure's change, median and range over the pairs of a
    kind (in A/B pairs the injected figures show the regression actually injected)."""
    for kind in ("A/A", "A/B"):
        per: dict[str, list[float]] = {}
        count = sum(p.kind == kind for p in pairs)
        for p in pairs:
            if p.kind == kind:
                for k, v in p.effects.items():
                    per.setdefault(k, []).append(v)
        if not per:
            continue
        print(f"{kind} pairs, change B/A per gated figure (median, range over {count} pairs):")
        for k, vs in sorted(per.items()):
            vs.sort()
            print(f"  {k:58} {vs[len(vs) // 2]:+7.1%}  [{vs[0]:+7.1%}, {vs[-1]:+7.1%}]")


if __name__ == "__main__":
    raise SystemExit(main())
