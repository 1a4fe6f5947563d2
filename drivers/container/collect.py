"""gc of one dead container from its record: every step runs, and what is still there afterwards
is said, one line each, with the record kept so a later gc can try again."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from isobench.drivers.container.state import Record, record_processes
from isobench.errors import IsobenchError
from isobench.hostsys import HostProbe
from isobench.hostsys.cgroups.common import remove_trees
from isobench.hostsys.links import Links
from isobench.mounts import find_mounts, umount
from isobench.procs import running

__all__ = ["collect", "living"]

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
