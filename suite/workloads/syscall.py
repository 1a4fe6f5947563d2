"""The ``syscall`` workload: what a cheap system call and process creation cost inside the sandbox.

* cheap syscalls: ``dd bs=1`` from /dev/zero to /dev/null is a tight loop of one-byte read(2) and
  write(2) with no work in between; GNU dd times itself.
* fork: stress-ng's ``fork`` stressor (fork, child _exit, wait).
* fork+exec: a shell loop running ``/bin/true``. stress-ng's ``exec``/``spawn`` stressors refuse to
  run as root, and sandboxes run as root. The loop's own overhead (a test and an addition in sh) is
  small beside fork+exec, and the same in every driver.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from isobench.errors import WorkloadError
from isobench.model import Measurement
from isobench.workloads._common import Budget, resolve_params, run_checked
from isobench.workloads._stressng import parse_stress_ng_metrics
from isobench.workloads.base import WorkloadContext

__all__ = [
    "WORKLOAD",
    "SyscallParams",
    "SyscallWorkload",
    "fork_exec_script",
    "parse_dd_seconds",
    "parse_fork_exec",
]


@dataclass(frozen=True)
class SyscallParams:
    #: dd records: each is one read(2) and one write(2).
    dd_records: int = 2_000_000
    fork_ops: int = 5000
    fork_exec_iterations: int = 2000
    exec_path: str = "/bin/true"

    @classmethod
    def quick(cls) -> SyscallParams:
        return cls(dd_records=200_000, fork_ops=500, fork_exec_iterations=200)


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


def fork_exec_script(iterations: int, exec_path: str) -> str:
    # $(date) forks once before and once after the loop: two extra processes out of thousands.
    return (
        f"i=0; s=$(date +%s%N); while [ $i -lt {iterations} ]; do {exec_path}; i=$((i+1)); done; "
        f'e=$(date +%s%N); echo "forkexec $i $s $e"'
    )


def parse_fork_exec(stdout: str, iterations: int) -> float:
    """Seconds per fork+exec+wait from the loop's ``forkexec N start_ns end_ns`` line."""
    m = re.search(r"^forkexec (\d+) (\S+) (\S+)$", stdout, re.MULTILINE)
    if m is None:
        raise WorkloadError(f"fork+exec loop printed no result: {stdout.strip()[:200] or 'no output'}")
    if int(m.group(1)) != iterations:
        raise WorkloadError(f"fork+exec loop ran {m.group(1)} of {iterations} iterations")
    try:
        start, end = int(m.group(2)), int(m.group(3))
    except ValueError as err:
        raise WorkloadError("`date +%s%N` gave no nanoseconds; the sandbox needs GNU coreutils date") from err
    if end <= start:
        raise WorkloadError("fork+exec loop: clock went backwards")
    return (end - start) / 1e9 / iterations


class SyscallWorkload:
    name: ClassVar[str] = "syscall"
    description: ClassVar[str] = "cost of read/write syscalls (dd bs=1), fork (stress-ng) and fork+exec"
    tools: ClassVar[tuple[str, ...]] = ("dd", "stress-ng", "sh", "date", "true")
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        params = resolve_params(SyscallParams, ctx.quick, ctx.params, self.name)
        budget = Budget(ctx.timeout, "syscall")
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
                ["stress-ng", "--fork", "1", "--fork-ops", str(params.fork_ops), "--metrics-brief"],
                timeout=budget.left(),
                what="stress-ng --fork",
            )
            fork_metric = parse_stress_ng_metrics(fork.stderr + fork.stdout, "fork")
            loop = run_checked(
                sandbox,
                ["sh", "-c", fork_exec_script(params.fork_exec_iterations, params.exec_path)],
                timeout=budget.left(),
                what="fork+exec loop",
            )
            per_fork_exec = parse_fork_exec(loop.stdout, params.fork_exec_iterations)
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
                {"ops": fork_metric.bogo_ops},
                {
                    "tool": "stress-ng --fork",
                    "usr_seconds": fork_metric.usr_seconds,
                    "sys_seconds": fork_metric.sys_seconds,
                },
            ),
            Measurement(
                "syscall.fork_exec.per_op",
                per_fork_exec,
                "seconds",
                "lower",
                {"iterations": params.fork_exec_iterations, "exec": params.exec_path},
                {"tool": "sh loop + date +%s%N"},
            ),
        ]


WORKLOAD = SyscallWorkload
