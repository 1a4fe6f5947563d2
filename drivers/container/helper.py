"""Building and locating the native helper (``helper/isobench_ctr.c``).

It is compiled on first use into ``<state_dir>/bin/isobench-ctr-<hash>``, keyed by the source and
flags, so an edited source never runs a stale binary. Setup can pre-build it by calling
:func:`ensure_helper` with the state dir.

No helper process runs that file, though: the driver copies it once into a sealed memfd
(:func:`seal_helper`) and executes every helper from that, so a container's pid 1 never has the
host binary as its ``/proc/1/exe`` and cannot write to what it finds there (CVE-2019-5736; runc
re-executes itself from a sealed memfd for the same reason, but copies the binary on every start).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import DriverUnavailable

log = logging.getLogger(__name__)

__all__ = ["ARGV0", "SOURCE", "HelperImage", "build_command", "ensure_helper", "helper_key", "seal_helper"]

SOURCE = Path(__file__).with_name("helper") / "isobench_ctr.c"
_CFLAGS = ("-O2", "-Wall", "-Wno-format-truncation")
#: argv[0] of every helper process (never the host path of the binary).
ARGV0 = "isobench-ctr"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


@dataclass(frozen=True)
class HelperImage:
    """A built helper (``path``) and its sealed in-memory copy (``fd``, what processes run)."""

    path: Path
    fd: int

    @property
    def executable(self) -> str:
        # Resolved in the spawned child, which inherits ``fd`` through pass_fds; the helper closes
        # it first thing, so the container never holds it.
        return f"/proc/self/fd/{self.fd}"


def seal_helper(path: Path) -> HelperImage:
    """Copy the helper into a memfd that nobody can write, grow, shrink or unseal."""
    fd = os.memfd_create(ARGV0, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = path.read_bytes()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return HelperImage(path=path, fd=fd)


def build_command(output: Path, *, static: bool = True) -> list[str]:
    # Static: no dynamic loader work on every container start (about half a millisecond).
    return [
        "gcc",
        *_CFLAGS,
        *(["-static"] if static else []),
        "-o",
        str(output),
        str(SOURCE),
    ]


def helper_key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(" ".join(_CFLAGS).encode())
    return digest.hexdigest()[:16]


def ensure_helper(state_dir: Path) -> Path:
    """Path of a built helper for the current source, compiling it if needed."""
    bin_dir = state_dir / "bin"
    target = bin_dir / f"isobench-ctr-{helper_key()}"
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        raise DriverUnavailable(
            "container helper needs gcc to build; install gcc (and the static libc, libc6-dev)"
        )
    try:
        bin_dir.mkdir(parents=True, exist_ok=True)
        return _build(bin_dir, target)
    except OSError as err:
        raise DriverUnavailable(f"cannot build the container helper in {bin_dir}: {err}") from err


def _build(bin_dir: Path, target: Path) -> Path:
    with open(bin_dir / ".isobench-ctr.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while we waited
            return target
        tmp = bin_dir / f".{target.name}.{os.getpid()}.tmp"
        errors = ""
        for static in (True, False):
            proc = subprocess.run(
                build_command(tmp, static=static), capture_output=True, text=True, check=False
            )
            if proc.returncode == 0:
                os.replace(tmp, target)
                log.info("built container helper %s (static=%s)", target, static)
                _prune(bin_dir, keep=target)
                return target
            errors = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "gcc failed"
        tmp.unlink(missing_ok=True)
        raise DriverUnavailable(
            f"cannot build the container helper ({errors}); install gcc (and the static libc, libc6-dev)"
        )


#: A build of other sources is kept this long after its last use: another checkout or an older
#: installed version on the same host may still be starting containers from it.
PRUNE_AFTER_S = 7 * 24 * 3600


def _prune(bin_dir: Path, keep: Path, *, now: float | None = None) -> None:
    """Remove builds of other sources not used for :data:`PRUNE_AFTER_S` (their access time, which
    every start refreshes, or their mtime where atime is not kept). A running copy keeps its inode
    when unlinked; a checkout that wants a pruned build rebuilds it."""
    now = time.time() if now is None else now
    for old in bin_dir.glob("isobench-ctr-*"):
        if old == keep:
            continue
        try:
            st = old.stat()
        except FileNotFoundError:
            continue
        if now - max(st.st_atime, st.st_mtime) > PRUNE_AFTER_S:
            old.unlink(missing_ok=True)
