"""Compile the profile once per (profile digest, capabilities, relaxations, kernel) and keep the BPF
under the state dir, so a container start only reads a few kilobytes (the helper loads them with
``seccomp(SECCOMP_SET_MODE_FILTER)``): no profile parsing and no libseccomp at start."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from isobench.drivers.container.seccomp import bpf
from isobench.drivers.container.seccomp.profile import DATA_DIR, kernel_version, resolve

__all__ = ["filter_key", "filter_path", "profile_digest"]

_INPUTS = ("default.json", "isobench.json", "syscalls.json", "profile.py", "bpf.py")


@cache
def profile_digest() -> str:
    """Of the data and of the code that turns it into BPF: an edit to either recompiles."""
    digest = hashlib.sha256()
    for name in _INPUTS:
        digest.update(name.encode() + b"\0" + (DATA_DIR / name).read_bytes())
    return digest.hexdigest()


def filter_key(caps: Iterable[str], relax: Iterable[str], kernel: tuple[int, int]) -> str:
    parts = [profile_digest(), ",".join(sorted(caps)), ",".join(sorted(relax)), f"{kernel[0]}.{kernel[1]}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def filter_path(state_dir: Path, caps: Iterable[str], relax: Iterable[str] = ()) -> Path:
    """The compiled filter for a container holding ``caps`` with the named relaxations."""
    caps, relax = tuple(caps), tuple(sorted(set(relax)))
    kernel = kernel_version()
    target = state_dir / "container" / "seccomp" / f"{filter_key(caps, relax, kernel)}.bpf"
    if target.exists():
        return target
    program = bpf.compile_filter(resolve(caps, relax=relax, kernel=kernel))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(program)
    os.replace(tmp, target)  # atomic: a concurrent start reads the old name or the whole file
    return target
