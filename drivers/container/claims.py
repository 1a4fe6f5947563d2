"""How a container claims its names on the host: the write-ahead record, made exclusively.

A container's names (cgroup, directory, veth) are claimed by creating its live record exclusively
(a hard link to its written copy, which fails when the name is taken), so two runner processes of
one run can never end up sharing one. Write-ahead: the record names every resource before the
first one exists, so a runner killed at any moment leaves gc a full list.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path

from isobench.drivers.base import DriverContext
from isobench.drivers.container import names as naming
from isobench.drivers.container.config import ContainerConfig
from isobench.drivers.container.resources import Resources
from isobench.drivers.container.state import Record, current_owner, planned_cgroup_paths, process_start_time
from isobench.errors import SandboxError
from isobench.hostsys.cgroups import host_layout

__all__ = ["CLAIM_TRIES", "Claims", "next_names"]

_SEQ = itertools.count()
#: Names tried before a container gives up (each taken one was claimed by another runner process).
CLAIM_TRIES = 10_000


def next_names(run_id: str, sandbox: str) -> naming.ContainerNames:
    """Names this process has not tried before (another runner process may have)."""
    return naming.names_for(run_id, sandbox, next(_SEQ))


class Claims:
    """Records of one driver's containers: the runner's identity and the host's cgroup mount table
    are read once (per process, per driver) and named in every record."""

    def __init__(self, ctx: DriverContext, cgroup_parent: str) -> None:
        self._ctx = ctx
        self._cgroup_parent = cgroup_parent
        self._hierarchies: tuple[Path, ...] | None = None
        self._owner: tuple[int, str] | None = None

    def record(self, config: ContainerConfig, names: naming.ContainerNames, base: Path) -> Record:
        """What gc needs to find every resource of the container, before any exists."""
        if self._owner is None or self._owner[0] != os.getpid():  # read once per process
            self._owner = current_owner(self._ctx.host.proc)
        owner_pid, owner_start = self._owner
        cgroup_paths: tuple[str, ...] = ()
        if config.limits is not None:
            if self._hierarchies is None:  # the host's mount table, read once per driver
                self._hierarchies = tuple(host_layout(self._ctx.host).hierarchies())
            cgroup_paths = planned_cgroup_paths(
                self._ctx.host, self._cgroup_parent, names.ident, self._hierarchies
            )
        return Record(
            ident=names.ident,
            run_id=self._ctx.run_id,
            owner_pid=owner_pid,
            owner_start=owner_start,
            dir=str(base),
            cgroup=names.ident if config.limits is not None else None,
            cgroup_paths=cgroup_paths,
            veth=names.veth_host if config.network else None,
        )

    def claim(
        self, sandbox: str, config: ContainerConfig, *, make_dir: bool
    ) -> tuple[naming.ContainerNames, Path, Record, Path]:
        """Unused names, claimed; then the container's directory, when it has one (a cold run
        whose upper layer is in memory has none: no journal update of the host's disk to make and
        remove it)."""
        if make_dir:
            self._ctx.work_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(CLAIM_TRIES):
            names = next_names(self._ctx.run_id, sandbox)
            claimed = self.claim_names(names, config, make_dir=make_dir)
            if claimed is not None:
                return names, *claimed
        raise SandboxError(f"no free container name for {sandbox} in {self._ctx.work_dir}; run gc")

    def claim_names(
        self, names: naming.ContainerNames, config: ContainerConfig, *, make_dir: bool
    ) -> tuple[Path, Record, Path] | None:
        """Claim ``names``: (directory, record, record path), or None if they are taken."""
        base = self._ctx.work_dir / names.ident
        record = self.record(config, names, base)
        try:
            path = record.write(self._ctx.state_dir, exclusive=True)
        except FileExistsError:
            return None
        if not make_dir:
            return base, record, path
        try:
            # 0700: no other host user reaches the upper layer (a set-uid file a container root
            # wrote there would otherwise be theirs to run) or the work dir.
            base.mkdir(mode=0o700)
        except FileExistsError:  # left by a dead runner of this run; gc's, not ours
            path.unlink()
            return None
        except BaseException:
            path.unlink()
            raise
        return base, record, path

    def note(self, res: Resources, *, helper_pid: int | None = None, init_pid: int | None = None) -> None:
        """Add a process that now exists to the container's record (with its start time, so gc
        never kills a recycled pid)."""
        if res.record is None:
            return
        proc = self._ctx.host.proc
        if helper_pid is not None:
            res.record = replace(
                res.record, helper_pid=helper_pid, helper_start=process_start_time(helper_pid, proc)
            )
        if init_pid is not None:
            res.record = replace(res.record, init_pid=init_pid, init_start=process_start_time(init_pid, proc))
        res.record.write(self._ctx.state_dir)
