"""A runner SIGKILLed at random moments of a short real run over every driver leaves nothing that
``isobench gc`` of its state dir does not remove."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from faultrun import ALL_DRIVERS, run_args
from isobench.gc import gc
from leftovers import docker_slots_of, run_ids_in

KILLS = int(os.environ.get("ISOBENCH_FAULTS_KILLS", "10"))
CELLS = len(ALL_DRIVERS.split(","))
#: A moment is a stage of the run and a delay into it. Stage 0: from the runner's start (CLI,
#: lock, driver probes and metadata, the private dockerd: several seconds on a loaded host); stage
#: k in 1..CELLS: once k-1 cells are in the journal (so inside cell k, or the next one: guest cells
#: take 3-8 s, container cells well under one); stage CELLS+1: every cell done (teardown: close()
#: of every driver, the dockerd's stop, finalize). Waiting on the journal rather than a clock puts
#: the kills in every phase whatever the host's load.
STAGE0_S = 8.0
DELAY_S = 2.0


def _cells_done(out: Path) -> int:
    """Cells whose samples are in the journal; -1 before the journal exists (the CLI's start)."""
    if not any(out.glob("*/journal.jsonl")):
        return -1
    drivers = set()
    for journal in out.glob("*/journal.jsonl"):
        with contextlib.suppress(OSError):
            for line in journal.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("type") == "sample":
                        drivers.add(rec.get("driver"))
    return len(drivers)


def _kill_at(proc: subprocess.Popen[bytes], out: Path, stage: int, delay: float) -> bool:
    """Wait for ``stage``, then ``delay`` s, then SIGKILL the runner; False if it ended first."""
    deadline = time.monotonic() + 900
    while stage > 0 and _cells_done(out) < stage - 1 and proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"run made no progress to stage {stage} in 900 s")
        time.sleep(0.05)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)  # the runner only, as a crash would: not its group
        proc.wait()
        return True


def _seed() -> int:
    return int(os.environ.get("ISOBENCH_FAULTS_SEED") or random.SystemRandom().randrange(2**31))


def test_sigkill_at_random_moments_then_gc_leaves_nothing(
    faults_state: Path, tmp_path: Path, check_clean: Callable[..., list[str]]
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    moments = []
    for _ in range(KILLS):
        stage = rng.randrange(CELLS + 2)
        moments.append((stage, round(rng.uniform(0.0, STAGE0_S if stage == 0 else DELAY_S), 2)))
    # Printed (pytest shows it with -s and with every failure) so a failure can be replayed:
    # ISOBENCH_FAULTS_SEED=<seed>.
    print(f"fault seed {seed}: kills (stage, delay s) {moments} over {ALL_DRIVERS}")
    failures = []
    for i, (stage, delay) in enumerate(moments):
        out = tmp_path / f"kill{i}"
        out.mkdir()
        with (tmp_path / f"kill{i}.log").open("w") as log:
            proc = subprocess.Popen(
                run_args(faults_state, out, seed=seed + i), stdout=log, stderr=subprocess.STDOUT
            )
            killed = _kill_at(proc, out, stage, delay)
        runs = run_ids_in(faults_state, out)
        slots = docker_slots_of(faults_state, runs)  # gc removes the records that name them
        t0 = time.monotonic()
        # isobench gc's own code, in this process: the CLI around it (one line per item, exit 1
        # unless clean) is tested in tests/suite/test_gc.py and by test_libvirtd; starting a fresh
        # interpreter per kill cost 10-30 s on a loaded host.
        report = gc(faults_state)
        took = time.monotonic() - t0
        left = check_clean(runs, slots)
        what = f"kill {i} at stage {stage} + {delay:.1f}s ({'killed' if killed else f'exited {proc.returncode} first'})"
        print(f"{what}: runs {sorted(runs)}, gc {took:.1f}s, {len(report.removed)} removed, {len(left)} left")
        if not report.clean or left:
            failures.append(f"{what}: gc {report.leftovers} {report.errors}; left {left}")
        if not killed:
            assert proc.returncode == 0, (tmp_path / f"kill{i}.log").read_text()[-2000:]
    assert not failures, f"seed {seed} (rerun with ISOBENCH_FAULTS_SEED={seed}):\n" + "\n".join(failures)
