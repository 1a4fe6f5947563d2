"""The cgroup parent of each run's containers (``isobench-docker-<run>``, see names.py): where
Docker's cgroupfs driver puts it, and its removal at close and in gc, sparing live runs in a sweep."""

from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path

from isobench.drivers.docker.names import cgroup_parent
from isobench.errors import SandboxError
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups import detect_layout
from isobench.hostsys.cgroups.common import cgroup_tree, find_anywhere, remove_trees
from isobench.liveruns import Sparing

__all__ = ["remove_cgroup_parent", "removed_cgroups"]


def _cgroup_parents(host: HostProbe, run_id: str | None) -> list[Path]:
    """A run's cgroup parent (every run's, when ``run_id`` is None) in every hierarchy. Docker's
    cgroupfs driver makes a relative parent under the daemon's own cgroup in each hierarchy: the
    root, or wherever the runner that started the daemon sat (here: a nested memory cgroup)."""
    try:
        layout = detect_layout(host.mountinfo())
    except SandboxError:
        return []
    prefix = cgroup_parent(run_id or "")
    return find_anywhere(
        [host.path(h) for h in layout.hierarchies()],
        lambda n: n == prefix or (run_id is None and n.startswith(prefix)),
    )


def removed_cgroups(
    host: HostProbe, run_id: str | None, sparing: Sparing | None = None
) -> tuple[list[str], list[str]]:
    """Remove the cgroup parents of ``run_id`` (of every run but the ``sparing`` ones: None),
    killing what is left in them first; which went, and which could not be removed."""
    removed, errors = [], []
    for parent in _cgroup_parents(host, run_id):
        if sparing is not None:
            if sparing.spares(f"cgroup {parent}", partial(_parent_of, parent.name)):
                continue
            if run_id is None and _has_processes(parent):
                # Its containers run under a daemon the sweep did not stop (the slots of dead runs
                # were cleared first, their containers with them): someone's, not a leftover.
                sparing.keep(f"cgroup {parent}", "its containers run, under a daemon of no dead run")
                continue
        try:
            remove_trees([parent], os.rmdir)
            removed.append(f"cgroup {parent}")
        except SandboxError as err:
            errors.append(str(err))
    return removed, errors


def _parent_of(name: str, run_id: str) -> bool:
    return name == cgroup_parent(run_id)


def _has_processes(top: Path) -> bool:
    for node in cgroup_tree(top):
        with contextlib.suppress(OSError):
            if (node / "cgroup.procs").read_text().strip():
                return True
    return False


def remove_cgroup_parent(host: HostProbe, run_id: str) -> list[str]:
    """The run's cgroup parent (Docker leaves it when its last container goes): what is left."""
    return removed_cgroups(host, run_id)[1]
