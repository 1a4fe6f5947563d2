"""The ``syscall`` workload: what a cheap system call and process creation cost inside the sandbox.

* cheap syscalls: ``dd bs=1`` from /dev/zero to /dev/null is a tight loop of one-byte read(2) and
  write(2) with no work in between; GNU dd times itself.
* fork: stress-ng's ``fork`` stressor (fork, child _exit, wait) for a fixed time.
* fork+exec: a shell loop running ``/bin/true`` in chunks of ``fork_exec_chunk`` until at least
  ``fork_exec_seconds`` have passed. stress-ng's ``exec``/``spawn`` stressors refuse to run as root,
  and sandboxes run as root. The loop's own overhead (a test and an addition in sh, and one
  ``date`` per chunk: ~1% more processes) is small beside fork+exec, and the same in every driver.

fork and fork+exec are bounded by time, not by count: a TCG guest forks ~40x slower than the host,
and a fixed count sized for the host took over a minute per guest cell (2000 fork+execs at 22 ms).
The rate is the figure; how many operations it took is kept in the metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import BaseWorkload, Params, run_checked
from isobench.workloads._stressng import parse_stress_ng_metrics
from isobench.workloads.base import WorkloadContext

__all__ = [
    "WORKLOAD",
    "ForkExecResult",
    "SyscallParams",
    "SyscallWorkload",
    "fork_exec_script",
    "parse_dd_seconds",
    "parse_fork_exec",
]


@dataclass(frozen=True)
class SyscallParams(Params):
    workload: ClassVar[str] = "syscall"

    #: dd records: each is one read(2) and one write(2).
    dd_records: int = 2_000_000
    #: seconds stress-ng forks for.
    fork_seconds: int = 3
    #: the fork+exec loop runs whole chunks until at least this many seconds have passed.
    fork_exec_seconds: float = 3.0
    fork_exec_chunk: int = 100
    exec_path: str = field(default="/bin/true", metadata={"path": True})

    @classmethod
    def quick(cls) -> SyscallParams:
        return cls(dd_records=200_000, fork_seconds=1, fork_exec_seconds=0.5, fork_exec_chunk=20)


def parse_dd_seconds(stderr: str, records: int) -> float:
    """Elapsed seconds GNU dd reports; checks every record went in and out."""
    for direction in ("in", "out"):
        m = re.search(rf"^(\d+)\+(\d+) records {direction}$", stderr, re.MULTILINE)
        if m is None or int(m.group(1)) != records:
            raise WorkloadError(f"dd did not copy {records} records ({direction}): {stderr.strip()[:200]}")
    m = re.search(r"copied, ([\d.e+-]+) s", stderr)
    if m is None:
        raise WorkloadError("dd printed no elapsed time; the sandbox needs GNU coreutils dd")
    seconds = float(m.group(1))
    if seconds <= 0:
        raise WorkloadError("dd reported zero elapsed time")
    return seconds


def fork_exec_script(seconds: float, chunk: int, exec_path: str) -> str:
    """sh: run ``exec_path`` ``chunk`` times, then read the clock, until ``seconds`` have passed.
    Prints ``forkexec N start_ns end_ns``. (sh arithmetic is 64-bit in dash and busybox.)"""
    return (
        "i=0; s=$(date +%s%N); e=$s; "
        # busybox date prints a literal %N: say so instead of failing in the arithmetic.
        'case $s in *[!0-9]*) echo "date +%s%N gave no nanoseconds ($s): '
        'the sandbox needs GNU coreutils date" >&2; exit 3;; esac; '
        f"end=$((s + {round(seconds * 1e9)})); "
        f"while [ $e -lt $end ]; do j=0; while [ $j -lt {chunk} ]; do {exec_path}; j=$((j+1)); done; "
        f"i=$((i+{chunk})); e=$(date +%s%N); done; "
        'echo "forkexec $i $s $e"'
    )


@dataclass(frozen=True)
class ForkExecResult:
    iterations: int
    seconds: float

    @property
    def per_op(self) -> float:
        return self.seconds / self.iterations


def parse_fork_exec(stdout: str, min_seconds: float, chunk: int) -> ForkExecResult:
    """The loop's ``forkexec N start_ns end_ns`` line, checked: whole chunks, at least one, and at
    least ``min_seconds`` of clock between the two readings."""
    m = re.search(r"^forkexec (\d+) (\S+) (\S+)$", stdout, re.MULTILINE)
    if m is None:
        raise WorkloadError(f"fork+exec loop printed no result: {stdout.strip()[:200] or 'no output'}")
    iterations = int(m.group(1))
    if iterations < chunk or iterations % chunk:
        raise WorkloadError(f"fork+exec loop ran {iterations} iterations, not whole chunks of {chunk}")
    try:
        start, end = int(m.group(2)), int(m.group(3))
    except ValueError as err:
        raise WorkloadError("`date +%s%N` gave no nanoseconds; the sandbox needs GNU coreutils date") from err
    if end <= start:
        raise WorkloadError("fork+exec loop: clock went backwards")
    seconds = (end - start) / 1e9
    if seconds < min_seconds:
        raise WorkloadError(f"fork+exec loop stopped after {seconds:.3f}s, before {min_seconds}s")
    return ForkExecResult(iterations, seconds)


class SyscallWorkload(BaseWorkload):
    name = "syscall"
    description = "cost of read/write syscalls (dd bs=1), fork (stress-ng) and fork+exec"
    tools = ("dd", "stress-ng", "sh", "date", "true")
    precision_figures = ("syscall.*",)
    params_type = SyscallParams

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = SyscallParams.of(ctx)
        budget = self.budget(ctx)
        with ctx.sandbox() as sandbox:
            dd = run_checked(
                sandbox,
                ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={params.dd_records}"],
                timeout=budget.left(),
                what="dd",
            )
            dd_seconds = parse_dd_seconds(dd.stderr, params.dd_records)
            fork = run_checked(
                sandbox,
                ["stress-ng", "--fork", "1", "--timeout", f"{params.fork_seconds}s", "--metrics-brief"],
                timeout=budget.left(),
                what="stress-ng --fork",
            )
            fork_metric = parse_stress_ng_metrics(fork.stderr + fork.stdout, "fork")
            loop = run_checked(
                sandbox,
                [
                    "sh",
                    "-c",
                    fork_exec_script(params.fork_exec_seconds, params.fork_exec_chunk, params.exec_path),
                ],
                timeout=budget.left(),
                what="fork+exec loop",
            )
            fork_exec = parse_fork_exec(loop.stdout, params.fork_exec_seconds, params.fork_exec_chunk)
        calls = 2 * params.dd_records
        return [
            Measurement(
                "syscall.read_write.per_call",
                dd_seconds / calls,
                "seconds",
                "lower",
                {"calls": calls, "syscalls": "read+write 1 byte"},
                {"tool": "dd bs=1 /dev/zero -> /dev/null"},
            ),
            Measurement(
                "syscall.fork.ops_per_second",
                fork_metric.ops_per_second_real,
                "ops_per_second",
                "higher",
                {"seconds": params.fork_seconds},
                {
                    "tool": "stress-ng --fork",
                    "ops": fork_metric.bogo_ops,
                    "usr_seconds": fork_metric.usr_seconds,
                    "sys_seconds": fork_metric.sys_seconds,
                },
            ),
            Measurement(
                "syscall.fork_exec.per_op",
                fork_exec.per_op,
                "seconds",
                "lower",
                {"min_seconds": params.fork_exec_seconds, "exec": params.exec_path},
                {
                    "tool": "sh loop + date +%s%N",
                    "iterations": fork_exec.iterations,
                    "chunk": params.fork_exec_chunk,
                    "seconds": fork_exec.seconds,
                },
            ),
        ]


WORKLOAD = SyscallWorkload
