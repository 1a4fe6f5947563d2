"""Small C programs built on this host with gcc: the container runtime's helper, the escape battery's
probe, the tests' seccomp probe. A program may prefer musl (``musl-gcc``) where it is installed.

A program is compiled on first use into ``<state_dir>/bin/<name>-<key>``, the key a digest of its
source and flags, so an edited source never runs a stale binary. The build is written to a temporary
name and renamed into place under a lock, so concurrent runs build it once and nobody runs half a
file. A fresh build prunes builds of other sources that were not used for :data:`PRUNE_AFTER_S`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import IsobenchError

log = logging.getLogger(__name__)

__all__ = ["PRUNE_AFTER_S", "CProgram", "ensure_built", "prune"]

#: A build of other sources is kept this long after its last use: another checkout or an older
#: installed version on the same host may still be running it.
PRUNE_AFTER_S = 7 * 24 * 3600
#: A compile of these single-file programs takes about a second; one that hangs is a broken gcc.
_GCC_TIMEOUT_S = 120
_INSTALL_HINT = "install gcc (and the static libc, libc6-dev)"
_MUSL = "musl-gcc"


@dataclass(frozen=True)
class CProgram:
    """One C source file and how to build it."""

    #: The builds' file-name prefix in the bin dir (``<name>-<key>``), also its lock's name.
    name: str
    source: Path
    cflags: tuple[str, ...]
    #: What error messages call it ("the container helper").
    what: str
    #: What a failed build means to its user (a driver unavailable, a workload that cannot run).
    error: type[IsobenchError]
    #: True: static or not at all (the file runs inside other root filesystems). False: static
    #: when the static libc is installed (no dynamic loader work on every start), else dynamic.
    static_only: bool = True
    #: Build it static with musl (``musl-gcc``) when that is installed, else as above with gcc. A
    #: static glibc program spends ~0.3 ms of CPU in every exec probing the CPU (a few dozen
    #: ``cpuid``, each a trap to the hypervisor in a VM like this host); musl probes nothing.
    prefer_musl: bool = False

    def key(self) -> str:
        """A digest of the source, the compiler and the flags that change the binary's behaviour."""
        digest = hashlib.sha256(self.source.read_bytes())
        musl = ("musl",) if self._musl() else ()
        digest.update(" ".join((*musl, *self._flags(static=self.static_only))).encode())
        return digest.hexdigest()[:16]

    def command(self, output: Path, *, static: bool = True, musl: bool = False) -> list[str]:
        if musl:
            # musl-gcc sees only musl's headers; the kernel's (linux/, asm/) come after them.
            kernel = (
                "-idirafter",
                "/usr/include",
                "-idirafter",
                f"/usr/include/{platform.machine()}-linux-gnu",
            )
            return [_MUSL, *self._flags(static=True), *kernel, "-o", str(output), str(self.source)]
        return ["gcc", *self._flags(static=static), "-o", str(output), str(self.source)]

    def builds(self) -> list[tuple[bool, bool]]:
        """(musl, static) in the order to try them."""
        musl = [(True, True)] if self._musl() else []
        return [*musl, *((False, static) for static in ((True,) if self.static_only else (True, False)))]

    def _musl(self) -> bool:
        return self.prefer_musl and shutil.which(_MUSL) is not None

    def _flags(self, *, static: bool) -> tuple[str, ...]:
        return (*self.cflags, "-static") if static else self.cflags


def ensure_built(program: CProgram, state_dir: Path) -> Path:
    """Path of a build of ``program``'s current source, compiling it if needed."""
    bin_dir = state_dir / "bin"
    target = bin_dir / f"{program.name}-{program.key()}"
    if target.exists():
        return target
    if shutil.which("gcc") is None:
        raise program.error(f"{program.what} needs gcc to build; {_INSTALL_HINT}")
    try:
        bin_dir.mkdir(parents=True, exist_ok=True)
        with open(bin_dir / f".{program.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():  # else another process built it while we waited
                _build(program, bin_dir, target)
    except OSError as err:
        raise program.error(f"cannot build {program.what} in {bin_dir}: {err}") from err
    return target


def _build(program: CProgram, bin_dir: Path, target: Path) -> None:
    tmp = bin_dir / f".{target.name}.{os.getpid()}.tmp"
    error = "gcc failed"
    for musl, static in program.builds():
        try:
            proc = subprocess.run(
                program.command(tmp, static=static, musl=musl),
                capture_output=True,
                text=True,
                check=False,
                timeout=_GCC_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            error = f"gcc took more than {_GCC_TIMEOUT_S} s"
            continue
        if proc.returncode == 0:
            os.replace(tmp, target)
            log.info("built %s: %s (static=%s, musl=%s)", program.what, target, static, musl)
            prune(bin_dir, program.name, keep=target)
            return
        stderr = proc.stderr.strip()
        error = stderr.splitlines()[-1] if stderr else "gcc failed"
        if musl:
            log.warning("cannot build %s with musl (%s); building it with gcc", program.what, error)
    tmp.unlink(missing_ok=True)
    raise program.error(f"cannot build {program.what} ({error}); {_INSTALL_HINT}")


def prune(bin_dir: Path, name: str, keep: Path, *, now: float | None = None) -> None:
    """Remove builds of ``name`` other than ``keep`` not used for :data:`PRUNE_AFTER_S` (their access
    time, which every start refreshes, or their mtime where atime is not kept). A running copy keeps
    its inode when unlinked; a checkout that wants a pruned build rebuilds it."""
    now = time.time() if now is None else now
    for old in bin_dir.glob(f"{name}-*"):
        if old == keep:
            continue
        try:
            st = old.stat()
        except FileNotFoundError:
            continue
        if now - max(st.st_atime, st.st_mtime) > PRUNE_AFTER_S:
            old.unlink(missing_ok=True)
