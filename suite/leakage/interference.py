"""Noisy-neighbour interference (IBS-style): victims, stressors, parsers and the degradation figure.

A *victim* is a steady benchmark with a throughput and, where the tool gives one, a p99 latency. A
*stressor* is one stress-ng (or sync) aggressor, always bounded by ``--timeout`` and sized from the
sandbox's own limits. Degradation D is positive when the victim got worse:

- mean: D = (baseline - stressed) / baseline of the victim's throughput (higher is better);
- p99:  D = (stressed - baseline) / baseline of its 99th percentile latency (lower is better).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from isobench.errors import WorkloadError

__all__ = [
    "QUICK_STRESSORS",
    "QUICK_VICTIMS",
    "STRESSORS",
    "VICTIMS",
    "Stressor",
    "Victim",
    "VictimResult",
    "degradation",
    "parse_fio",
    "parse_iperf3",
    "parse_sysbench",
]


@dataclass(frozen=True)
class VictimResult:
    throughput: float
    unit: str
    p99_ms: float | None = None
    mean_latency_ms: float | None = None


@dataclass(frozen=True)
class Victim:
    name: str
    tool: str
    #: (duration s, workdir) -> shell command
    command: Callable[[float, str], str]
    parse: Callable[[str], VictimResult]


@dataclass(frozen=True)
class Stressor:
    name: str
    description: str
    #: (duration s, workdir, memory_mib, vcpus) -> shell command (always time-bounded)
    command: Callable[[float, str, int, int], str]


# --- parsers (tool output in, figures out) --------------------------------------------------


def _float(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


def parse_sysbench(text: str) -> VictimResult:
    """``sysbench cpu|memory run`` text output: events/s (cpu) or MiB/s (memory), avg and p99 latency."""
    mib = _float(r"\(([\d.]+) MiB/sec\)", text)
    eps = _float(r"events per second:\s*([\d.]+)", text)
    p99 = _float(r"99th percentile:\s*([\d.]+)", text)
    avg = _float(r"^\s*avg:\s*([\d.]+)", text)
    if mib is not None:
        return VictimResult(mib, "MiB/s", p99, avg)
    if eps is not None:
        return VictimResult(eps, "events/s", p99, avg)
    raise WorkloadError(f"sysbench output has no throughput: {text.strip()[-200:]!r}")


def parse_fio(text: str) -> VictimResult:
    """fio ``--output-format=json``: IOPS of the first job (read+write) and the p99 completion latency."""
    try:
        start = text.index("{")
        job = json.loads(text[start:])["jobs"][0]
    except (ValueError, KeyError, IndexError) as err:
        raise WorkloadError(f"fio output is not JSON with a job: {text.strip()[:200]!r}") from err
    iops = 0.0
    p99: float | None = None
    mean: float | None = None
    for side in ("read", "write"):
        d = job.get(side, {})
        if d.get("iops", 0) > 0:
            iops += float(d["iops"])
            clat = d.get("clat_ns", {})
            pct = clat.get("percentile", {})
            if "99.000000" in pct:
                p99 = max(p99 or 0.0, pct["99.000000"] / 1e6)
            if "mean" in clat:
                mean = max(mean or 0.0, clat["mean"] / 1e6)
    if iops <= 0:
        raise WorkloadError("fio did no I/O; check the victim's workdir")
    return VictimResult(iops, "IOPS", p99, mean)


def parse_iperf3(text: str) -> VictimResult:
    try:
        start = text.index("{")
        bps = json.loads(text[start:])["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError) as err:
        raise WorkloadError(f"iperf3 output has no received throughput: {text.strip()[:200]!r}") from err
    return VictimResult(float(bps) / 1e9, "Gbit/s")


def degradation(baseline: VictimResult, stressed: VictimResult) -> tuple[float, float | None]:
    """(D of the mean throughput, D of the p99 latency or None); positive means worse."""
    if baseline.throughput <= 0:
        raise WorkloadError("victim baseline throughput is zero; the victim itself is broken")
    d_mean = (baseline.throughput - stressed.throughput) / baseline.throughput
    d_p99: float | None = None
    if baseline.p99_ms and stressed.p99_ms is not None:
        d_p99 = (stressed.p99_ms - baseline.p99_ms) / baseline.p99_ms
    return d_mean, d_p99


# --- catalogue -------------------------------------------------------------------------------


def _s(seconds: float) -> int:
    """Whole seconds: sysbench, fio and iperf3 take no fractions."""
    return max(1, round(seconds))


def _q(path: str) -> str:
    return shlex.quote(path)


VICTIMS: dict[str, Victim] = {
    v.name: v
    for v in (
        Victim(
            "cpu",
            "sysbench",
            lambda d, _w: f"sysbench cpu --threads=1 --time={_s(d)} --percentile=99 run",
            parse_sysbench,
        ),
        Victim(
            "memory",
            "sysbench",
            lambda d, _w: (
                f"sysbench memory --threads=1 --memory-block-size=1M --memory-total-size=1000T "
                f"--time={_s(d)} --percentile=99 run"
            ),
            parse_sysbench,
        ),
        Victim(
            "disk",
            "fio",
            lambda d, w: (
                f"cd {_q(w)} && fio --name=victim --filename=isobench-victim.fio --rw=randwrite "
                f"--bs=4k --size=32M --direct=1 --ioengine=psync --time_based --runtime={_s(d)} "
                "--output-format=json; rc=$?; rm -f isobench-victim.fio; exit $rc"
            ),
            parse_fio,
        ),
        Victim(
            "network",
            "iperf3",
            lambda d, _w: (
                f"iperf3 -s -1 -D -p 5299 && sleep 0.3 && iperf3 -c 127.0.0.1 -p 5299 -t {_s(d)} -J"
            ),
            parse_iperf3,
        ),
    )
}


def _stress(args: str) -> Callable[[float, str, int, int], str]:
    def command(d: float, w: str, mem: int, cpus: int) -> str:
        body = args.format(mem2=2 * mem, cpus=cpus)
        return f"cd {_q(w)} && exec stress-ng {body} --temp-path {_q(w)} --timeout {_s(d)}s --quiet"

    return command


STRESSORS: dict[str, Stressor] = {
    s.name: s
    for s in (
        Stressor("cpu", "CPU hog: one spinner per vCPU", _stress("--cpu {cpus}")),
        Stressor(
            "memory_bomb", "allocates twice its memory limit", _stress("--vm 1 --vm-bytes {mem2}M --vm-keep")
        ),
        Stressor(
            "fork_bomb",
            "fork storm (bounded: stress-ng --fork, pids limit applies)",
            _stress("--fork 2 --fork-max 64"),
        ),
        Stressor(
            "disk_writer", "writes twice its memory to its own disk", _stress("--hdd 1 --hdd-bytes {mem2}M")
        ),
        Stressor("net_send", "UDP flood sender over loopback", _stress("--udp-flood 1")),
        Stressor("net_recv", "TCP loopback sender/receiver pairs", _stress("--sock 1")),
        Stressor("cache", "LLC thrasher", _stress("--cache 1")),
        Stressor("stream", "memory-bandwidth thrasher (STREAM)", _stress("--stream 1")),
        Stressor(
            "sync_storm",
            "sync() and sync_file_range writeback storm (the Houdini case)",
            _stress("--io 1 --sync-file 1 --sync-file-bytes 64M"),
        ),
    )
}

#: The smoke matrix (--quick, six drivers, two of them TCG guests, within 10 minutes on 2 cores): one
#: victim, and the two stressors that probe CPU scheduling and the pids limit; full runs do all.
QUICK_VICTIMS = ("cpu",)
QUICK_STRESSORS = ("cpu", "fork_bomb")
#: The default run: the two steady victims against one stressor per resource (CPU, memory, pids,
#: cache, writeback); every victim and stressor is one ``params`` entry away
#: (``[workloads.interference] victims = [...]``, ``stressors = [...]``).
DEFAULT_VICTIMS = ("cpu", "memory")
DEFAULT_STRESSORS = ("cpu", "memory_bomb", "fork_bomb", "cache", "sync_storm")
