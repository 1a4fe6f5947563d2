"""Running isobench as a separate process, the way a user (or a crash) meets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["FULL", "ISOBENCH", "gc_state", "isobench", "run_args"]

#: ``ISOBENCH_FAULTS_FULL=1``: the full sizes of the brief instead of the CI ones.
FULL = os.environ.get("ISOBENCH_FAULTS_FULL") == "1"
ISOBENCH = [sys.executable, "-m", "isobench.cli"]
#: One short real run over every driver: a quick workload, one repetition, no warm-up.
ALL_DRIVERS = "host,container,runc,bwrap,docker,vm,qemu"


def run_args(
    state: Path, output: Path, *, drivers: str = ALL_DRIVERS, seed: int = 1, repetitions: int = 1
) -> list[str]:
    return [
        *ISOBENCH,
        "run",
        "--drivers",
        drivers,
        "--workloads",
        "startup",
        "-n",
        str(repetitions),
        "--warmups",
        "0",
        "--no-report",
        "--seed",
        str(seed),
        "--state-dir",
        str(state),
        "--output",
        str(output),
    ]


def isobench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ISOBENCH, *args], capture_output=True, text=True, timeout=timeout, check=False)


def gc_state(state: Path) -> subprocess.CompletedProcess[str]:
    """``isobench gc`` of the private state dir only (never ``--all``)."""
    return isobench("gc", "--state-dir", str(state))
