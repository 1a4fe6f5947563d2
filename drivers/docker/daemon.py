"""The private dockerd: its command line, its start with a deadline, and its stop (also for gc).

Nothing here depends on a system dockerd, on /etc/docker or on iptables: the daemon reads an empty
config file of its own, keeps data, exec root, pid file and socket in its slot (see names.py), makes
no docker0 (``--bridge=none``; the driver creates its own network), and touches neither iptables nor
the host's ip_forward. It is started in a session of its own (Ctrl-C reaches the runner, which then
tears sandboxes down and stops the daemon) and, when started from the main thread, with a parent
death signal: a runner killed outright takes its daemon down with it, which shuts its containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from isobench.drivers.docker.names import Slot
from isobench.errors import DriverUnavailable, SandboxError
from isobench.mounts import find_mounts, umount
from isobench.procs import run_command
from isobench.results import atomic_write_text

__all__ = [
    "DaemonRecord",
    "PrivateDaemon",
    "dockerd_args",
    "last_error",
    "read_record",
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


class PrivateDaemon:
    """One dockerd of one slot, started by this process."""

    def __init__(self, binary: str, slot: Slot, lock_fd: int, *, start_timeout: float) -> None:
        self.slot = slot
        self._binary = binary
        self._lock_fd = lock_fd
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
                    [*_pdeathsig_prefix(), *dockerd_args(self._binary, slot)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    pass_fds=(self._lock_fd,),
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
    return f"{what} {pid}"


def _shim_pids(exec_root: Path, proc_root: Path = Path("/proc")) -> list[int]:
    """containerd shims of this slot's containerd (their ``-address`` is in the exec root)."""
    needle = str(exec_root / "containerd")
    pids = []
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name), proc_root)
            if argv and "containerd-shim" in argv[0] and any(needle in a for a in argv):
                pids.append(int(entry.name))
    return pids


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
    slot is free or held by the caller) and clear the slot: the dockerd, its containerd and shims,
    every mount under its exec and data roots, its bridge."""
    removed: list[str] = []
    exec_root = str(slot.exec_root)

    def is_containerd(argv: Sequence[str]) -> bool:
        return bool(argv) and argv[0].endswith("containerd") and any(exec_root in a for a in argv)

    pid = _pid_from(slot.pidfile)
    if pid is not None:
        removed += stop_dockerd(slot, pid)
    ctrd = _pid_from(slot.containerd_pidfile)
    if ctrd is not None:
        gone = _stop_pid(ctrd, is_containerd, "containerd", 10.0)
        if gone:
            removed.append(gone)
    for shim in _shim_pids(slot.exec_root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(shim, signal.SIGKILL)
        removed.append(f"containerd shim {shim}")
    cleared, errors = clear_slot(slot)
    for err in errors:
        log.warning("clearing docker slot %d: %s", slot.index, err)
    return removed + cleared


def clear_slot(slot: Slot) -> tuple[list[str], list[str]]:
    """What a stopped daemon may leave: mounts under its roots, its exec root, its bridge. Returns
    what was removed and what could not be."""
    removed: list[str] = []
    errors: list[str] = []
    roots = (str(slot.exec_root), str(slot.data_root))
    for mount_point in find_mounts(lambda _: True):
        if any(mount_point == r or mount_point.startswith(r + "/") for r in roots):
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
    """What of ``slot`` is still on the host (mounts under its roots, its bridge), without touching
    it: for gc to report after :func:`stop_slot`, when a new run may already hold the slot."""
    roots = (str(slot.exec_root), str(slot.data_root))
    left = [
        f"mount {m}"
        for m in find_mounts(lambda _: True)
        if any(m == r or m.startswith(r + "/") for r in roots)
    ]
    if Path("/sys/class/net", slot.bridge).exists():
        left.append(f"bridge {slot.bridge}")
    return left
