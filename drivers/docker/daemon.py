"""The private dockerd: its command line, its start with a deadline, and its stop (also for gc).

Nothing here depends on a system dockerd, on /etc/docker or on iptables: the daemon reads an empty
config file of its own, keeps data, exec root, pid file and socket in its slot (see names.py), makes
no docker0 (``--bridge=none``; the driver creates its own network), and touches neither iptables nor
the host's ip_forward. It is started in a session of its own (Ctrl-C reaches the runner, which then
tears sandboxes down and stops the daemon) and, when started from the main thread, with a parent
death signal: a runner killed outright takes its daemon down with it, which shuts its containers.
The daemon's own process holds its slot (a record lock, names.py), so its children never do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from isobench.drivers.docker.names import Slot, SlotLock, daemon_holds, runner_holds
from isobench.errors import DriverUnavailable, SandboxError
from isobench.mounts import find_mounts, umount
from isobench.procs import run_command, running, stat_fields
from isobench.results import atomic_write_text

__all__ = [
    "DaemonRecord",
    "PrivateDaemon",
    "dockerd_args",
    "last_error",
    "orphan_holders",
    "read_record",
    "reclaim_slot",
    "slot_holders",
    "slot_leftovers",
    "stop_dockerd",
    "stop_slot",
]

log = logging.getLogger(__name__)


def dockerd_args(binary: str, slot: Slot) -> list[str]:
    """The private daemon's command line: every path in its slot, nothing changed on the host."""
    ns = slot.containerd_namespace
    return [
        binary,
        "--config-file",
        str(slot.config_file),
        "--data-root",
        str(slot.data_root),
        "--exec-root",
        str(slot.exec_root),
        "--pidfile",
        str(slot.pidfile),
        "--host",
        f"unix://{slot.socket}",
        "--storage-driver",
        "overlay2",
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--userland-proxy=false",
        "--containerd-namespace",
        ns,
        "--containerd-plugins-namespace",
        f"{ns}-plugins",
        "--shutdown-timeout",
        "5",
    ]


@dataclass(frozen=True)
class DaemonRecord:
    """What a run writes into its work dir before starting a daemon, so gc of the dead run finds it.

    Format history (``version``): 1 had no version key; 2 is written atomically and fsync'd (the
    same fields). Both load.
    """

    slot: int
    runtime_dir: str
    state_dir: str
    pid: int | None = None
    version: int = 2

    def slot_paths(self) -> Slot:
        return Slot(self.slot, Path(self.runtime_dir), Path(self.state_dir))


def write_record(path: Path, record: DaemonRecord) -> None:
    """Atomically and durably (fsync'd, as the journal): a runner killed at any moment leaves
    either no record or a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(record)))


def read_record(path: Path) -> DaemonRecord | None:
    try:
        doc = json.loads(path.read_text())
        return DaemonRecord(
            slot=int(doc["slot"]),
            runtime_dir=str(doc["runtime_dir"]),
            state_dir=str(doc["state_dir"]),
            pid=int(doc["pid"]) if doc.get("pid") is not None else None,
            version=int(doc.get("version", 1)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def last_error(log_text: str) -> str:
    """The last error-level line dockerd logged (its ``msg=`` part), else its last line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "level=error" in ln or "level=fatal" in ln or ln.startswith("failed to start daemon"):
            msg = ln.split('msg="', 1)
            return msg[1].rsplit('"', 1)[0] if len(msg) == 2 else ln
    return lines[-1] if lines else "no output"


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --``: the daemon gets SIGTERM when the thread that started it
    dies. Only from the main thread (a worker thread may end long before the run does)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


#: ``python -c HOLD_SLOT <lock file> <dockerd> <args>``: take the slot's record lock in the process
#: that then becomes dockerd. A record lock is the process's own: it survives the exec and dies with
#: dockerd, and the containerd and shims dockerd starts (which may outlive it) do not inherit it, as
#: they would an flock (Go leaves inherited descriptors open across its execs). The descriptor stays
#: open in dockerd (closing it would drop the lock); children inherit it without the lock. Blocking:
#: the caller holds the slot's flock, so only a gc's momentary test can be in the way.
HOLD_SLOT = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDWR)\n"
    "os.set_inheritable(fd, True)\n"
    "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def holding_slot(slot: Slot, argv: Sequence[str]) -> list[str]:
    """``argv`` run so that its process holds ``slot`` for its life (see :data:`HOLD_SLOT`)."""
    return [sys.executable, "-I", "-S", "-c", HOLD_SLOT, str(slot.lock_path), *argv]


class PrivateDaemon:
    """One dockerd of one slot, started by this process (which must hold the slot)."""

    def __init__(self, binary: str, slot: Slot, *, start_timeout: float) -> None:
        self.slot = slot
        self._binary = binary
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self) -> str:
        try:
            return last_error(self.slot.log_file.read_text(errors="replace")[-20000:])
        except OSError:
            return "no log"

    def death_note(self) -> str:
        """Why the daemon is not answering, when it has died: for error lines."""
        if self._proc is None or self._proc.poll() is None:
            return ""
        return (
            f"private dockerd (pid {self._proc.pid}) exited with code {self._proc.returncode}: "
            f"{self.log_tail()} (log: {self.slot.log_file})"
        )

    def start(self, ping: Callable[[], bool]) -> float:
        """Start dockerd and wait until ``ping`` answers; return the seconds that took. On any
        failure the daemon is stopped and its leftovers removed before DriverUnavailable is raised."""
        slot = self.slot
        try:
            slot.home.mkdir(parents=True, exist_ok=True)
            slot.exec_root.mkdir(parents=True, exist_ok=True)
            # An empty config of our own: /etc/docker/daemon.json (mirrors, runtimes) must not apply.
            slot.config_file.write_text("{}\n")
        except OSError as err:
            raise DriverUnavailable(f"cannot prepare the private dockerd's directories: {err}") from err
        started = time.monotonic()
        with slot.log_file.open("wb") as out:
            try:
                self._proc = subprocess.Popen(
                    [*_pdeathsig_prefix(), *holding_slot(slot, dockerd_args(self._binary, slot))],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            except OSError as err:
                raise DriverUnavailable(f"cannot start {self._binary}: {err.strerror}") from err
        deadline = started + self._start_timeout
        try:
            while not _answers(ping):
                if self._proc.poll() is not None:
                    raise DriverUnavailable(self.death_note())
                if time.monotonic() > deadline:
                    raise DriverUnavailable(
                        f"private dockerd did not answer on {slot.socket} within "
                        f"{self._start_timeout:.0f}s: {self.log_tail()} (log: {slot.log_file})"
                    )
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def stop(self) -> list[str]:
        """Stop the daemon (SIGTERM: it stops its containers and unmounts), then whatever it could
        not stop itself (a daemon that died leaves containerd and shims running), then clear the slot."""
        errors: list[str] = []
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                errors.append(f"dockerd {self._proc.pid} ignored SIGTERM for 30 s and was killed")
        for what in stop_slot(self.slot):
            log.info("docker slot %d: stopped leftover %s", self.slot.index, what)
        return errors


def _answers(ping: Callable[[], bool]) -> bool:
    try:
        return ping()
    except Exception:  # connection refused, socket not there yet, HTTP errors: not ready
        return False


def _cmdline(pid: int, proc_root: Path = Path("/proc")) -> list[str]:
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stop_pid(pid: int, belongs: Callable[[Sequence[str]], bool], what: str, grace: float) -> str | None:
    """SIGTERM, then SIGKILL after ``grace``, a process whose command line ``belongs`` to us (a pid
    file may outlive its process and name someone else's by now)."""
    if not belongs(_cmdline(pid)):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and belongs(_cmdline(pid)):
        time.sleep(0.05)
    if belongs(_cmdline(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone([pid], 5.0)  # its command line goes first; its mounts and files when it has exited
    return f"{what} {pid}"


def _slot_processes(slot: Slot, proc_root: Path = Path("/proc")) -> list[tuple[int, str]]:
    """The slot's containerd and shims, (pid, what): their command lines name a path in its exec
    root (containerd's config and socket, a shim's ``-address``)."""
    needle = str(slot.exec_root) + "/"
    found = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name), proc_root)
        if not argv or not any(needle in a for a in argv):
            continue
        name = Path(argv[0]).name
        if name.startswith("containerd-shim"):
            found.append((int(entry.name), "containerd shim"))
        elif name == "containerd":
            found.append((int(entry.name), "containerd"))
    return found


def _children(pids: set[int], proc_root: Path = Path("/proc")) -> list[int]:
    """Processes whose parent is one of ``pids`` (a shim's children are its containers' inits)."""
    out = []
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name), proc_root) or []
            if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) in pids:  # field 4: ppid
                out.append(int(entry.name))
    return out


def _fd_holders(path: Path, proc_root: Path = Path("/proc")) -> set[int]:
    """Processes (other than this one) with a descriptor open on ``path``."""
    target = str(path)
    me = os.getpid()
    holders = set()
    for entry in proc_root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) == target:
                    holders.add(int(entry.name))
                    break
    return holders


def orphan_holders(slot: Slot, proc_root: Path = Path("/proc")) -> list[int] | None:
    """The pids holding ``slot``'s flock if they are all its own dockerd, containerd and shims:
    they inherited it from a dockerd started before daemons held slots by record lock, and the
    runner (which holds it for its whole life, and is none of them) is dead. None if the slot is
    free, held by a daemon's record lock, or by anything else (a runner)."""
    if daemon_holds(slot) or not runner_holds(slot):
        return None
    holders = _fd_holders(slot.lock_path, proc_root)
    ours = {pid for pid, _ in _slot_processes(slot, proc_root)}
    dockerd = _pid_from(slot.pidfile)
    if dockerd is not None and _is_dockerd(slot)(_cmdline(dockerd, proc_root)):
        ours.add(dockerd)
    if not holders or not holders <= ours:
        return None
    return sorted(holders)


def _is_dockerd(slot: Slot) -> Callable[[Sequence[str]], bool]:
    def match(argv: Sequence[str]) -> bool:
        return bool(argv) and argv[0].endswith("dockerd") and f"unix://{slot.socket}" in argv

    return match


def stop_dockerd(slot: Slot, pid: int) -> list[str]:
    """Stop ``pid`` if it is still the dockerd of ``slot``."""
    gone = _stop_pid(pid, _is_dockerd(slot), "dockerd", 30.0)
    return [gone] if gone else []


def stop_slot(slot: Slot) -> list[str]:
    """Stop whatever daemon of ``slot`` is still running (a dead run's; call it only while the
    slot is free or held by the caller) and clear the slot: the dockerd, its containerd, the
    shims' containers and the shims, every mount under its exec and data roots, its bridge."""
    removed: list[str] = []
    pid = _pid_from(slot.pidfile)
    if pid is not None:
        removed += stop_dockerd(slot, pid)
    exec_root = str(slot.exec_root) + "/"

    def is_containerd(argv: Sequence[str]) -> bool:
        return bool(argv) and argv[0].endswith("containerd") and any(exec_root in a for a in argv)

    killed: list[int] = []
    ctrd = _pid_from(slot.containerd_pidfile)
    if ctrd is not None:
        gone = _stop_pid(ctrd, is_containerd, "containerd", 10.0)
        if gone:
            removed.append(gone)
            killed.append(ctrd)
    left = _slot_processes(slot)
    # A shim's children are its containers' inits: each takes its pid namespace down with it.
    for child in _children({p for p, what in left if what == "containerd shim"}):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        removed.append(f"container process {child}")
        killed.append(child)
    for leftover, what in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)
        removed.append(f"{what} {leftover}")
        killed.append(leftover)
    _wait_gone(killed, 5.0)
    cleared, errors = clear_slot(slot)
    for err in errors:
        log.warning("clearing docker slot %d: %s", slot.index, err)
    return removed + cleared


def _wait_gone(pids: Sequence[int], grace: float) -> None:
    """Until the SIGKILLed ``pids`` have exited (their mounts and descriptors go with them). An
    exiting process loses its command line (its memory) before its files and namespaces, so an empty
    cmdline is not "gone": only a zombie or no process at all is (``procs.running``)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.02)


def _slot_mounts(slot: Slot) -> list[str]:
    """Mounts under the slot's exec root, or under its data root in *any* state dir: only the slot's
    holder runs a daemon on ``<state>/docker/slot-<k>``, so once the slot is free they are all left."""
    data = re.compile(rf"/docker/slot-{slot.index}/data(/|$)")
    exec_root = str(slot.exec_root)
    return [
        m
        for m in find_mounts(lambda _: True)
        if m == exec_root or m.startswith(exec_root + "/") or data.search(m)
    ]


def clear_slot(slot: Slot) -> tuple[list[str], list[str]]:
    """What a stopped daemon may leave: mounts under its roots, its exec root, its bridge. Returns
    what was removed and what could not be."""
    removed: list[str] = []
    errors: list[str] = []
    for mount_point in _slot_mounts(slot):
        try:
            umount(Path(mount_point))
            removed.append(f"mount {mount_point}")
        except SandboxError as err:
            errors.append(str(err))
    if slot.exec_root.exists():
        shutil.rmtree(slot.exec_root, ignore_errors=True)
        removed.append(f"exec root {slot.exec_root}")
    if Path("/sys/class/net", slot.bridge).exists():
        res = run_command(["ip", "link", "del", slot.bridge], timeout=30)
        if Path("/sys/class/net", slot.bridge).exists():
            errors.append(f"bridge {slot.bridge}: {res.stderr.strip()}")
        else:
            removed.append(f"bridge {slot.bridge}")
    return removed, errors


def slot_leftovers(slot: Slot) -> list[str]:
    """What of ``slot`` is still on the host (its dockerd, containerd and shims, mounts, exec root,
    bridge), without touching it: for gc to report after :func:`stop_slot`."""
    left = [f"{what} {pid}" for pid, what in _slot_processes(slot)]
    pid = _pid_from(slot.pidfile)
    if pid is not None and _is_dockerd(slot)(_cmdline(pid)):
        left.append(f"dockerd {pid}")
    left += [f"mount {m}" for m in _slot_mounts(slot)]
    if slot.exec_root.exists():
        left.append(f"exec root {slot.exec_root}")
    if Path("/sys/class/net", slot.bridge).exists():
        left.append(f"bridge {slot.bridge}")
    return left


def reclaim_slot(slot: Slot) -> tuple[list[str], list[str]] | None:
    """Clear ``slot`` unless a runner holds it: (what went, what is still there), or None when a
    runner holds it (a live run's, or one gc cannot tell).

    Under the slot's flock, so no new run takes it meanwhile; a dockerd that outlived its runner
    (it holds the record lock) is stopped too. Shims holding the flock (inherited from a dockerd
    of before the record lock) are recognised as the slot's orphans and stopped first."""
    removed: list[str] = []
    if orphan_holders(slot) is not None:
        # While they hold the flock nobody else can take the slot: clearing it races no one.
        removed += stop_slot(slot)
    lock = SlotLock.runner_lock(slot)
    if lock is None:
        return (removed, slot_leftovers(slot)) if removed else None
    try:
        removed += stop_slot(slot)
        left = slot_leftovers(slot)
        if daemon_holds(slot):
            left.append(f"a process holding docker slot {slot.index}'s record lock {slot.lock_path}")
        return removed, left
    finally:
        lock.release()


def slot_holders(slot: Slot) -> set[int]:
    """Every process with the slot's lock file open (its runner, its daemon, their children)."""
    return _fd_holders(slot.lock_path)
