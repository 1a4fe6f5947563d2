"""What a driver may know about the host, as one frozen value carried in ``DriverContext``.

Every path a driver reads on the host (``/proc``, ``/sys``, cgroupfs, libvirt's run and log
directories) hangs off ``root``, so a test points one value at a fake tree instead of a driver
option per path (psutil's configurable procfs root). ``euid`` is read once, when the probe is made.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_LIBVIRT_URI", "HostProbe", "Tools"]

DEFAULT_LIBVIRT_URI = "qemu:///system"


@dataclass(frozen=True)
class HostProbe:
    """The host as the suite sees it. The default is the real host; tests pass a fake ``root``."""

    #: Where the host's filesystem starts: ``/`` normally, a temporary tree in tests.
    root: Path = Path("/")
    euid: int = field(default_factory=os.geteuid)
    egid: int = field(default_factory=os.getegid)
    #: The libvirt connection guests are defined on (libvirt's ``test:///default`` in tests).
    libvirt_uri: str = DEFAULT_LIBVIRT_URI

    def path(self, host_path: str | Path) -> Path:
        """An absolute host path (``/sys/fs/cgroup/memory``) as seen under ``root``."""
        return self.root / Path(host_path).relative_to("/")

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def sys_class_net(self) -> Path:
        return self.root / "sys/class/net"

    @property
    def libvirt_run(self) -> Path:
        """Where libvirtd writes its qemu guests' pid files."""
        return self.root / "run/libvirt/qemu"

    @property
    def libvirt_log(self) -> Path:
        """Where libvirtd writes its qemu guests' logs."""
        return self.root / "var/log/libvirt/qemu"

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def read(self, host_path: str, default: str = "") -> str:
        """A host file's text under ``root``, or ``default`` when it cannot be read."""
        try:
            return self.path(host_path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return default

    def mountinfo(self) -> str:
        return self.read("/proc/self/mountinfo")

    def other_runs(self) -> list[str]:
        """The isobench runs live on this host besides this process's own: their measurements
        and this process's disturb each other. Read from the live-run registry (under ``root`` in
        a fake tree, so a test never prunes the real host's entries); a fleet worker's run is named
        by its fleet run's id, the one its results carry."""
        from isobench.liveruns import DEFAULT_REGISTRY, default_registry, live_runs_anywhere

        registry = default_registry() if self.root == Path("/") else self.path(DEFAULT_REGISTRY)
        me = os.getpid()
        return sorted({r.known_as for r in live_runs_anywhere(registry, self.proc) if r.pid != me})

    def has_filesystem(self, fs_type: str) -> bool:
        """Whether the kernel lists ``fs_type`` in /proc/filesystems."""
        return any(line.split()[-1:] == [fs_type] for line in self.read("/proc/filesystems").splitlines())


@dataclass(frozen=True)
class Tools:
    """Where a driver finds host programs and what version they say they are; tests pass fakes."""

    which: Callable[[str], str | None] = shutil.which
    version: Callable[[str], str] = field(default_factory=lambda: _tool_version)


def _tool_version(binary: str) -> str:
    # Imported when called: isobench.procs imports the driver base, which imports this module.
    from isobench.procs import tool_version

    return tool_version(binary)
