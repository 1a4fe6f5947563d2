"""A runner SIGKILLed at random moments of a short real run over every driver leaves nothing that
``isobench gc`` of its state dir does not remove."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from faultrun import ALL_DRIVERS, gc_state, run_args
from leftovers import run_ids_in

KILLS = int(os.environ.get("ISOBENCH_FAULTS_KILLS", "10"))
#: Kill moments are drawn from (0, SPAN) s after the runner starts. A whole run of the tiny matrix
#: over the seven drivers took 29-41 s here (CLI start, driver probes and metadata, the private
#: dockerd, two TCG boots), so a span of 35 s covers every phase; a moment past the run's end
#: checks a clean exit instead.
SPAN = float(os.environ.get("ISOBENCH_FAULTS_KILL_SPAN", "35"))


def _seed() -> int:
    return int(os.environ.get("ISOBENCH_FAULTS_SEED") or random.SystemRandom().randrange(2**31))


def test_sigkill_at_random_moments_then_gc_leaves_nothing(
    faults_state: Path, tmp_path: Path, check_clean: Callable[[set[str]], list[str]]
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    moments = [rng.uniform(0.2, SPAN) for _ in range(KILLS)]
    # Printed (pytest shows it with -s and with every failure) so a failure can be replayed:
    # ISOBENCH_FAULTS_SEED=<seed>.
    print(f"fault seed {seed}: kill moments {', '.join(f'{m:.1f}' for m in moments)} s over {ALL_DRIVERS}")
    failures = []
    for i, moment in enumerate(moments):
        out = tmp_path / f"kill{i}"
        out.mkdir()
        log = (tmp_path / f"kill{i}.log").open("w")
        proc = subprocess.Popen(
            run_args(faults_state, out, seed=seed + i), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            proc.wait(timeout=moment)
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)  # the runner only, as a crash would: not its group
            proc.wait()
            killed = True
        log.close()
        runs = run_ids_in(faults_state, out)
        t0 = time.monotonic()
        gc = gc_state(faults_state)
        took = time.monotonic() - t0
        left = check_clean(runs)
        what = f"kill {i} at {moment:.1f}s ({'killed' if killed else f'exited {proc.returncode} first'})"
        print(f"{what}: runs {sorted(runs)}, gc {took:.1f}s exit {gc.returncode}, {len(left)} left")
        if gc.returncode != 0 or left:
            failures.append(
                f"{what}: gc exit {gc.returncode}: {gc.stdout[-800:]} {gc.stderr[-800:]}; left {left}"
            )
        if not killed:
            assert proc.returncode == 0, (tmp_path / f"kill{i}.log").read_text()[-2000:]
    assert not failures, f"seed {seed} (rerun with ISOBENCH_FAULTS_SEED={seed}):\n" + "\n".join(failures)
