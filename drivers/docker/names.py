"""Names and places of the docker driver: host-wide slots, per-slot daemon paths, per-run labels.

A private dockerd owns things that are global on a host (a bridge interface, an IPv4 subnet, a
runtime directory), so every private daemon takes a **slot** first: ``<runtime>/slot-<k>.lock``,
flocked by the runner *and* inherited by the dockerd it starts (and, since Go only closes
close-on-exec descriptors, by its containerd and shims), so the slot stays taken while any of them
lives, whichever state dir the run uses. Slot ``k`` gives the daemon its exec root
``<runtime>/<k>/`` (socket, pid file, containerd state; under /run, short enough for UNIX socket
paths), the bridge ``isobd<k>`` and the subnet ``10.216.<k>.0/24``. The data root (image layers,
kept between runs so the image is imported once per digest) is ``<state_dir>/docker/slot-<k>/``:
only the slot's holder ever runs a daemon on it.
"""

from __future__ import annotations

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
    "network_name",
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
    """An flocked slot. ``fd`` is handed to the daemon so it holds the slot for its whole life."""

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
            slot = Slot(index, runtime_dir, state_dir)
            fd = os.open(slot.lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return cls(slot, fd)
        raise DriverUnavailable(
            f"all {SLOTS} private dockerd slots under {runtime_dir} are taken; run `isobench gc`"
        )

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def slot_is_free(slot: Slot) -> bool:
    """Whether no process (runner or daemon) holds the slot's lock."""
    return not is_locked(slot.lock_path)
