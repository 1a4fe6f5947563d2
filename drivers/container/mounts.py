"""Host mount table lookups for gc: containers mount only inside their own mount namespaces."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from pathlib import Path

from isobench.errors import SandboxError

__all__ = ["find_mounts", "unmount"]

_MNT_DETACH = 2


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def find_mounts(match: Callable[[str], bool], mountinfo: str | None = None) -> list[str]:
    """Mount points one of whose path components ``match`` accepts, deepest first."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if any(match(part) for part in Path(point).parts):
                found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def unmount(point: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot unmount {point}: {os.strerror(err)}")
