"""libvirt's cgroups of a run's guests, once libvirt itself lost track of them.

libvirtd makes one cgroup per guest (``machine/qemu-<id>-<name>.libvirt-qemu``, in every v1
controller, or once under v2) and removes it after the guest's qemu exited. A libvirtd killed in
between leaves them behind, empty, and a restarted libvirtd no longer knows them: the fault suite's
real libvirtd kill found those of a guest whose teardown was under way. gc removes such a cgroup
of a dead run's guest; one with tasks in it is a guest that still runs, and a leftover.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["guest_cgroups", "remove_guest_cgroups"]

_GUEST = re.compile(r"^qemu-\d+-(.*)\.libvirt-qemu$")


def guest_cgroups(cgroup_root: Path, name_prefix: str) -> list[Path]:
    """libvirt's cgroups of guests whose names start with ``name_prefix``: under ``machine`` of
    every v1 controller, or of the v2 root."""
    found = []
    for machine in sorted([cgroup_root / "machine", *cgroup_root.glob("*/machine")]):
        try:
            entries = sorted(machine.iterdir())
        except OSError:
            continue
        for d in entries:
            m = _GUEST.match(d.name)
            # libvirt cuts the whole name to 64 characters: a run's prefix (28) always survives.
            if m and m.group(1).startswith(name_prefix) and d.is_dir():
                found.append(d)
    return found


def remove_guest_cgroups(cgroup_root: Path, name_prefix: str) -> tuple[list[str], list[str]]:
    """Remove the cgroups of guests whose names start with ``name_prefix`` (a dead run's:
    ``isobench-<run_id>-``), deepest first; (removed, left). One that still has tasks stays, a
    leftover."""
    removed: list[str] = []
    left: list[str] = []
    for cg in guest_cgroups(cgroup_root, name_prefix):
        try:
            for top, dirs, _ in os.walk(cg, topdown=False):
                for d in dirs:
                    os.rmdir(Path(top) / d)
            os.rmdir(cg)
        except FileNotFoundError:
            continue
        except OSError as err:
            left.append(f"cgroup {cg}: {err.strerror} (a guest's qemu still runs in it)")
            continue
        removed.append(f"cgroup {cg}")
    return removed, left
