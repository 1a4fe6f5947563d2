"""The victims (steady benchmarks) and stressors (bounded stress-ng aggressors) interference pairs,
and the sets a quick and a default run use."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from isobench.interference.parsers import VictimResult, parse_fio, parse_iperf3, parse_sysbench

__all__ = [
    "DEFAULT_STRESSORS",
    "DEFAULT_VICTIMS",
    "QUICK_STRESSORS",
    "QUICK_VICTIMS",
    "STRESSORS",
    "VICTIMS",
    "Stressor",
    "Victim",
]


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
