"""A SandboxSpec read as a container: which namespaces, layers, limits and hardening.

``SandboxSpec.options`` keys understood here (everything else is refused, so a typo is not silently
ignored):

- ``namespaces``: names from pid, mount, uts, ipc, net, cgroup, user (default: all but user);
  ``mount`` is required (the overlay root and pivot_root live in it).
- ``hardening``: bool, default True (caps to the OCI default set, no_new_privs, masked and
  read-only paths, Docker's seccomp allowlist, a device allowlist in the cgroup).
- ``seccomp_allow``: names of relaxations of the seccomp profile (``io_uring``), default none.
- ``rootless``: bool, default False: a user namespace whose root is an unprivileged subordinate
  range of host ids (``subids`` is then required): container root is not host root.
- ``subids``: ``START:COUNT`` or a user with ranges in /etc/subuid and /etc/subgid; maps container
  ids 0..COUNT-1 to them (implies ``user``), with the image and volume idmapped so their files
  still appear root-owned inside.
- ``uid_map`` / ``gid_map``: id map lines when ``user`` is on without ``subids`` (default
  ``0 <euid> 1``: container root *is* the runner's uid, root here, so that is not rootless).
- ``rlimits``: ``["nofile=1024:4096", "core=0", ...]`` over explicit defaults
  (:mod:`isobench.drivers.container.rlimits`); nothing is inherited from the runner.
- ``layers``: extra read-only layers stacked *above* the image (topmost first); a spec's layer
  stack (``SandboxSpec.layers``) goes between them and the image.
- ``cpus``: CPU quota in CPUs (float; default ``spec.vcpus``; None = no quota).
- ``swap_mib``: swap allowed on top of memory (default 0; None = unlimited).
- ``cgroup``: bool, default True (False runs without a cgroup: no limits, no stats).
- ``hostname``: default the sandbox name.
- ``cold_upper``: where a cold run's (``run_cold``) thrown-away upper layer lives: ``memory``
  (default: a tmpfs of the container's own, sized to its memory and charged to its cgroup) or
  ``disk`` (the work dir, overlayfs ``volatile``). Subordinate ids and a disk bandwidth limit
  always use the disk.
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
from isobench.drivers.container.rlimits import Rlimit, parse_rlimits
from isobench.drivers.container.seccomp import relaxation_names
from isobench.drivers.container.subids import SubIds, parse_subids
from isobench.drivers.layerstack import MOUNT_DATA_LIMIT
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
    "check_overlay_fits",
    "config_from_spec",
    "with_io_limit",
]

ALL_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup", "user")
DEFAULT_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup")
_PERIOD_US = 100_000
#: The helper takes at most 512 lower layers (MAX_LOWERS; overlayfs allows 500), the image included;
#: the kernel reads one page of mount options, which in practice stops a stack sooner.
MAX_LAYERS = 512
#: Longest container directory name (isobench-<run>-ctr-<name>-<n>, see names.py) plus margin.
_IDENT_MAX = 100
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
    rlimits: tuple[str, ...] = ()
    subids: str | None = None
    cold_upper: str = "memory"

    def __post_init__(self) -> None:
        unknown = [n for n in self.namespaces if n not in ALL_NAMESPACES]
        if unknown:
            raise UsageError(
                f"drivers.container.namespaces: unknown namespace {unknown[0]!r}; "
                f"choose from {', '.join(ALL_NAMESPACES)}"
            )
        parse_rlimits(self.rlimits, "drivers.container.rlimits")
        if self.subids is not None:
            parse_subids(self.subids, "drivers.container.subids")
        if self.rootless and self.subids is None:
            raise UsageError(_ROOTLESS_NEEDS_SUBIDS.format(where="drivers.container"))
        _relaxations(self.seccomp_allow, "drivers.container")
        _cold_upper(self.cold_upper, "drivers.container")


_ROOTLESS_NEEDS_SUBIDS = (
    "{where}: rootless needs subids (START:COUNT, e.g. 100000:65536, or a user in /etc/subuid), "
    "so that container root is not host root"
)

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
    rlimits: tuple[Rlimit, ...] = ()
    #: Container root is this unprivileged host range; image and volume are idmapped to it.
    subids: SubIds | None = None
    #: Relaxations of the seccomp profile; the compiled filter is set by the driver.
    seccomp_allow: tuple[str, ...] = ()
    seccomp_filter: Path | None = None
    #: Where a cold run's upper layer lives: "memory" or "disk" (see the module docstring).
    cold_upper: str = "memory"

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
    where = f"sandbox {spec.name}"
    subids_opt = options.get("subids")
    if subids_opt is not None and not isinstance(subids_opt, str):
        raise UsageError(f"{where}: option subids must be a string (START:COUNT or a user name)")
    subids = parse_subids(subids_opt, where) if subids_opt is not None else None
    rootless = bool(options.get("rootless", False))
    if rootless and subids is None:
        raise UsageError(_ROOTLESS_NEEDS_SUBIDS.format(where=where))
    if subids is not None and ("uid_map" in options or "gid_map" in options):
        raise UsageError(f"{where}: give either subids or uid_map/gid_map, not both")
    namespaces = _namespaces(options.get("namespaces"), spec, subids is not None)
    rlimits_opt = options.get("rlimits", ())
    if isinstance(rlimits_opt, str) or not isinstance(rlimits_opt, Sequence):
        raise UsageError(f"{where}: option rlimits must be a list, e.g. ['nofile=1024:4096']")
    layers = tuple(Path(p) for p in options.get("layers", ()) or ())
    if spec.layers is not None:
        layers += spec.layers.dirs
    if len(layers) + 1 > MAX_LAYERS:
        raise UsageError(f"{where}: at most {MAX_LAYERS - 1} layers over the image, got {len(layers)}")
    for layer in (*layers, image_root):
        if not layer.is_dir():
            raise UsageError(f"sandbox {spec.name}: image layer {layer} is not a directory; build the image")
        if ":" in str(layer) or "," in str(layer):
            raise UsageError(f"sandbox {spec.name}: layer path {layer} may not contain ':' or ','")
    if spec.volume is not None and not spec.volume.is_dir():
        raise UsageError(f"sandbox {spec.name}: volume {spec.volume} is not a directory; create it first")
    uid_map = gid_map = None
    if subids is not None:
        uid_map, gid_map = subids.uid_map, subids.gid_map
    elif "user" in namespaces:
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
        rlimits=parse_rlimits(rlimits_opt, where),
        subids=subids,
        seccomp_allow=_relaxations(options.get("seccomp_allow", ()), f"sandbox {spec.name}"),
        cold_upper=_cold_upper(options.get("cold_upper", "memory"), where),
    )


COLD_UPPERS = ("memory", "disk")


def _cold_upper(value: object, where: str) -> str:
    if value not in COLD_UPPERS:
        raise UsageError(f"{where}: option cold_upper must be one of {', '.join(COLD_UPPERS)}, got {value!r}")
    return str(value)


def check_overlay_fits(config: ContainerConfig, spec: SandboxSpec, work_dir: Path) -> None:
    """The helper refuses overlay options over one page; say so before anything is made."""
    base = len(str(work_dir)) + 1 + _IDENT_MAX
    lowers = [len(str(p)) for p in config.lowers]
    if config.subids is not None:
        lowers = [base + 12 for _ in config.lowers]  # <base>/idmap/<i>
    size = (
        len("lowerdir=") + sum(lowers) + len(lowers) + 2 * (base + 10) + len(",upperdir=,workdir=,userxattr")
    )
    if size >= MOUNT_DATA_LIMIT:
        raise UsageError(
            f"sandbox {spec.name}: {len(config.lowers)} overlay layers need ~{size} bytes of mount options,"
            f" over the {MOUNT_DATA_LIMIT} mount(2) takes; use fewer or shorter layer paths, or a shorter"
            " work dir"
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
