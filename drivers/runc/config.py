"""SandboxSpec -> OCI runtime config.json, as a pure function so it can be checked without root.

The shape follows ``runc spec``'s default (mounts, masked and read-only paths, devices denied,
no-new-privileges, RLIMIT_NOFILE 1024) with the namespaces and cgroup limits the spec asks for. The
capability set is Docker's default rather than ``runc spec``'s three, because that is what people who
run OCI containers actually get and what workloads such as fio or stress-ng expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isobench.drivers.base import VOLUME_MOUNT, SandboxSpec
from isobench.errors import SandboxError
from isobench.oci import DOCKER_DEFAULT_CAPABILITIES

__all__ = ["CPU_PERIOD_US", "DEFAULT_CAPABILITIES", "ENV_PATH", "oci_config"]

OCI_VERSION = "1.0.2-dev"
CPU_PERIOD_US = 100_000
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPABILITIES: tuple[str, ...] = DOCKER_DEFAULT_CAPABILITIES

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

NAMESPACES: tuple[str, ...] = ("pid", "network", "ipc", "uts", "mount")


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]


def _resources(spec: SandboxSpec, io_devices: Sequence[tuple[int, int]]) -> dict[str, Any]:
    cpus = spec.cpu_quota if spec.cpu_quota is not None else spec.vcpus
    cpu: dict[str, Any] = {"quota": max(1000, round(cpus * CPU_PERIOD_US)), "period": CPU_PERIOD_US}
    if spec.cpuset is not None:
        cpu["cpus"] = ",".join(str(c) for c in sorted(spec.cpuset))
    resources: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": spec.memory_mib * 1024 * 1024},
        "cpu": cpu,
    }
    if spec.pids_limit is not None:
        resources["pids"] = {"limit": spec.pids_limit}
    if spec.io_bps is not None:
        rates = [{"major": major, "minor": minor, "rate": spec.io_bps} for major, minor in io_devices]
        resources["blockIO"] = {"throttleReadBpsDevice": rates, "throttleWriteBpsDevice": rates}
    return resources


def oci_config(
    spec: SandboxSpec,
    *,
    rootfs: Path,
    args: Sequence[str],
    cgroups_path: str,
    hostname: str,
    io_devices: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """The config.json of one sandbox. ``rootfs`` is the overlay's merged dir (absolute);
    ``io_devices`` the disks (``major, minor``) the spec's ``io_bps`` is applied to."""
    if spec.io_bps is not None and not io_devices:
        raise SandboxError(f"sandbox {spec.name}: io_bps needs the disks to throttle")
    caps = list(DEFAULT_CAPABILITIES)
    mounts = _default_mounts()
    if spec.volume is not None:
        mounts.append(
            {
                "destination": VOLUME_MOUNT,
                "type": "bind",
                "source": str(spec.volume),
                "options": ["rbind", "rw"],
            }
        )
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [ENV_PATH, "HOME=/root"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": _resources(spec, io_devices),
            "namespaces": [{"type": ns} for ns in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
