"""What a set of isobench runs left on this host, scoped to those runs.

Other isobench runs (other state dirs, other people's tests) may be live on the same host at the
same time, so nothing here looks for "anything named isobench": every check is tied to the run
ids given, to the private state dir they used, or to a docker slot those runs used (their daemon
records name it; else any slot whose data root is in that state dir) which no runner holds now:
a slot held only by its own dockerd, containerd or shims (say, orphans of a killed daemon that
inherited its lock) is checked, as gc must have cleared it. Each leftover is one line saying what
and where.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.container import names as ctr_names
from isobench.drivers.docker.daemon import read_record, slot_holders
from isobench.drivers.docker.names import DEFAULT_RUNTIME_DIR, Slot, cgroup_parent, daemon_holds
from isobench.drivers.qemu.network import run_prefix as qemu_link_prefix
from isobench.mounts import parse_mountinfo
from isobench.runstate import dead_runs

__all__ = ["Scope", "docker_slots_of", "leftovers", "run_ids_in"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The processes the drivers start (the brief's ``pgrep -af 'dockerd|qemu-system|isobench-ctr|runc|bwrap'``).
PROCESS_RE = re.compile(rb"dockerd|containerd|qemu-system|isobench-ctr|runc|bwrap")


@dataclass(frozen=True)
class Scope:
    """The runs to check: their ids and the private state dir they ran with."""

    state_dir: Path
    run_ids: frozenset[str]
    docker_runtime_dir: Path = DEFAULT_RUNTIME_DIR
    #: The docker slots the runs used (read from their records before gc removed them); None:
    #: every slot whose data root is in the state dir.
    docker_slots: frozenset[int] | None = None
    #: The libvirt the runs' guests were defined on (the libvirtd test's is a private one).
    libvirt_uri: str = "qemu:///system"

    def names(self) -> list[str]:
        """Strings any resource of these runs carries in its name (cgroups, domains, dirs)."""
        return sorted(self.run_ids)

    def link_prefixes(self) -> list[str]:
        out = []
        for rid in self.run_ids:
            out += [
                ctr_names.veth_run_prefix(rid),
                qemu_link_prefix(rid),
                "isb" + hashlib.sha256(rid.encode()).hexdigest()[:8],  # the vm driver's bridge
            ]
        return out

    def free_docker_slots(self) -> list[Slot]:
        """The runs' slots that no runner holds now (a live run of this state dir, e.g. a
        concurrent test's, or another state dir's run on the same slot holds it)."""
        if self.docker_slots is not None:
            indices = sorted(self.docker_slots)
        else:
            base = self.state_dir / "docker"
            dirs = sorted(base.glob("slot-*")) if base.is_dir() else []
            indices = [int(i) for d in dirs if (i := d.name.removeprefix("slot-")).isdigit()]
        slots = [Slot(i, self.docker_runtime_dir, self.state_dir) for i in indices]
        return [s for s in slots if not _runner_holds(s)]

    def free_slot_roots(self) -> list[Path]:
        """Exec and data roots of the free slots: a daemon, mount or shim there outlived its run."""
        return [r for s in self.free_docker_slots() for r in (s.exec_root, s.home)]


def _family(slot: Slot, pid: int) -> bool:
    """Whether ``pid`` is the slot's own dockerd, containerd or shim (its command line says so)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return PROCESS_RE.search(argv) is not None and (str(slot.exec_root) + "/").encode() in argv


def _runner_holds(slot: Slot) -> bool:
    """Some process other than the slot's own daemon family holds it: a runner (or a test)."""
    return any(not _family(slot, pid) for pid in slot_holders(slot))


def docker_slots_of(state_dir: Path, run_ids: Iterable[str]) -> frozenset[int]:
    """The slots the runs' daemon records name (read them before gc removes them)."""
    found = set()
    for rid in run_ids:
        record = read_record(state_dir / "runs" / rid / "work" / "docker" / "daemon.json")
        if record is not None:
            found.add(record.slot)
    return frozenset(found)


def run_ids_in(state_dir: Path, output: Path) -> set[str]:
    """Run ids a test's dead runs used: their results dirs, and the state dirs of dead runs (a
    runner killed between locking its state and making its results dir has only the latter; a
    live run there is another test's)."""
    found = {p.name for p in output.iterdir() if p.is_dir()} if output.is_dir() else set()
    found |= {p.name for p in dead_runs(state_dir) if p.name != "gc-sweep"}
    return found


def _cgroups(scope: Scope) -> list[str]:
    needles = scope.names() + [cgroup_parent(r) for r in scope.run_ids]
    out = []
    for top, dirs, _ in os.walk(CGROUP_ROOT):
        hits = [d for d in dirs if any(n in d for n in needles)]
        out += [f"cgroup {Path(top) / d}" for d in hits]
        dirs[:] = [d for d in dirs if d not in hits]
    return out


def _links(scope: Scope) -> list[str]:
    text = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    prefixes = scope.link_prefixes()
    bridges = {s.bridge for s in scope.free_docker_slots()}
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        name = parts[1].strip().split("@")[0]
        # runc names its veths by slot, with the sandbox's resource name as the link's alias.
        if (
            any(name.startswith(p) for p in prefixes)
            or name in bridges
            or any(r in line for r in scope.run_ids)
        ):
            out.append(f"link {name}")
    return out


def _netns(scope: Scope) -> list[str]:
    text = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [f"netns {ln.split()[0]}" for ln in text.splitlines() if any(r in ln for r in scope.run_ids)]


def _mounts(scope: Scope) -> list[str]:
    roots = [str(r) + "/" for r in scope.free_slot_roots()]
    entries = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    return [
        f"mount {e.mount_point}"
        for e in entries
        if any((e.mount_point + "/").startswith(r) for r in roots)
        or any(r in e.mount_point for r in scope.run_ids)
    ]


def _domains(scope: Scope) -> list[str]:
    res = subprocess.run(
        ["virsh", "-c", scope.libvirt_uri, "list", "--all", "--name"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if res.returncode != 0:
        return [f"libvirt: cannot list domains: {res.stderr.strip()}"]
    return [f"domain {n}" for n in res.stdout.split() if any(r in n for r in scope.run_ids)]


def _processes(scope: Scope) -> list[str]:
    needles = [r.encode() for r in scope.run_ids] + [str(r).encode() + b"/" for r in scope.free_slot_roots()]
    me = os.getpid()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cgroup = (entry / "cgroup").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X") or not cmdline:
            continue
        ours = any(n in cmdline for n in needles) and PROCESS_RE.search(cmdline) is not None
        in_our_cgroup = any(r.encode() in cgroup for r in scope.run_ids)
        if ours or in_our_cgroup:
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
            out.append(f"process {entry.name}: {argv}")
    return out


def _files(scope: Scope) -> list[str]:
    out = []
    for rid in scope.run_ids:
        paths: Iterable[Path] = [
            *Path("/var/tmp").glob(f"isobench-{rid}-leak-*"),
            *Path("/tmp").glob(f"isobench-{rid}-canary-*"),
            *(scope.state_dir / "vm-runs").glob(f"isobench-{rid}*"),
            scope.state_dir / "runs" / rid,
        ]
        out += [f"path {p}" for p in paths if p.exists()]
    for slot in scope.free_docker_slots():
        if slot.exec_root.exists():
            out.append(f"docker slot {slot.index}: exec root {slot.exec_root}")
        if daemon_holds(slot):
            out.append(f"docker slot {slot.index}: a daemon still holds it ({slot.lock_path})")
    live = scope.state_dir / "container" / "live"
    for rec in sorted(live.glob("*.json")) if live.is_dir() else []:
        try:
            rid = json.loads(rec.read_text()).get("run_id")
        except (OSError, ValueError):
            rid = None
        if rid in scope.run_ids:
            out.append(f"container record {rec}")
    return out


def leftovers(scope: Scope) -> list[str]:
    """Every resource of ``scope``'s runs still on this host, one line each (empty: clean)."""
    if not scope.run_ids:
        return []
    return [
        *_processes(scope),
        *_cgroups(scope),
        *_mounts(scope),
        *_links(scope),
        *_netns(scope),
        *_domains(scope),
        *_files(scope),
    ]
