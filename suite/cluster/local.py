"""``--cluster local:N``: a scheduler on 127.0.0.1 and N ``isobench worker`` processes on this host.

Each worker is a real ``isobench worker`` (the same code a fleet host runs) with its own identity
(``local-<i>@<hostname>``) and its own state dir, so its runs, baseline and leftovers stay its own;
the guest image is shared through a symlink. The workers share this machine's CPUs, so ``local:N``
is for trying a fleet run and testing it, not for faster or independent figures: every worker
takes one cell at a time, and N of them measure side by side, each disturbing the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import UsageError
from isobench.images import images_dir

log = logging.getLogger(__name__)

__all__ = ["LocalFleet", "local_cluster", "parse_local"]

#: The most local workers: each is a process that measures; more than a few on one host is noise.
MAX_LOCAL = 8


def parse_local(spec: str) -> int | None:
    """N of ``local:N``; None when ``spec`` is a scheduler address."""
    if not spec.startswith("local:"):
        return None
    n = spec.removeprefix("local:")
    if not n.isdigit() or not 1 <= int(n) <= MAX_LOCAL:
        raise UsageError(f"--cluster {spec}: N of local:N must be 1 to {MAX_LOCAL}")
    return int(n)


@dataclass
class LocalFleet:
    address: str
    workers: list[subprocess.Popen[bytes]]
    state_dirs: list[Path]


def worker_state_dir(state_dir: Path, index: int) -> Path:
    """``<state_dir>/local/<i>``, with the shared image linked in (built once per host)."""
    own = state_dir / "local" / str(index)
    own.mkdir(parents=True, exist_ok=True)
    link, shared = own / "images", images_dir(state_dir)
    if not link.is_symlink() and not link.exists():
        link.symlink_to(shared.resolve())
    return own


@contextlib.contextmanager
def local_cluster(
    n: int, state_dir: Path, drivers: Sequence[str] | None = None, *, timeout: float = 300.0
) -> Iterator[LocalFleet]:
    """Start the scheduler and ``n`` workers (offering only ``drivers``, when given: a worker probes
    what it offers, and a guest driver's probe boots a guest); stop them (SIGTERM, then SIGKILL) on
    every path."""
    from distributed import Client, LocalCluster

    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=0,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as cluster:
        address = str(cluster.scheduler_address)
        dirs = [worker_state_dir(state_dir, i) for i in range(n)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, d in enumerate(dirs):
                cmd = [sys.executable, "-m", "isobench.cli", "worker", "--scheduler", address]
                cmd += ["--local-index", str(i), "--state-dir", str(d)]
                cmd += ["--drivers", ",".join(drivers)] if drivers else []
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
            with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
                _wait_for_workers(client, procs, n, timeout)
            yield LocalFleet(address, procs, dirs)
        finally:
            _stop(procs)


def _wait_for_workers(client: object, procs: list[subprocess.Popen[bytes]], n: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = client.sync(client.scheduler.identity, n_workers=-1)  # type: ignore[attr-defined]
        if len(info["workers"]) >= n:
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise UsageError(
                f"a local isobench worker exited with status {dead[0].returncode} before joining"
            )
        time.sleep(0.2)
    raise UsageError(f"{n} local isobench workers did not join within {timeout:.0f} s")


def _stop(procs: list[subprocess.Popen[bytes]], grace: float = 60.0) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("local worker %d did not stop in %.0f s; killing it (run `isobench gc`)", p.pid, grace)
            p.kill()
            p.wait()
