"""Names and places of the docker driver: host-wide slots, per-slot daemon paths, per-run labels.

A private dockerd owns things that are global on a host (a bridge interface, an IPv4 subnet, a
runtime directory), so every private daemon takes a **slot** first: ``<runtime>/slot-<k>.lock``.
Two locks on that file say who holds it, and each dies with its holder:

- the **runner's** flock (close-on-exec, never inherited), for the run's whole life;
- the **daemon's** POSIX record lock (``lockf``), taken by the daemon's own process just before it
  becomes dockerd (daemon.py). Record locks belong to a process and are not inherited by its
  children, so containerd and the shims, which outlive a killed dockerd, never hold the slot.
  (The slot's flock used to be inherited by dockerd, and Go does not close inherited descriptors
  on exec: an orphaned shim kept the slot "taken" after its run and daemon died, and gc left the
  slot's bridge, mounts and exec root behind.)

A slot is free when neither lock is held: whatever of it is still there (containerd, shims, mounts,
bridge) then belongs to nobody and is cleared by whoever takes the slot next, or by gc.

Slot ``k`` gives the daemon its exec root ``<runtime>/<k>/`` (socket, pid file, containerd state;
under /run, short enough for UNIX socket paths), the bridge ``isobd<k>`` and the subnet
``10.216.<k>.0/24``. The data root (image layers, kept between runs so the image is imported once
per digest) is ``<state_dir>/docker/slot-<k>/``: only the slot's holder ever runs a daemon on it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.naming import safe
from isobench.errors import DriverUnavailable
from isobench.runstate import is_locked

__all__ = [
    "BRIDGE_PREFIX",
    "DEFAULT_RUNTIME_DIR",
    "LABEL_RUN",
    "LABEL_SANDBOX",
    "SLOTS",
    "SUPERNET",
    "Slot",
    "SlotLock",
    "cgroup_parent",
    "container_name",
    "daemon_holds",
    "network_name",
    "runner_holds",
    "slot_is_free",
]

#: Host-wide runtime directory of private daemons: slot locks and exec roots (tmpfs, gone at boot).
DEFAULT_RUNTIME_DIR = Path("/run/isobench-docker")
#: Every private daemon's bridge and subnet come out of this range (other drivers use 10.213-10.215).
SUPERNET = ipaddress.IPv4Network("10.216.0.0/16")
SLOTS = 64
BRIDGE_PREFIX = "isobd"
LABEL_RUN = "isobench.run"
LABEL_SANDBOX = "isobench.sandbox"


def container_name(run_id: str, name: str) -> str:
    """``isobench-docker-<run>-<name>``: the container's name (its id is Docker's)."""
    return f"isobench-docker-{safe(run_id)}-{safe(name)}"


def cgroup_parent(run_id: str) -> str:
    """The cgroup every container of a run is made under, so gc finds a dead run's cgroups."""
    return f"isobench-docker-{safe(run_id)}"


def network_name(run_id: str) -> str:
    return f"isobench-{safe(run_id)}"


@dataclass(frozen=True)
class Slot:
    """Everything a private daemon of slot ``index`` uses."""

    index: int
    runtime_dir: Path
    state_dir: Path

    @property
    def lock_path(self) -> Path:
        return self.runtime_dir / f"slot-{self.index}.lock"

    @property
    def exec_root(self) -> Path:
        return self.runtime_dir / str(self.index)

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.exec_root / "dockerd.pid"

    @property
    def containerd_pidfile(self) -> Path:
        # Where dockerd's supervised containerd writes its pid (moby libcontainerd/supervisor).
        return self.exec_root / "containerd" / "containerd.pid"

    @property
    def home(self) -> Path:
        return self.state_dir / "docker" / f"slot-{self.index}"

    @property
    def data_root(self) -> Path:
        return self.home / "data"

    @property
    def config_file(self) -> Path:
        return self.home / "daemon.json"

    @property
    def log_file(self) -> Path:
        return self.home / "dockerd.log"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(SUPERNET.network_address) + (self.index << 8), 24))

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def containerd_namespace(self) -> str:
        # Distinct per slot, so a system containerd (if dockerd picks one up) keeps daemons apart.
        return f"isobench-docker-{self.index}"


def slot_of_bridge(name: str) -> int | None:
    m = re.fullmatch(rf"{BRIDGE_PREFIX}(\d+)", name)
    return int(m.group(1)) if m else None


class SlotLock:
    """A slot this process holds (the runner's flock), and whose daemon lock was free when taken."""

    def __init__(self, slot: Slot, fd: int) -> None:
        self.slot = slot
        self.fd = fd

    @classmethod
    def take(cls, runtime_dir: Path, state_dir: Path) -> SlotLock:
        """The lowest free slot; DriverUnavailable when all are taken."""
        try:
            runtime_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DriverUnavailable(f"cannot create {runtime_dir}: {err.strerror}") from err
        for index in range(SLOTS):
            lock = cls.claim(Slot(index, runtime_dir, state_dir))
            if lock is not None:
                return lock
        raise DriverUnavailable(
            f"all {SLOTS} private dockerd slots under {runtime_dir} are taken; run `isobench gc`"
        )

    @classmethod
    def claim(cls, slot: Slot) -> SlotLock | None:
        """Hold ``slot`` if nobody does (no runner, no daemon), else None. While held, nobody else
        can take it: what of it is left may be cleared without racing a new run."""
        lock = cls.runner_lock(slot)
        # A daemon whose runner died may live on (no parent-death signal from a worker thread):
        # the slot is still its own until it is stopped.
        if lock is not None and daemon_holds(slot):
            lock.release()
            return None
        return lock

    @classmethod
    def runner_lock(cls, slot: Slot) -> SlotLock | None:
        """The slot's flock alone (no runner can take the slot meanwhile), else None."""
        try:
            fd = os.open(slot.lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(slot, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def runner_holds(slot: Slot) -> bool:
    """Whether a runner (or gc) holds the slot's flock."""
    return is_locked(slot.lock_path)


def daemon_holds(slot: Slot) -> bool:
    """Whether a live daemon process holds the slot's record lock. Testing takes the lock for a
    moment when it is free (the daemon's own ``lockf`` waits for it, see daemon.py)."""
    try:
        fd = os.open(slot.lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    finally:
        # Closing drops this process's record locks on the file: the one just taken.
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


def slot_is_free(slot: Slot) -> bool:
    """Whether neither a runner nor a daemon holds the slot."""
    return not runner_holds(slot) and not daemon_holds(slot)
