"""Building and locating the native helper (``helper/isobench_ctr.c``).

It is compiled on first use into ``<state_dir>/bin/isobench-ctr-<hash>`` (:mod:`isobench.hostsys.cbuild`:
keyed by the source and flags, so an edited source never runs a stale binary; builds of other
sources pruned after a week unused). Setup can pre-build it by calling :func:`ensure_helper` with
the state dir.

No helper process runs that file, though: the driver copies it once into a sealed memfd
(:func:`seal_helper`) and executes every helper from that, so a container's pid 1 never has the
host binary as its ``/proc/1/exe`` and cannot write to what it finds there (CVE-2019-5736; runc
re-executes itself from a sealed memfd for the same reason, but copies the binary on every start).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import DriverUnavailable
from isobench.hostsys.cbuild import CProgram, ensure_built

__all__ = ["ARGV0", "HELPER", "SOURCE", "HelperImage", "ensure_helper", "helper_key", "seal_helper"]

SOURCE = Path(__file__).with_name("helper") / "isobench_ctr.c"
#: Static with musl where musl-gcc is installed (setup installs it): glibc's start-up probe of the CPU
#: cost 0.33 ms of CPU per exec here (0.51 against 0.18 ms for the helper's usage error, medians of
#: 300 at load 2.5), once per container start and per exec. Else static with glibc (no dynamic
#: loader work on every container start, about half a millisecond), else dynamic.
HELPER = CProgram(
    name="isobench-ctr",
    source=SOURCE,
    cflags=("-O2", "-Wall", "-Wno-format-truncation"),
    what="the container helper",
    error=DriverUnavailable,
    static_only=False,
    prefer_musl=True,
)
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


def helper_key() -> str:
    return HELPER.key()


def ensure_helper(state_dir: Path) -> Path:
    """Path of a built helper for the current source, compiling it if needed."""
    return ensure_built(HELPER, state_dir)
