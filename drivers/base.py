"""The one protocol every driver implements, and the registry that finds drivers.

A driver is a folder ``drivers/<name>/`` whose ``__init__.py`` exposes ``DRIVER``, a class with
``name`` and ``capabilities`` class attributes implementing :class:`Driver`. The registry imports the
folders it finds, so adding a driver touches no other driver (asv's ``tool_name`` plugins); the
order drivers are listed in everywhere is their ``capabilities.order``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, final, runtime_checkable

from isobench.drivers.capabilities import (
    BIND_VOLUME,
    VOLUME_MOUNT,
    Accel,
    Capabilities,
    DriverKind,
    ExecModel,
    LayerStackKind,
    RootStorage,
    Volume,
)
from isobench.drivers.layerstack import LayerStack
from isobench.drivers.options import DriverOptions, OptionTypes
from isobench.drivers.stats import SandboxStats
from isobench.errors import DriverUnavailable, SandboxError, UsageError
from isobench.hostsys import HostProbe
from isobench.model import Interval, PhaseTiming
from isobench.plugins import plugins

if TYPE_CHECKING:
    from isobench.liveruns import Sparing

log = logging.getLogger(__name__)

__all__ = [
    "BIND_VOLUME",
    "VOLUME_MOUNT",
    "Accel",
    "Availability",
    "Capabilities",
    "Driver",
    "DriverContext",
    "DriverKind",
    "DriverOptions",
    "ExecModel",
    "ExecRequest",
    "ExecResult",
    "LayerStack",
    "LayerStackKind",
    "OptionTypes",
    "PhaseClock",
    "RootStorage",
    "Sandbox",
    "SandboxBase",
    "SandboxSpec",
    "SandboxStats",
    "Volume",
    "all_drivers",
    "check_driver_options",
    "get_driver",
    "presentation_order",
    "registered_capabilities",
    "started_or_cleaned",
]

#: Every resource a run creates carries this prefix and the run id, so ``isobench gc`` can find it.
RESOURCE_PREFIX = "isobench"


def _no_sparing() -> Sparing:
    # isobench.liveruns imports isobench.procs, which imports this module.
    from isobench.liveruns import Sparing

    return Sparing()


@dataclass(frozen=True)
class DriverContext:
    """What every driver is constructed with: where state lives and its own config section."""

    #: Long-lived state: built images, probe caches (default /var/lib/isobench).
    state_dir: Path
    #: Scratch space of this run (overlay upper dirs, disk overlays, logs); removed at the end.
    work_dir: Path
    run_id: str
    #: The ``[drivers.<name>]`` table of the config file.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: The host as drivers may see it (/proc, /sys, cgroupfs, euid, the libvirt URI); tests pass
    #: one rooted at a fake tree instead of the real host.
    host: HostProbe = field(default_factory=HostProbe)
    #: For ``gc(None)`` (``isobench gc --all``): the live runs whose resources the sweep leaves
    #: alone, noting them. Drivers that honour it say so with ``spares_live_runs = True``; gc does
    #: not sweep the others while a run lives.
    sparing: Sparing = field(default_factory=_no_sparing)


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox should be. One spec gives a VM and a container matched CPU and memory."""

    name: str
    run_id: str
    image: Path | None = None
    vcpus: int = 1
    cpuset: tuple[int, ...] | None = None
    memory_mib: int = 512
    pids_limit: int | None = 1024
    network: bool = False
    #: Host directory bind-mounted (containers) or attached as a disk (VMs) at ``/data``.
    volume: Path | None = None
    #: Driver-specific switches (e.g. ``namespaces``, ``hardening`` for the container driver).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Disk bandwidth cap in bytes/s, read and write each, on the sandbox's root storage and volume;
    #: None = no limit. Only drivers whose ``capabilities.io_throttle`` is set can express it.
    io_bps: int | None = None
    #: CPU time per scheduling period, in CPUs (0.5: half of one CPU), instead of ``vcpus`` whole
    #: CPUs; at most ``vcpus``. None = ``vcpus``. Only drivers whose ``capabilities.cpu_quota`` is
    #: set can express it.
    cpu_quota: float | None = None
    #: Read-only layers under the sandbox (``isobench.layers`` builds them); only drivers whose
    #: ``capabilities.layer_stack`` is set attach them, and only a guest refuses them next to a volume.
    layers: LayerStack | None = None

    def __post_init__(self) -> None:
        if self.cpu_quota is not None and not 0.01 <= self.cpu_quota <= self.vcpus:
            raise UsageError(
                f"sandbox {self.name}: cpu_quota must be in [0.01, vcpus={self.vcpus}], got {self.cpu_quota}"
            )
        if self.io_bps is not None and self.io_bps < 4096:
            raise UsageError(f"sandbox {self.name}: io_bps must be >= 4096 bytes/s, got {self.io_bps}")
        if self.vcpus < 1:
            raise UsageError(f"sandbox {self.name}: vcpus must be >= 1, got {self.vcpus}")
        if self.memory_mib < 16:
            raise UsageError(f"sandbox {self.name}: memory_mib must be >= 16, got {self.memory_mib}")

    def with_volume_resolved(self) -> SandboxSpec:
        """This spec with its volume, if any, as the absolute path without links a runtime mounts;
        a volume that is not a directory is refused here, before anything is made."""
        if self.volume is None:
            return self
        if not self.volume.is_dir():
            raise UsageError(f"volume {self.volume} is not a directory; create it first")
        return dataclasses.replace(self, volume=self.volume.resolve())


@dataclass(frozen=True)
class ExecRequest:
    """One command to run inside a sandbox, as :meth:`SandboxBase.exec` checked it."""

    argv: tuple[str, ...]
    timeout: float
    env: Mapping[str, str] | None = None
    stdin: bytes | None = None


@dataclass(frozen=True)
class ExecResult(Interval):
    """What running one command inside a sandbox gave back, and when (``seconds``: how long)."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    start_ns: int
    end_ns: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class Availability:
    """Whether a driver can run here, and if not, one line saying why and what to do."""

    ok: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class PhaseClock:
    """Collects CLOCK_MONOTONIC phase intervals of one sandbox's life."""

    def __init__(self) -> None:
        self.phases: list[PhaseTiming] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic_ns()
        try:
            yield
        finally:
            self.phases.append(PhaseTiming(name, start, time.monotonic_ns()))

    def add(self, name: str, start_ns: int, end_ns: int) -> None:
        self.phases.append(PhaseTiming(name, start_ns, end_ns))


@runtime_checkable
class Sandbox(Protocol):
    """A running isolated environment. ``destroy`` is idempotent and must run on every path."""

    @property
    def name(self) -> str: ...

    @property
    def phases(self) -> Sequence[PhaseTiming]:
        """Phase intervals so far: at least ``create`` and ``ready``; ``destroy`` once destroyed."""
        ...

    @property
    def workdir(self) -> str:
        """A writable directory *inside* the sandbox on its own root storage (container: overlay
        upper layer; VM: its writable overlay disk; host: a scratch dir). ``/data`` is the volume
        when the spec asked for one."""
        ...

    @property
    def address(self) -> str | None:
        """An IP address the host can reach the sandbox at (spec.network=True), else None."""
        ...

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run a command inside and wait for it. Raises SandboxError if it cannot be started."""
        ...

    def stats(self) -> SandboxStats:
        """Resource use as the host sees it (memory_bytes, cpu_seconds, ...; None where unknown)."""
        ...

    def destroy(self) -> None: ...


_S = TypeVar("_S", bound="Sandbox")


class SandboxBase(ABC):
    """What every Sandbox shares, written once: its spec and name, its phase clock, its workdir and
    address, a guard against use after destroy, the checks of every ``exec``, and an idempotent
    ``destroy`` timed as the ``destroy`` phase that names what it could not release. A driver's
    sandbox adds ``_exec``, stats and ``_teardown``."""

    #: The words error messages use for this kind of sandbox ("runc sandbox").
    kind: ClassVar[str] = "sandbox"

    def __init__(
        self, spec: SandboxSpec, clock: PhaseClock, *, workdir: str, address: str | None = None
    ) -> None:
        self._spec = spec
        self._clock = clock
        self._workdir = workdir
        #: A sandbox that learns its address only once started sets it then; one whose address
        #: follows a resource it holds overrides :attr:`address` instead.
        self._address = address
        self._destroyed = False

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def workdir(self) -> str:
        return self._workdir

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def spec(self) -> SandboxSpec:
        return self._spec

    @property
    def phases(self) -> Sequence[PhaseTiming]:
        return tuple(self._clock.phases)

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    @final
    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Refuse an exec on a destroyed sandbox or without a command, in the same words everywhere;
        else hand it to the driver's ``_exec``."""
        if self._destroyed:
            raise SandboxError(f"{self.kind} {self.name} is destroyed; create a new one")
        if not argv:
            raise SandboxError("exec needs a command")
        return self._exec(ExecRequest(tuple(argv), timeout, env, stdin))

    @abstractmethod
    def _exec(self, req: ExecRequest) -> ExecResult:
        """Run ``req`` inside and wait for it. Raises SandboxError if it cannot be started."""

    def destroy(self) -> None:
        """Release everything; a second call does nothing. Raises SandboxError naming what is left."""
        if self._destroyed:
            return
        self._destroyed = True
        with self._clock.phase("destroy"):
            errors = self._teardown()
        if errors:
            raise SandboxError(
                f"teardown of {self.kind} {self.name} left resources ({'; '.join(errors)}); run `isobench gc`"
            )

    @abstractmethod
    def _teardown(self) -> list[str]:
        """Release what the sandbox holds, going on past failures; return what could not be released."""

    def _ready_then_probe(self, timeout: float) -> None:
        """Record ``ready`` now, then run ``true`` inside as the ``exec`` phase: a sandbox that cannot
        run a command fails its create, not its first workload."""
        now = time.monotonic_ns()
        self._clock.add("ready", now, now)
        with self._clock.phase("exec"):
            probe = self.exec(["true"], timeout=timeout)
        if not probe.ok:
            tail = probe.stderr.strip()[-200:]
            raise SandboxError(
                f"{self.kind} {self.name} cannot run `true` (exit {probe.exit_code})"
                + (f": {tail}" if tail else "")
            )


def started_or_cleaned(sandbox: _S, start: Callable[[], None]) -> _S:
    """Run a sandbox's creation steps; if any fails (or Ctrl-C comes), destroy what was made before
    the error propagates, so a failed create leaves nothing behind."""
    try:
        start()
    except BaseException:
        try:
            sandbox.destroy()
        except SandboxError as err:
            log.warning("cleanup after failed create of %s: %s", sandbox.name, err)
        raise
    return sandbox


class Driver(Protocol):
    """A way of isolating a workload. Implementations live in ``drivers/<name>/``."""

    name: ClassVar[str]
    #: One line for ``isobench doctor`` and reports.
    description: ClassVar[str]
    #: Its ``[drivers.<name>]`` table as a frozen dataclass (types and ranges in the fields);
    #: anything else is refused before a run.
    options_type: ClassVar[type[DriverOptions]]
    #: What it is (kind, root storage, volume, exec model, order): what workloads, the CLI and
    #: reports ask instead of its name. A guest's accel is ``Accel.PENDING`` here.
    capabilities: ClassVar[Capabilities]

    def __init__(self, ctx: DriverContext) -> None: ...

    def availability(self) -> Availability: ...

    def create(self, spec: SandboxSpec) -> Sandbox:
        """Create, start and wait until ready. On failure nothing it made is left behind."""
        ...

    def probed_capabilities(self) -> Capabilities:
        """``capabilities`` with what a probe of this host decides filled in (a guest's accel),
        running the probe if it has not run yet; a driver without probes returns ``capabilities``."""
        ...

    def metadata(self) -> Mapping[str, Any]:
        """Facts recorded with every sample of this driver (accel, versions, isolation settings)."""
        ...

    def gc(self, run_id: str | None = None) -> list[str]:
        """Remove resources of dead runs (all isobench ones if run_id is None); return what went."""
        ...

    def close(self) -> None:
        """End of the run: release what the driver shares between sandboxes (a libvirt network,
        a connection). Called once, after every sandbox of the run is destroyed."""
        ...


def all_drivers() -> dict[str, type[Driver]]:
    """Every driver folder that imports, by name. A folder that fails to import is logged, not fatal."""
    found: dict[str, type[Driver]] = {}
    for modname, cls in plugins("isobench.drivers", "DRIVER", "driver folder"):
        if not isinstance(getattr(cls, "capabilities", None), Capabilities):
            log.warning(
                "driver folder %s: DRIVER declares no capabilities (a ClassVar[Capabilities]); skipped",
                modname,
            )
            continue
        found[cls.name] = cls
    return dict(sorted(found.items(), key=lambda kv: (kv[1].capabilities.order, kv[0])))


@cache
def _registered() -> dict[str, Capabilities]:
    return {name: cls.capabilities for name, cls in all_drivers().items()}


def registered_capabilities(name: str) -> Capabilities | None:
    """The capabilities of the driver called ``name`` here, or None for a driver this isobench does
    not have (a results file from elsewhere). For code that holds a name, not a driver: reports."""
    return _registered().get(name)


def presentation_order(name: str) -> tuple[int, str]:
    """The sort key of a driver name in every table: its ``capabilities.order``, unknown names last."""
    caps = registered_capabilities(name)
    return (caps.order if caps is not None else 1 << 30, name)


def check_driver_options(tables: Mapping[str, Mapping[str, Any]]) -> None:
    """Every ``[drivers.<name>]`` table, parsed before a run starts: a typo, a wrong type or a value
    out of range is one clear error then, not a default silently measured (or a failure deep in a
    driver at run time)."""
    known = all_drivers()
    for name, given in tables.items():
        if name not in known:
            raise UsageError(f"[drivers.{name}]: no such driver; known: {', '.join(known)}")
        known[name].options_type.parse(name, given)


def get_driver(name: str, ctx: DriverContext) -> Driver:
    drivers = all_drivers()
    if name not in drivers:
        raise UsageError(f"unknown driver {name!r}; known: {', '.join(drivers) or 'none'}")
    return drivers[name](ctx)


def require_available(driver: Driver) -> None:
    avail = driver.availability()
    if not avail.ok:
        raise DriverUnavailable(f"driver {driver.name} is unavailable on this host: {avail.reason}")
