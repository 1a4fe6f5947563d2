"""The ``container`` driver: isobench's own runtime (namespaces + cgroups + overlayfs, no runc).

Python owns the resources (cgroup, overlay directories, veth, the live record); the native helper
does clone, mounts, pivot_root, hardening and exec, and reports CLOCK_MONOTONIC stamps over a pipe.
A sandbox is a tiny init (pid 1 of its pid namespace) that :meth:`ContainerSandbox.exec` enters
with setns; :meth:`ContainerDriver.run_cold` starts one command as pid 1 and tears down, for
start-up benchmarks.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    BIND_VOLUME,
    Availability,
    Capabilities,
    DriverContext,
    DriverOptions,
    ExecResult,
    LayerStackKind,
    PhaseClock,
    SandboxSpec,
)
from isobench.drivers.container.claims import CLAIM_TRIES, Claims, next_names
from isobench.drivers.container.collect import collect_runs
from isobench.drivers.container.config import (
    DEFAULT_NAMESPACES,
    HARDENED_CAPS,
    ContainerConfig,
    ContainerOptions,
    check_overlay_fits,
    config_from_spec,
    with_io_limit,
)
from isobench.drivers.container.helper import ARGV0, HelperImage, ensure_helper, helper_key, seal_helper
from isobench.drivers.container.network import setup_veth
from isobench.drivers.container.process import (
    DEFAULT_ENV,
    START_TIMEOUT_S,
    GoPipe,
    add_helper_phases,
    read_all,
    run_helper,
)
from isobench.drivers.container.report import HelperReport, parse_report
from isobench.drivers.container.resources import Resources, cgroup_args, seccomp_args
from isobench.drivers.container.sandbox import ColdRun, ContainerSandbox, make_container_dirs
from isobench.drivers.container.seccomp import filter_path
from isobench.drivers.container.seccomp.cache import profile_digest
from isobench.drivers.container.state import (
    child_pidfd,
)
from isobench.errors import IsobenchError, SandboxError
from isobench.hostsys.cgroups import Cgroup, V1Manager, V2Manager, open_manager
from isobench.hostsys.links import Links

log = logging.getLogger(__name__)

__all__ = ["ColdRun", "ContainerDriver", "ContainerSandbox"]


class _NameTaken(Exception):
    """Another runner process claimed these container names first."""


def _cold_upper_in_memory(config: ContainerConfig, spec: SandboxSpec) -> bool:
    """Whether a cold run's upper layer lives in memory (option ``cold_upper``, default): not with
    subordinate ids (the helper attaches idmapped layers next to it, in the host directory) nor
    with a disk bandwidth limit (which applies to the disk holding the root's writes). Its size is
    the sandbox's memory, and its pages are charged to the container's memory cgroup."""
    return config.cold_upper == "memory" and config.subids is None and spec.io_bps is None


class ContainerDriver:
    name: ClassVar[str] = "container"
    description: ClassVar[str] = (
        "isobench's own containers: namespaces, cgroups, overlayfs root, pivot_root, seccomp"
    )
    capabilities: ClassVar[Capabilities] = Capabilities.container(
        order=10,
        switchable_hardening=True,
        io_throttle=True,
        cpu_quota=True,
        layer_stack=LayerStackKind.OVERLAY_LOWERS,
    )
    options_type: ClassVar[type[DriverOptions]] = ContainerOptions
    #: gc(None) leaves containers of live runs (their records' owners, ``ctx.sparing``) alone.
    spares_live_runs: ClassVar[bool] = True

    def __init__(
        self,
        ctx: DriverContext,
        links: Links | None = None,
        *,
        helper: Path | None = None,
        overlap: bool = True,
    ) -> None:
        """``helper``: a built helper to run instead of this source's build (benchmarks compare
        builds of it); it is sealed into a memfd all the same. ``overlap=False``: a cold run makes
        its record and cgroup before the helper starts, as it used to (what the overlap saves is
        measured against it)."""
        self._ctx = ctx
        self._overlap = overlap
        self.opts = ContainerOptions.parse(self.name, ctx.options)
        self._links = links or Links()
        self._helper_path: Path | None = helper
        self._image: HelperImage | None = None
        self._manager: V1Manager | V2Manager | None = None
        self._filters: dict[tuple[str, ...], Path] = {}
        self._claims = Claims(ctx, self.opts.cgroup_parent)

    # ---------------------------------------------------------------------------- plumbing

    def helper(self) -> Path:
        if self._helper_path is None:
            self._helper_path = ensure_helper(self._ctx.state_dir)
        return self._helper_path

    def helper_image(self) -> HelperImage:
        """The sealed copy every helper process runs from (made once per driver)."""
        if self._image is None:
            self._image = seal_helper(self.helper())
        return self._image

    def seccomp_filter(self, config: ContainerConfig) -> Path | None:
        """The compiled seccomp filter for ``config`` (None without hardening); compiled on first
        use into the state dir, then a dict lookup per start."""
        if not config.hardening:
            return None
        found = self._filters.get(config.seccomp_allow)
        if found is None or not found.exists():
            found = filter_path(self._ctx.state_dir, HARDENED_CAPS, config.seccomp_allow)
            self._filters[config.seccomp_allow] = found
        return found

    def cgroups(self) -> V1Manager | V2Manager:
        if self._manager is None:
            self._manager = open_manager(self._ctx.host, parent=self.opts.cgroup_parent)
        return self._manager

    def _image_root(self, spec: SandboxSpec) -> Path:
        if spec.image is not None:
            return spec.image
        from isobench.images import find_image

        return find_image(self._ctx.state_dir).rootfs

    def availability(self) -> Availability:
        if not self._ctx.host.is_root:
            return Availability(False, "the container driver needs root (cgroups, mounts); run as root")
        if not self._ctx.host.has_filesystem("overlay"):
            return Availability(False, "overlayfs is not available; load the overlay kernel module")
        try:
            mode = self.cgroups().mode
            self.helper()
        except (IsobenchError, OSError) as err:
            return Availability(False, str(err))
        return Availability(True, details={"cgroup_mode": mode})

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def metadata(self) -> Mapping[str, Any]:
        try:
            mode: str = self.cgroups().mode
        except IsobenchError:
            mode = "unknown"
        return {
            "isolation": "namespaces+cgroups+overlayfs",
            "runtime": "isobench-ctr",
            "helper": helper_key(),
            "cgroup_mode": mode,
            "default_namespaces": list(DEFAULT_NAMESPACES),
            "hardening": (
                "caps=OCI default, no_new_privs, masked/ro paths, seccomp=Docker default allowlist, "
                "devices allowlist"
            ),
            # Which profile data and compiler the hardened figures were measured with.
            "seccomp_profile": profile_digest()[:16],
            "runtime_hardening": (
                "helper from a sealed memfd, undumpable quiet init, parent-death signals, exec by "
                "pidfd, mount targets in root, explicit rlimits, nosuid/nodev root and volume"
            ),
            "user_namespace": self._userns_mode(),
            "kernel": platform.release(),
            "volume": BIND_VOLUME,
        }

    def _userns_mode(self) -> str:
        """What the driver's own options make of the user namespace (a sandbox may override)."""
        if self.opts.subids is not None:
            return f"rootless: container root is subordinate host ids {self.opts.subids}"
        if "user" in self.opts.namespaces:
            return "identity: container root is host root (not rootless)"
        return "none"

    # ---------------------------------------------------------------------------- life cycle

    def _mount_point(self, config: ContainerConfig, base: Path) -> Path:
        """Where the helper mounts the container's root. It does so in the container's own mount
        namespace, so every container can use the same empty directory (one mkdir and one rmdir
        fewer per container); a subordinate-id root, which may not walk the host path to it, gets
        its own in its directory."""
        if config.subids is not None:
            return base / "merged"
        return self._shared_dir("mnt")

    def _shared_dir(self, name: str) -> Path:
        """An empty directory every container mounts over in its own mount namespace."""
        shared = self._ctx.state_dir / "container" / name
        if not shared.is_dir():
            shared.mkdir(parents=True, exist_ok=True)
        return shared

    def _configure(self, spec: SandboxSpec) -> ContainerConfig:
        """The container's config, checked, with its helper built and its seccomp filter compiled:
        everything before the first resource."""
        host = self._ctx.host
        config = config_from_spec(spec, self._image_root(spec), euid=host.euid, egid=host.egid)
        check_overlay_fits(config, spec, self._ctx.work_dir)
        self.helper_image()  # build before any resource exists: a missing compiler leaves nothing behind
        return replace(config, seccomp_filter=self.seccomp_filter(config))

    def _prepare(
        self,
        spec: SandboxSpec,
        clock: PhaseClock,
        config: ContainerConfig,
        *,
        cold: bool = False,
        defer_cgroup: bool = False,
    ) -> tuple[ContainerConfig, Resources]:
        """Record, cgroup and overlay directories of a ``_configure``d container. On failure
        nothing is left. With ``defer_cgroup`` the cgroup is left for the caller to make
        (``_make_cgroup``) while the helper starts."""
        host = self._ctx.host
        # A cold run whose upper layer is in memory has no directory on the host at all.
        in_memory = cold and _cold_upper_in_memory(config, spec)
        with clock.phase("overlay_dirs"):
            names, base, record, record_path = self._claims.claim(spec.name, config, make_dir=not in_memory)
            res = Resources(names=names, record=record, record_path=record_path, links=self._links)
            res.base_dir = None if in_memory else base
            try:
                # In memory: nothing but the volume's mode (closed to other host users).
                make_container_dirs(base, config, workdir=not cold, upper=not in_memory)
            except BaseException:
                res.release()
                raise
        try:
            config = with_io_limit(config, spec, base, host)
            if config.limits is not None and not defer_cgroup:
                self._make_cgroup(config, res, clock)
        except BaseException:
            res.release()
            raise
        return config, res

    def _planned_cgroup(self, config: ContainerConfig, res: Resources) -> Cgroup | None:
        """The cgroup a container still has to make (None: it has one, or needs none)."""
        if config.limits is None or res.cgroup is not None:
            return None
        return self.cgroups().plan(res.names.ident, config.limits)

    def _make_cgroup(self, config: ContainerConfig, res: Resources, clock: PhaseClock) -> None:
        assert config.limits is not None
        with clock.phase("cgroup"):
            res.cgroup = self.cgroups().create(res.names.ident, config.limits)

    def _helper_args(
        self,
        mode: str,
        config: ContainerConfig,
        res: Resources,
        spec: SandboxSpec,
        *,
        in_memory: bool = False,
        cgroup: Cgroup | None = None,
    ) -> list[str]:
        """The helper's arguments; ``cgroup``: where it attaches when ``res`` has no cgroup yet."""
        base = self._ctx.work_dir / res.names.ident
        args = [ARGV0, mode, "--ppid", str(os.getpid()), "--ns", config.ns_arg, "--hostname", config.hostname]
        for rl in config.rlimits:
            args += ["--rlimit", rl.arg]
        if config.subids is not None:
            args += ["--idmap-dir", str(base / "idmap")]
        for lower in config.lowers:
            args += ["--lower", str(lower)]
        layer_dir = base
        if in_memory:
            # Upper and work dirs in the tmpfs the helper mounts over one shared empty directory
            # (in the container's own mount namespace, so every container uses the same one).
            # ``--name`` puts the container's own path in the helper's command line all the same:
            # that is how gc finds a record's helpers (state.record_processes).
            layer_dir = self._shared_dir("cold")
            args += ["--name", f"{base}/", "--upper-tmpfs", f"{spec.memory_mib}m"]
        args += [
            "--upper",
            str(layer_dir / "upper"),
            "--work",
            str(layer_dir / "work"),
            "--merged",
            str(self._mount_point(config, base)),
        ]
        if config.volume is not None:
            args += ["--volume", str(config.volume)]
        args += cgroup_args(res.cgroup if res.cgroup is not None else cgroup)
        args += seccomp_args(config.hardening, config.seccomp_filter)
        if config.uid_map is not None:
            args += ["--uid-map", config.uid_map]
        if config.gid_map is not None:
            args += ["--gid-map", config.gid_map]
        return args

    def create(self, spec: SandboxSpec) -> ContainerSandbox:
        clock = PhaseClock()
        t0 = time.monotonic_ns()
        config, res = self._prepare(spec, clock, self._configure(spec), defer_cgroup=self._overlap)
        pipe: GoPipe | None = None
        try:
            # As a cold run's: the cgroup is made while the helper starts and clones, and the
            # helper attaches its init only after one byte on its go pipe (EOF: it gives up).
            planned = self._planned_cgroup(config, res)
            args = self._helper_args("init", config, res, spec, cgroup=planned)
            assert res.base_dir is not None
            r, w = os.pipe()
            pipe = GoPipe() if planned is not None else None
            # The helper's stderr, read only when it fails: in memory, not a file on disk to
            # create and remove (a journal update each).
            log_fd = os.memfd_create("isobench-ctr-log", os.MFD_CLOEXEC)
            spawn_ns = time.monotonic_ns()
            image = self.helper_image()
            try:
                res.monitor = subprocess.Popen(
                    [args[0], args[1], "--report-fd", str(w), *GoPipe.args_of(pipe), *args[2:]],
                    executable=image.executable,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log_fd,
                    env={},  # the init's environment: nothing of the runner's
                    pass_fds=(w, image.fd, *GoPipe.fds_of(pipe)),
                    start_new_session=True,
                )
            finally:
                os.close(w)
            if pipe is not None:
                pipe.spawned()
            self._claims.note(res, helper_pid=res.monitor.pid)
            if pipe is not None:
                self._make_cgroup(config, res, clock)
                pipe.release()
            try:
                report = parse_report(read_all(r, time.monotonic() + START_TIMEOUT_S))
                log_text = os.pread(log_fd, 65536, 0).decode(errors="replace").strip()
            finally:
                os.close(r)
                os.close(log_fd)
            if report.container_pid is not None:
                # A pidfd pins the identity: the kill at teardown, exec and the veth can never
                # reach a recycled pid (it is taken while the pid is still the helper's child).
                res.pidfd = child_pidfd(report.container_pid, res.monitor.pid)
            if report.error or not report.ready or report.container_pid is None:
                raise SandboxError(f"container {spec.name} failed to start: {self._why(report, log_text)}")
            if res.pidfd is None:
                raise SandboxError(f"container {spec.name}: its init exited as it started")
            add_helper_phases(clock, report, spawn_ns)
            self._claims.note(res, init_pid=report.container_pid)
            if config.network:
                with clock.phase("veth"):
                    res.veth = setup_veth(
                        self._links,
                        self.helper_image(),
                        report.container_pid,
                        res.pidfd,
                        res.names.veth_host,
                        res.names.veth_peer,
                        self._ctx.state_dir / "container" / "net.lock",
                    )
            now = time.monotonic_ns()
            clock.add("create", t0, now)
            clock.add("ready", now, now)
            return ContainerSandbox(spec, config, self.helper_image(), res, report.container_pid, clock)
        except BaseException:
            if pipe is not None:
                pipe.close()  # before the release reaps the helper: the EOF is what stops it
            res.release()
            raise

    @staticmethod
    def _why(report: HelperReport, log_text: str) -> str:
        if report.error:
            return report.error
        return log_text or "the helper exited without reporting; see the kernel log (dmesg)"

    def run_cold(self, spec: SandboxSpec, argv: Sequence[str], *, timeout: float = 60.0) -> ColdRun:
        """Start ``argv`` as pid 1 of a fresh container, wait for it, tear everything down.

        ``result.start_ns`` is the driver call and ``result.end_ns`` the command's exit as the
        helper saw it, so teardown is not part of the start-up figure (it is its own phase).
        The root's upper layer is volatile (overlayfs ``volatile``: fsync is not durable), since
        it is deleted when the command exits; use a sandbox for anything that measures disks.
        """
        t0 = time.monotonic_ns()
        config = self._configure(spec)
        # The upper layer of a cold run is deleted the moment it exits. In memory (a tmpfs the
        # helper mounts in the container's own mount namespace) it costs no host journal update
        # to make or remove: a dozen mkdir/rmdir/unlink of overlayfs's upper and work dirs on
        # ext4, 0.15-1 ms each here. Where it must stay on disk, overlayfs ``volatile`` still
        # spares the sync at unmount (a journal commit, ~6 ms here under load). Either way fsync
        # inside a cold run does not reach a disk: cold runs are for start-up figures.
        in_memory = _cold_upper_in_memory(config, spec)
        for _ in range(CLAIM_TRIES):
            clock = PhaseClock()
            try:
                res, result, report, spawn_ns = self._start_cold(
                    spec, argv, config, clock, in_memory=in_memory, timeout=timeout
                )
            except _NameTaken:
                continue
            break
        else:
            raise SandboxError(f"no free container name for {spec.name}; run gc")
        with clock.phase("destroy"):
            res.release()
        if res.errors:
            raise SandboxError(f"teardown of {spec.name} incomplete: {'; '.join(res.errors)}")
        add_helper_phases(clock, report, spawn_ns)
        end = report.exited_ns or result.end_ns
        if report.exec_ns is not None:
            clock.add("exec", report.exec_ns, end)
        clock.add("create", t0, report.exec_ns or end)
        clock.add("total", t0, end)
        return ColdRun(
            result=dataclasses.replace(result, start_ns=t0, end_ns=end),
            phases=tuple(sorted(clock.phases, key=lambda p: p.start_ns)),
        )

    def _start_cold(
        self,
        spec: SandboxSpec,
        argv: Sequence[str],
        config: ContainerConfig,
        clock: PhaseClock,
        *,
        in_memory: bool,
        timeout: float,
    ) -> tuple[Resources, ExecResult, HelperReport, int]:
        """One attempt of ``run_cold`` up to the command's exit (the caller tears down).

        What the host must hold before the helper's child may run is made *while* the helper starts
        and clones, on the other CPU (run_helper's ``go``): the cgroup always, and the record too
        when nothing else of the host is made (an in-memory upper layer without subordinate ids,
        the default). Until ``go`` has returned the helper holds its child before the cgroup attach,
        and a runner killed meanwhile takes both with it (parent-death signals): nothing exists for
        gc to miss. If the cgroup cannot be made, or another runner process claimed the names
        first (``_NameTaken``: the caller tries new ones), the helper stops its child and exits."""
        late_claim = self._overlap and in_memory and config.subids is None
        if late_claim:
            names = next_names(self._ctx.run_id, spec.name)
            res = Resources(names=names, links=self._links)
            base = self._ctx.work_dir / names.ident
            try:
                config = with_io_limit(config, spec, base, self._ctx.host)
            except BaseException:
                res.release()
                raise
        else:
            config, res = self._prepare(spec, clock, config, cold=True, defer_cgroup=self._overlap)
        try:
            planned = self._planned_cgroup(config, res)
            args = self._helper_args("run", config, res, spec, in_memory=in_memory, cgroup=planned)
            if not in_memory:
                args.append("--volatile")

            def go() -> None:
                if late_claim:
                    with clock.phase("overlay_dirs"):
                        claimed = self._claims.claim_names(res.names, config, make_dir=False)
                        if claimed is None:
                            raise _NameTaken(res.names.ident)
                        _, res.record, res.record_path = claimed
                        # nothing but the volume's mode (closed to other host users)
                        make_container_dirs(base, config, workdir=False, upper=False)
                if planned is not None:
                    self._make_cgroup(config, res, clock)

            spawn_ns = time.monotonic_ns()
            result, report = run_helper(
                self.helper_image(),
                args,
                list(argv),
                timeout=timeout,
                env=DEFAULT_ENV,
                stdin=None,
                go=go if late_claim or planned is not None else None,
            )
        except BaseException:
            res.release()
            raise
        return res, result, report, spawn_ns

    # ---------------------------------------------------------------------------- recovery

    def close(self) -> None:
        # Every sandbox owns its cgroup, mounts and veth, and destroy() removed them.
        if self._image is not None:
            os.close(self._image.fd)
            self._image = None

    def gc(self, run_id: str | None = None) -> list[str]:
        """Remove containers of dead runners: by record first, then anything matching by name.
        Raises :class:`GcIncomplete` naming what is still there (its records are kept)."""
        return collect_runs(self._ctx, self._links, self.cgroups, self._legacy_cgroup, run_id)

    def _legacy_cgroup(self, name: str) -> list[Path]:
        """A version 1 record's cgroup (a name under this driver's parent) in every hierarchy."""
        cg = self._open_cgroup(name)
        return [f.parent for f in cg.procs_files] if cg is not None else []

    def _open_cgroup(self, name: str) -> Cgroup | None:
        try:
            return self.cgroups().open(name)
        except IsobenchError:
            return None
