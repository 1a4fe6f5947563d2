"""The container driver's gc: of one dead container from its record (every step runs, and what is
still there afterwards is said, one line each, with the record kept so a later gc can try again),
then of whatever else a dead run left that matches by name."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from isobench.drivers.base import DriverContext
from isobench.drivers.container import names as naming
from isobench.drivers.container.network import own_link
from isobench.drivers.container.state import Record, load_records, owner_alive, record_processes
from isobench.errors import GcIncomplete, IsobenchError, SandboxError
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups.common import CgroupManager, remove_matching, remove_trees
from isobench.hostsys.links import Links
from isobench.mounts import find_mounts, umount
from isobench.procs import running

log = logging.getLogger(__name__)

__all__ = ["collect", "collect_runs", "living"]

#: How long killed processes get to exit (an orphan is reaped by pid 1, late on some hosts).
_EXIT_GRACE_S = 10.0


def living(pids: list[int], proc: Path) -> list[int]:
    """Those of ``pids`` still running (a zombie has exited: it holds no resources)."""
    return [pid for pid in pids if running(pid, proc)]


def _kill(pids: list[int], proc: Path) -> list[int]:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + _EXIT_GRACE_S
    while living(pids, proc) and time.monotonic() < end:
        time.sleep(0.01)
    return living(pids, proc)


def collect(
    rec: Record,
    path: Path,
    host: HostProbe,
    links: Links,
    legacy_cgroup: Callable[[str], list[Path]],
) -> tuple[list[str], list[str]]:
    """Remove what ``rec`` names: its processes, cgroup (every hierarchy), veth, mounts and
    directory; then the record, if nothing is left. Returns (removed, leftovers)."""
    removed: list[str] = []
    errors: list[str] = []

    def step(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (OSError, IsobenchError) as err:
            errors.append(f"{what}: {err}")

    pids = record_processes(rec, host.proc)
    left_pids = _kill(pids, host.proc) if pids else []
    removed += [f"process {pid}" for pid in pids if pid not in left_pids]
    cgroups = [Path(p) for p in rec.cgroup_paths]
    if not cgroups and rec.cgroup:  # a version 1 record: the name only
        cgroups = legacy_cgroup(rec.cgroup)
    existing = [p for p in cgroups if p.is_dir()]
    if existing:
        step("cgroup", lambda: remove_trees(existing, os.rmdir))
    removed += [f"cgroup {p}" for p in existing if not p.is_dir()]
    veth = rec.veth
    if veth and (host.sys_class_net / veth).exists():
        step("veth", lambda: links.delete(veth))
        if not (host.sys_class_net / veth).exists():
            removed.append(f"veth {veth}")
    base = Path(rec.dir)
    for point in find_mounts(lambda _: True, host.mountinfo()):
        if point == rec.dir or point.startswith(rec.dir.rstrip("/") + "/"):
            step(f"mount {point}", lambda p=point: umount(Path(p)))  # type: ignore[misc]
    if base.exists():
        step("directory", lambda: shutil.rmtree(base))
        if not base.exists():
            removed.append(f"dir {base}")
    leftovers = [f"{rec.ident}: process {pid} still running" for pid in living(left_pids, host.proc)]
    leftovers += [f"{rec.ident}: cgroup {p}" for p in cgroups if p.is_dir()]
    if veth and (host.sys_class_net / veth).exists():
        leftovers.append(f"{rec.ident}: veth {veth}")
    if base.exists():
        leftovers.append(f"{rec.ident}: directory {base}")
    if leftovers:
        leftovers += [f"{rec.ident}: {e}" for e in errors]
        leftovers.append(f"{rec.ident}: record kept at {path}")
    else:
        path.unlink(missing_ok=True)
    return removed, leftovers


def collect_runs(
    ctx: DriverContext,
    links: Links,
    cgroups: Callable[[], CgroupManager],
    legacy_cgroup: Callable[[str], list[Path]],
    run_id: str | None,
) -> list[str]:
    """The container driver's gc: containers of dead runners (of ``run_id``, or of every run) by
    their records first (:func:`collect`), then anything still matching by name: cgroups, mounts,
    veths and directories, except a live run's (``ctx.sparing``). Raises :class:`GcIncomplete`
    naming what is still there (its records are kept)."""
    removed: list[str] = []
    leftovers: list[str] = []
    live_idents: set[str] = set()
    live_veths: set[str] = set()
    for path, rec in load_records(ctx.state_dir):
        if run_id is not None and rec.run_id != run_id:
            continue
        if owner_alive(rec, ctx.host.proc):
            live_idents.add(rec.ident)
            if rec.veth:
                live_veths.add(rec.veth)
            continue
        gone, left = collect(rec, path, ctx.host, links, legacy_cgroup)
        removed += [rec.ident, *gone] if not left else gone
        leftovers += left

    sparing = ctx.sparing

    def stray(name: str) -> bool:
        return (
            naming.matches(name, run_id)
            and name not in live_idents
            and not sparing.spares(f"container {name}", lambda live: naming.matches(name, live))
        )

    def stray_link(name: str) -> bool:
        return (
            own_link(name)
            and name not in live_veths
            and not sparing.spares(f"veth {name}", lambda live: name.startswith(naming.veth_run_prefix(live)))
        )

    try:
        manager: CgroupManager | None = cgroups()
    except IsobenchError:
        manager = None
    if manager is not None:
        gone, left = remove_matching(manager, stray)
        removed += gone
        leftovers += left
    # Container mounts live in private mount namespaces; any on the host is a bug's leftover.
    for point in find_mounts(stray, ctx.host.mountinfo()):
        umount(Path(point))
        removed.append(f"mount {point}")
    try:
        gone = links.gc(naming.veth_run_prefix(run_id), lambda lk: stray_link(lk.name))
    except SandboxError as err:
        log.warning("container gc: cannot list links: %s", err)
        gone = []
    removed += [f"veth {link}" for link in gone]
    if ctx.work_dir.is_dir():
        for d in ctx.work_dir.iterdir():
            if d.is_dir() and stray(d.name):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
    if leftovers:
        raise GcIncomplete(removed, leftovers)
    return removed
