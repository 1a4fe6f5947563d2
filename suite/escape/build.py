"""Building the battery's probe (``probe.c``): static, compiled on the host on first use.

Cached as ``<state_dir>/bin/isobench-escape-<hash>``, keyed by the source and flags (as the
container helper is), so an edited source never runs a stale binary. Static, because the same
file runs in every sandbox: a container's image, a guest, the host.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from isobench.errors import WorkloadError

log = logging.getLogger(__name__)

__all__ = ["SOURCE", "ensure_probe", "probe_key"]

SOURCE = Path(__file__).with_name("probe.c")
_CFLAGS = ("-O2", "-Wall", "-static")


def probe_key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(_CFLAGS).encode())
    return digest.hexdigest()[:16]


def ensure_probe(state_dir: Path) -> Path:
    """Path of a built probe for the current source, compiling it if needed."""
    bin_dir = state_dir / "bin"
    target = bin_dir / f"isobench-escape-{probe_key()}"
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        raise WorkloadError("the escape probe needs gcc (and the static glibc) to build; install gcc")
    bin_dir.mkdir(parents=True, exist_ok=True)
    with open(bin_dir / ".isobench-escape.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while we waited
            return target
        tmp = bin_dir / f".{target.name}.{os.getpid()}.tmp"
        proc = subprocess.run(
            ["gcc", *_CFLAGS, "-o", str(tmp), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "gcc failed"
            raise WorkloadError(f"cannot build the escape probe: {last}")
        os.replace(tmp, target)
        log.info("built escape probe %s", target)
        for old in bin_dir.glob("isobench-escape-*"):
            if old != target:
                old.unlink(missing_ok=True)
    return target
