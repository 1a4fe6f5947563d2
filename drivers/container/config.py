"""A SandboxSpec read as a container: which namespaces, layers, limits and hardening.

``SandboxSpec.options`` keys understood here (everything else is refused, so a typo is not silently
ignored):

- ``namespaces``: names from pid, mount, uts, ipc, net, cgroup, user (default: all but user);
  ``mount`` is required (the overlay root and pivot_root live in it).
- ``hardening``: bool, default True (caps to the OCI default set, no_new_privs, masked and
  read-only paths, Docker's seccomp allowlist, a device allowlist in the cgroup).
- ``seccomp_allow``: names of relaxations of the seccomp profile (``io_uring``), default none.
- ``rootless``: bool, default False: adds the user namespace and maps container root to the
  calling user.
- ``uid_map`` / ``gid_map``: id map lines when ``user`` is on (default ``0 <euid> 1``).
- ``layers``: extra read-only layers stacked *above* the image (topmost first).
- ``cpus``: CPU quota in CPUs (float; default ``spec.vcpus``; None = no quota).
- ``swap_mib``: swap allowed on top of memory (default 0; None = unlimited).
- ``cgroup``: bool, default True (False runs without a cgroup: no limits, no stats).
- ``hostname``: default the sandbox name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isobench.drivers.base import SandboxSpec
from isobench.drivers.container.names import sanitize
from isobench.drivers.container.seccomp import relaxation_names
from isobench.drivers.options import DriverOptions, option
from isobench.errors import UsageError
from isobench.hostsys import HostProbe
from isobench.hostsys.blockdev import disks_of
from isobench.hostsys.cgroups import CONTAINER_DEVICES, CgroupLimits

__all__ = [
    "ALL_NAMESPACES",
    "DEFAULT_NAMESPACES",
    "DRIVER_OPTIONS",
    "HARDENED_CAPS",
    "SANDBOX_OPTIONS",
    "ContainerConfig",
    "ContainerOptions",
    "config_from_spec",
    "with_io_limit",
]

ALL_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup", "user")
DEFAULT_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup")
_PERIOD_US = 100_000
#: The capabilities a hardened container keeps: the helper's ``kept_caps`` (the OCI default set; a
#: test holds the two equal). The seccomp profile's capability conditions are resolved against it.
HARDENED_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")


@dataclass(frozen=True)
class ContainerOptions(DriverOptions):
    """The ``[drivers.container]`` table. Only ``cgroup_parent`` belongs to the driver itself; the
    rest shape each sandbox and may also come from a workload per sandbox, so they are read from
    ``SandboxSpec.options`` by :func:`config_from_spec` (and checked here first, before a run)."""

    cgroup_parent: str = ""
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    hardening: bool = True
    seccomp_allow: tuple[str, ...] = ()
    rootless: bool = False
    uid_map: str | None = None
    gid_map: str | None = None
    layers: tuple[str, ...] = ()
    #: None: no CPU quota; absent: spec.vcpus.
    cpus: float | None = option(None, gt=0)
    swap_mib: int | None = option(0, ge=0)
    cgroup: bool = True
    hostname: str | None = None

    def __post_init__(self) -> None:
        unknown = [n for n in self.namespaces if n not in ALL_NAMESPACES]
        if unknown:
            raise UsageError(
                f"drivers.container.namespaces: unknown namespace {unknown[0]!r}; "
                f"choose from {', '.join(ALL_NAMESPACES)}"
            )
        _relaxations(self.seccomp_allow, "drivers.container")


#: Options that shape one sandbox (they may also come from a workload, per sandbox).
SANDBOX_OPTIONS = frozenset(ContainerOptions.option_types()) - {"cgroup_parent"}
#: Options of the driver itself (read by ContainerDriver; passed through the spec and ignored here).
DRIVER_OPTIONS = frozenset({"cgroup_parent"})


@dataclass(frozen=True)
class ContainerConfig:
    namespaces: tuple[str, ...]
    hardening: bool
    lowers: tuple[Path, ...]  # topmost first, the image last
    limits: CgroupLimits | None  # None: no cgroup at all
    hostname: str
    uid_map: str | None
    gid_map: str | None
    network: bool
    volume: Path | None
    #: Relaxations of the seccomp profile; the compiled filter is set by the driver.
    seccomp_allow: tuple[str, ...] = ()
    seccomp_filter: Path | None = None

    @property
    def ns_arg(self) -> str:
        return ",".join(self.namespaces)


def _namespaces(value: Any, spec: SandboxSpec, rootless: bool) -> tuple[str, ...]:
    if value is None:
        chosen = list(DEFAULT_NAMESPACES)
    elif isinstance(value, str) or not isinstance(value, Sequence):
        raise UsageError(f"sandbox {spec.name}: option namespaces must be a list, e.g. ['pid', 'mount']")
    else:
        chosen = [str(v) for v in value]
    unknown = [n for n in chosen if n not in ALL_NAMESPACES]
    if unknown:
        raise UsageError(
            f"sandbox {spec.name}: unknown namespace {unknown[0]!r}; choose from {', '.join(ALL_NAMESPACES)}"
        )
    if "mount" not in chosen:
        raise UsageError(f"sandbox {spec.name}: the mount namespace is required (overlay root, pivot_root)")
    if spec.network and "net" not in chosen:
        raise UsageError(f"sandbox {spec.name}: network=True needs the net namespace")
    if rootless and "user" not in chosen:
        chosen.append("user")
    return tuple(n for n in ALL_NAMESPACES if n in chosen)


def _relaxations(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise UsageError(f"{where}: option seccomp_allow must be a list, e.g. ['io_uring']")
    known = relaxation_names()
    unknown = [str(v) for v in value if v not in known]
    if unknown:
        raise UsageError(
            f"{where}: unknown seccomp relaxation {unknown[0]!r}; choose from {', '.join(known)}"
        )
    return tuple(sorted(set(value)))


def _limits(spec: SandboxSpec, options: Mapping[str, Any]) -> CgroupLimits | None:
    if not options.get("cgroup", True):
        return None
    cpus = options.get("cpus", spec.cpu_quota if spec.cpu_quota is not None else float(spec.vcpus))
    if cpus is not None and (not isinstance(cpus, int | float) or cpus <= 0):
        raise UsageError(f"sandbox {spec.name}: option cpus must be a positive number or null, got {cpus!r}")
    swap = options.get("swap_mib", 0)
    if swap is not None and (not isinstance(swap, int) or swap < 0):
        raise UsageError(f"sandbox {spec.name}: option swap_mib must be >= 0 or null, got {swap!r}")
    return CgroupLimits(
        memory_bytes=spec.memory_mib * 1024 * 1024,
        swap_bytes=None if swap is None else swap * 1024 * 1024,
        cpu_quota_us=None if cpus is None else max(1000, round(float(cpus) * _PERIOD_US)),
        cpu_period_us=_PERIOD_US,
        cpuset=spec.cpuset,
        pids_max=spec.pids_limit,
        # The device allowlist is hardening: off with it, like seccomp and the capability drop.
        devices=CONTAINER_DEVICES if options.get("hardening", True) else None,
    )


def config_from_spec(
    spec: SandboxSpec, image_root: Path, *, euid: int | None = None, egid: int | None = None
) -> ContainerConfig:
    options = dict(spec.options)
    known = SANDBOX_OPTIONS | DRIVER_OPTIONS
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(
            f"sandbox {spec.name}: unknown container option {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    rootless = bool(options.get("rootless", False))
    namespaces = _namespaces(options.get("namespaces"), spec, rootless)
    layers = tuple(Path(p) for p in options.get("layers", ()) or ())
    for layer in (*layers, image_root):
        if not layer.is_dir():
            raise UsageError(f"sandbox {spec.name}: image layer {layer} is not a directory; build the image")
        if ":" in str(layer) or "," in str(layer):
            raise UsageError(f"sandbox {spec.name}: layer path {layer} may not contain ':' or ','")
    if spec.volume is not None and not spec.volume.is_dir():
        raise UsageError(f"sandbox {spec.name}: volume {spec.volume} is not a directory; create it first")
    uid_map = gid_map = None
    if "user" in namespaces:
        uid_map = str(options.get("uid_map", f"0 {os.geteuid() if euid is None else euid} 1"))
        gid_map = str(options.get("gid_map", f"0 {os.getegid() if egid is None else egid} 1"))
    if spec.cpuset is not None and not spec.cpuset:
        raise UsageError(f"sandbox {spec.name}: cpuset must name at least one CPU")
    return ContainerConfig(
        namespaces=namespaces,
        hardening=bool(options.get("hardening", True)),
        lowers=(*layers, image_root),
        limits=_limits(spec, options),
        hostname=sanitize(str(options.get("hostname", spec.name)), 63),
        uid_map=uid_map,
        gid_map=gid_map,
        network=spec.network,
        volume=spec.volume,
        seccomp_allow=_relaxations(options.get("seccomp_allow", ()), f"sandbox {spec.name}"),
    )


def with_io_limit(
    config: ContainerConfig, spec: SandboxSpec, root_dir: Path, probe: HostProbe
) -> ContainerConfig:
    """``config`` with the spec's disk bandwidth limit on the disks holding the container's root
    storage (``root_dir``, its overlay upper layer) and its volume."""
    if spec.io_bps is None:
        return config
    if config.limits is None:
        raise UsageError(f"sandbox {spec.name}: io_bps needs a cgroup; drop option cgroup=false")
    disks = tuple((d.major, d.minor) for d in disks_of([root_dir, config.volume], probe))
    limits = dataclasses.replace(config.limits, io_bps=spec.io_bps, io_devices=disks)
    return dataclasses.replace(config, limits=limits)
