"""The ``docker`` driver: Docker as its users run it (dockerd -> containerd -> runc, overlay2,
Docker's default seccomp profile and masked paths), driven over the Engine API with docker-py.

By default the driver starts a **private dockerd** the first time it is needed (``metadata()`` at
the start of a run, so the image import is not timed as a start-up), in a host-wide slot of its own
(names.py), and stops it in ``close()``; a run killed outright takes it down through the parent
death signal, and ``isobench gc`` stops one that survived (the run's ``daemon.json`` names its
slot). ``[drivers.docker] socket = "/run/docker.sock"`` uses an existing daemon instead: the driver
then only adds its image, a network of its own and its containers, and removes the last two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    BIND_VOLUME,
    Availability,
    Capabilities,
    DriverContext,
    LayerStack,
    LayerStackKind,
    PhaseClock,
    SandboxSpec,
    started_or_cleaned,
)
from isobench.drivers.docker.daemon import (
    DaemonRecord,
    PrivateDaemon,
    read_record,
    reclaim_slot,
    slot_holders,
    stop_dockerd,
    stop_slot,
    write_record,
)
from isobench.drivers.docker.engine import DockerEngine, Engine, NetworkConfig
from isobench.drivers.docker.image import ensure_image
from isobench.drivers.docker.layers import commit_one_more, ensure_layered_image
from isobench.drivers.docker.names import (
    DEFAULT_RUNTIME_DIR,
    LABEL_RUN,
    SLOTS,
    Slot,
    SlotLock,
    cgroup_parent,
    network_name,
)
from isobench.drivers.docker.parents import remove_cgroup_parent, removed_cgroups
from isobench.drivers.docker.sandbox import DockerSandbox, container_config, naming_a_dead_daemon
from isobench.drivers.options import DriverOptions, option
from isobench.errors import DriverUnavailable, GcIncomplete, IsobenchError, SandboxError
from isobench.hostsys.blockdev import disks_of
from isobench.images import ImageMissing, find_image, image_rootfs
from isobench.liveruns import stale_temp_files
from isobench.procs import tool_version

__all__ = ["DockerDriver", "DockerProbe"]

log = logging.getLogger(__name__)

#: A daemon of another API version answers this one too; pinned so a daemon can be pinged before
#: it can say which version it speaks.
PING_API_VERSION = "1.41"

EngineFactory = Callable[[str, float, "str | None"], Engine]


def _docker_engine(url: str, timeout: float, version: str | None) -> Engine:
    return DockerEngine(url, timeout=timeout, version=version)


@dataclass(frozen=True)
class DockerOptions(DriverOptions):
    #: An existing daemon's socket; None: a private dockerd per run.
    socket: Path | None = None
    #: The dockerd a private daemon is started from.
    binary: str = "dockerd"
    #: Seconds a private dockerd may take to answer.
    start_timeout: float = option(60.0, gt=0)
    #: Seconds any one Engine API call (and the first exec of a sandbox) may take.
    command_timeout: float = option(120.0, gt=0)


@dataclass(frozen=True)
class DockerProbe:
    """Host facts the driver reads, behind one seam so tests can fake them."""

    which: Callable[[str], str | None] = shutil.which
    geteuid: Callable[[], int] = os.geteuid
    version: Callable[[str], str] = tool_version
    #: Slot locks and exec roots. Bridge names and subnets are host-wide, so only the default may
    #: be used with a real daemon: another dir's slot k would name a live run's bridge ``isobd<k>``.
    runtime_dir: Path = field(default=DEFAULT_RUNTIME_DIR)


class DockerDriver:
    name: ClassVar[str] = "docker"
    description: ClassVar[str] = (
        "Docker Engine (dockerd + containerd + runc, overlay2) over its API; a private daemon per run"
    )
    options_type: ClassVar[type[DriverOptions]] = DockerOptions
    #: gc(None) leaves live runs' slots (held by their runners) and cgroups (named by run) alone.
    spares_live_runs: ClassVar[bool] = True
    #: A container runtime over the suite image (overlay2 is overlayfs), between runc and bwrap.
    capabilities: ClassVar[Capabilities] = Capabilities.container(
        order=25, io_throttle=True, cpu_quota=True, layer_stack=LayerStackKind.OVERLAY_LOWERS
    )

    def __init__(
        self,
        ctx: DriverContext,
        probe: DockerProbe | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self._ctx = ctx
        self._probe = probe or DockerProbe()
        self._factory = engine_factory or _docker_engine
        self.opts = DockerOptions.parse(self.name, ctx.options)
        self._socket = self.opts.socket
        self._binary = self.opts.binary
        self._start_timeout = self.opts.start_timeout
        self._timeout = self.opts.command_timeout
        self._engine: Engine | None = None
        self._daemon: PrivateDaemon | None = None
        self._lock: SlotLock | None = None
        self._failed: str | None = None
        self._images: dict[Path, str] = {}
        self._facts: dict[str, Any] = {}

    @property
    def record_path(self) -> Path:
        """Where this run notes its daemon for ``isobench gc`` (inside the run's locked state dir)."""
        return self._ctx.work_dir / "daemon.json"

    @property
    def slot(self) -> Slot | None:
        return self._lock.slot if self._lock is not None else None

    # -- availability and facts --------------------------------------------------------------------

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def availability(self) -> Availability:
        p = self._probe
        if self._socket is not None:
            return self._socket_availability()
        details: dict[str, Any] = {"mode": "private dockerd per run"}
        needed = {"dockerd": self._binary, "containerd": "containerd", "runc": "runc"}
        paths = {k: p.which(v) for k, v in needed.items()}
        details.update({k: v or "not installed" for k, v in paths.items()})
        missing = [needed[k] for k, v in paths.items() if v is None]
        if missing:
            return Availability(
                False,
                f"{', '.join(missing)} not found; install the Debian package `docker.io` "
                "(or set [drivers.docker] socket to use a running daemon)",
                details,
            )
        details["version"] = p.version(str(paths["dockerd"]))
        if p.geteuid() != 0:
            return Availability(
                False, "a private dockerd needs root; run as root or set [drivers.docker] socket", details
            )
        reason = self._probe_start(str(paths["dockerd"]), str(details["version"]))
        details["probe"] = reason or "a private dockerd started and answered"
        return Availability(not reason, reason, details)

    def _probe_start(self, binary: str, version: str) -> str:
        """Whether a private dockerd starts here ("" when it does, else why not): once per dockerd
        version and state dir, so a host where it cannot (say, a data root on a filesystem overlay2
        refuses) has docker skipped with that reason rather than failing every cell. Only a success
        is cached: a failure may be passing, and is probed again next time."""
        key = hashlib.sha256(f"{binary}\0{version}".encode()).hexdigest()[:16]
        cache = self._ctx.state_dir / "docker" / f"probe-{key}.ok"
        if cache.exists():
            return ""
        try:
            lock = SlotLock.take(self._probe.runtime_dir, self._ctx.state_dir)
        except DriverUnavailable as err:
            return str(err)
        try:
            stop_slot(lock.slot)
            daemon = PrivateDaemon(binary, lock.slot, start_timeout=self._start_timeout)
            pinger = self._factory(f"unix://{lock.slot.socket}", 5.0, PING_API_VERSION)
            try:
                daemon.start(pinger.ping)
            except DriverUnavailable as err:
                return str(err)
            finally:
                pinger.close()
                daemon.stop()
        finally:
            lock.release()
        with contextlib.suppress(OSError):
            cache.write_text(f"{version}\n")
        return ""

    def _socket_availability(self) -> Availability:
        assert self._socket is not None
        details: dict[str, Any] = {"mode": f"existing daemon at {self._socket}"}
        if not self._socket.exists():
            return Availability(
                False, f"docker socket {self._socket} does not exist; is dockerd running?", details
            )
        try:
            engine = self._factory(f"unix://{self._socket}", 10.0, PING_API_VERSION)
            try:
                engine.ping()
                details["version"] = str(engine.version().get("Version", "?"))
            finally:
                engine.close()
        except Exception as err:
            return Availability(False, f"docker socket {self._socket} does not answer: {err}", details)
        return Availability(True, "", details)

    def metadata(self) -> Mapping[str, Any]:
        self._ensure()
        default = self._default_rootfs()
        if default is not None:
            try:
                self._image_ref(default)
            except SandboxError as err:
                # Before any cell: the run cannot use docker at all, so nothing may stay up for it.
                self._failed = str(err)
                for left in self._shutdown():
                    log.warning("cleanup after a failed docker import: %s", left)
                raise DriverUnavailable(self._failed) from err
        return {
            "isolation": "docker",
            "runtime": self._facts.get("runtime"),
            "docker_version": self._facts.get("version"),
            "api_version": self._facts.get("api_version"),
            "containerd_version": self._facts.get("containerd"),
            "storage_driver": self._facts.get("storage_driver"),
            "cgroup_driver": self._facts.get("cgroup_driver"),
            "cgroup_version": self._facts.get("cgroup_version"),
            "seccomp": self._facts.get("seccomp"),
            "daemon": "private" if self._socket is None else f"existing at {self._socket}",
            "rootfs": "overlay2 (image layer lower, container layer upper)",
            "network": f"docker bridge network, subnet {self.slot.subnet if self.slot else '?'}",
            "volume": BIND_VOLUME,
            "image_import_s": self._facts.get("image_import_s"),
        }

    def _default_rootfs(self) -> Path | None:
        try:
            return find_image(self._ctx.state_dir).rootfs.resolve()
        except ImageMissing:
            return None

    # -- the daemon ---------------------------------------------------------------------------------

    def _ensure(self) -> Engine:
        """The engine of this run's daemon, starting it (and its network) on first use."""
        if self._engine is not None:
            return self._engine
        if self._failed is not None:
            raise DriverUnavailable(self._failed)
        try:
            self._engine = self._connect()
            self._facts = _facts(self._engine)
            self._ensure_network(self._engine)
        except Exception as err:
            self._failed = str(err) if isinstance(err, IsobenchError) else f"docker: {err}"
            for left in self._shutdown():
                log.warning("cleanup after a failed docker start: %s", left)
            raise DriverUnavailable(self._failed) from err
        except BaseException:
            self._shutdown()
            raise
        return self._engine

    def _connect(self) -> Engine:
        if self._socket is not None:
            # The existing daemon is not ours; the slot only gives our network its bridge and subnet.
            self._lock = SlotLock.take(self._probe.runtime_dir, self._ctx.state_dir)
            url = f"unix://{self._socket}"
            try:
                return self._factory(url, self._timeout, None)
            except Exception as err:
                raise DriverUnavailable(f"docker socket {self._socket} does not answer: {err}") from err
        self._lock = lock = SlotLock.take(self._probe.runtime_dir, self._ctx.state_dir)
        slot = lock.slot
        # A free slot whose last daemon died with its run may hold its leftovers.
        for what in stop_slot(slot):
            log.info("docker slot %d: stopped leftover %s", slot.index, what)
        record = DaemonRecord(slot.index, str(slot.runtime_dir), str(slot.state_dir))
        write_record(self.record_path, record)
        binary = self._probe.which(self._binary) or self._binary
        self._daemon = daemon = PrivateDaemon(binary, slot, start_timeout=self._start_timeout)
        url = f"unix://{slot.socket}"
        pinger = self._factory(url, 5.0, PING_API_VERSION)
        try:
            took = daemon.start(pinger.ping)
        finally:
            pinger.close()
        write_record(self.record_path, dataclasses.replace(record, pid=daemon.pid))
        log.info("private dockerd of slot %d answered after %.2f s", slot.index, took)
        engine = self._factory(url, self._timeout, None)
        # Everything isobench in a private daemon is a dead run's: the slot was free. A dead run's
        # network holds the slot's subnet and bridge name.
        for cid in engine.containers({LABEL_RUN: None}):
            engine.remove(cid)
        for net in engine.networks({LABEL_RUN: None}):
            engine.remove_network(net)
        return engine

    def _ensure_network(self, engine: Engine) -> None:
        assert self._lock is not None
        slot = self._lock.slot
        name = network_name(self._ctx.run_id)
        if engine.network_id(name) is not None:
            engine.remove_network(name)
        engine.create_network(
            NetworkConfig(
                name=name,
                bridge=slot.bridge,
                subnet=str(slot.subnet),
                gateway=slot.gateway,
                labels={LABEL_RUN: self._ctx.run_id},
            )
        )

    def _image_ref(self, rootfs: Path) -> str:
        ref = self._images.get(rootfs)
        if ref is None:
            ref, took = ensure_image(self._ensure(), rootfs)
            self._images[rootfs] = ref
            if took is not None:
                self._facts["image_import_s"] = round(took, 3)
        return ref

    def add_layer(self, stack: LayerStack) -> float:
        """One more layer over the stack's image, as Docker makes one: a commit (``LayerAdder``)."""
        rootfs = image_rootfs(None, self._ctx.state_dir)
        return commit_one_more(self._ensure(), self._layered_ref(self._image_ref(rootfs), stack))

    def _layered_ref(self, base: str, stack: LayerStack) -> str:
        ref, took = ensure_layered_image(self._ensure(), base, stack)
        if took is not None:
            self._facts[f"layers_commit_s_depth{stack.depth}"] = round(took, 3)
        return ref

    # -- sandboxes ------------------------------------------------------------------------------------

    def create(self, spec: SandboxSpec) -> DockerSandbox:
        rootfs = image_rootfs(spec.image, self._ctx.state_dir)
        spec = spec.with_volume_resolved()
        engine = self._ensure()
        io_disks: list[str] = []
        if spec.io_bps is not None:
            root = self._facts.get("root_dir")
            io_disks = [d.path for d in disks_of([Path(root) if root else None, spec.volume], self._ctx.host)]
        image = self._image_ref(rootfs)
        if spec.layers is not None:
            # Built (once per daemon) before the sandbox's clock starts: never timed as a start.
            image = self._layered_ref(image, spec.layers)
        config = container_config(
            spec,
            io_disks=io_disks,
            image=image,
            network=network_name(self._ctx.run_id),
            # A systemd cgroup driver (an existing daemon's) takes only slices: leave it its default.
            cgroup_parent=""
            if self._facts.get("cgroup_driver") == "systemd"
            else cgroup_parent(self._ctx.run_id),
        )
        sandbox = DockerSandbox(
            spec,
            PhaseClock(),
            engine=engine,
            config=config,
            timeout=self._timeout,
            death_note=self._death_note,
        )
        with naming_a_dead_daemon(self._death_note):
            return started_or_cleaned(sandbox, sandbox._start)

    def _death_note(self) -> str:
        return self._daemon.death_note() if self._daemon is not None else ""

    # -- end of run and gc ----------------------------------------------------------------------------

    def close(self) -> None:
        errors = self._shutdown()
        if errors:
            raise SandboxError("; ".join(errors))

    def _shutdown(self) -> list[str]:
        errors: list[str] = []
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                for cid in engine.containers({LABEL_RUN: self._ctx.run_id}):
                    engine.remove(cid)
                engine.remove_network(network_name(self._ctx.run_id))
            except SandboxError as err:
                errors.append(str(err))
            engine.close()
        if self._daemon is not None:
            errors += self._daemon.stop()
            self._daemon = None
        errors += remove_cgroup_parent(self._ctx.host, self._ctx.run_id)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        return errors

    def gc(self, run_id: str | None = None) -> list[str]:
        """The daemon of dead run ``run_id`` (its record names the slot) and its cgroups; with
        None, every slot and cgroup parent no live run holds (``self._ctx.sparing``)."""
        if run_id is not None:
            removed, left = self._gc_recorded()
        else:
            removed, left = self._gc_slots()
        gone, cg_left = removed_cgroups(self._ctx.host, run_id, self._ctx.sparing)
        if left or cg_left:
            raise GcIncomplete(removed + gone, left + cg_left)
        return removed + gone

    def _gc_recorded(self) -> tuple[list[str], list[str]]:
        path = self.record_path
        # A runner killed mid-write leaves the temp file of an atomic write (record or not).
        temps = list(stale_temp_files(path.parent))
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        gone = [f"stale temp file {tmp}" for tmp in temps]
        if not path.exists():
            return gone, []
        record = read_record(path)
        if record is None:
            return gone, [
                f"unparsable daemon record {path} (kept with its run's state: it named the run's "
                f"docker slot; delete it, then `isobench gc --all` clears every slot no live run holds)"
            ]
        slot = record.slot_paths()
        # The dead run's daemon may live on, holding the slot: stopped by its recorded pid.
        stopped = stop_dockerd(slot, record.pid) if record.pid is not None else []
        outcome = reclaim_slot(slot)
        if outcome is None:
            # A runner holds the slot now: a new run took it (clearing what was left) and what is
            # there is its own.
            return gone + stopped, []
        return gone + stopped + outcome[0], outcome[1]

    def _gc_slots(self) -> tuple[list[str], list[str]]:
        removed: list[str] = []
        left: list[str] = []
        sparing = self._ctx.sparing
        for index in range(SLOTS):
            slot = Slot(index, self._probe.runtime_dir, self._ctx.state_dir)
            if not (slot.lock_path.exists() or slot.exec_root.exists()):
                continue
            holders = slot_holders(slot)
            owner = sparing.owner_of_pids(holders)
            if owner is not None:
                sparing.spare(owner, f"docker slot {index}")
                continue
            outcome = reclaim_slot(slot)
            if outcome is None:
                sparing.keep(
                    f"docker slot {index}",
                    f"held by pid {', '.join(map(str, sorted(holders))) or '?'}, no live isobench run "
                    "this gc knows of (another state dir's run that could not register?)",
                )
                continue
            removed += outcome[0]
            left += outcome[1]
        return removed, left


def _facts(engine: Engine) -> dict[str, Any]:
    version = engine.version()
    info = engine.info()
    components = {
        c.get("Name"): c.get("Version") for c in version.get("Components") or [] if isinstance(c, Mapping)
    }
    security = [str(s) for s in info.get("SecurityOptions") or []]
    seccomp = next((s for s in security if "name=seccomp" in s), None)
    return {
        "version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "containerd": components.get("containerd"),
        "runtime": info.get("DefaultRuntime"),
        "storage_driver": info.get("Driver"),
        "cgroup_driver": info.get("CgroupDriver"),
        "cgroup_version": info.get("CgroupVersion"),
        "root_dir": info.get("DockerRootDir"),
        # "name=seccomp,profile=default": Docker's built-in default profile.
        "seccomp": seccomp.split("profile=", 1)[1] if seccomp and "profile=" in seccomp else seccomp,
    }
