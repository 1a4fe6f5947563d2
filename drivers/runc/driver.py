"""The ``runc`` driver: the standard OCI runtime over the suite's image, as a reference point.

Each sandbox is an OCI bundle in ``<work_dir>/isobench-runc-<run>-<name>/`` whose rootfs is an
overlay (image = read-only lower layer, upper/work/merged beside config.json), started with
``runc create`` + ``runc start`` around a long-lived ``sleep`` init so that ``exec`` is ``runc exec``.
runc keeps its state in a private ``--root`` (default /run/isobench-runc) shared by all runs, so
``gc`` can find every container this driver ever made by its id prefix.

Phases: ``create`` (bundle + overlay), ``runc_create``, ``network`` (veth, only with spec.network),
``runc_start``, ``ready`` (a point: init is running), ``exec`` (the first command round trip, a
``runc exec true`` made inside create() so a broken image fails there), then ``runc_kill``,
``runc_delete`` and the enclosing ``destroy``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    BIND_VOLUME,
    Availability,
    Capabilities,
    DriverContext,
    DriverOptions,
    ExecRequest,
    ExecResult,
    LayerStackKind,
    PhaseClock,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
    started_or_cleaned,
)
from isobench.drivers.naming import ResourceNames, hostname
from isobench.drivers.options import option
from isobench.drivers.runc import network
from isobench.drivers.runc.config import NAMESPACES, oci_config
from isobench.drivers.runc.probe import missing_controllers
from isobench.drivers.runc.stats import parse_events_stats
from isobench.errors import GcIncomplete, SandboxError
from isobench.hostsys import HostProbe, Tools
from isobench.hostsys.blockdev import disks_of
from isobench.hostsys.cgroups import cgroup_mode, open_manager
from isobench.hostsys.cgroups.common import remove_matching
from isobench.hostsys.links import Links
from isobench.images import image_rootfs
from isobench.mounts import OverlayDirs, OverlayRoot, gc_overlay_roots
from isobench.procs import run_command, running

__all__ = ["WORKDIR", "RuncDriver", "RuncSandbox", "resource_name", "runc_error"]

log = logging.getLogger(__name__)

#: Writable directory inside every runc sandbox, on the overlay (so on the sandbox's root storage).
WORKDIR = "/work"
#: The init: busybox and coreutils sleep both take this (INT_MAX seconds), unlike ``infinity``.
INIT_ARGS = ("sleep", "2147483647")
DEFAULT_STATE_ROOT = Path("/run/isobench-runc")
PREFIX = "isobench-runc-"

_RUNC_MSG = re.compile(r'level=(?:error|fatal) msg="((?:[^"\\]|\\.)*)"')


#: ``isobench-runc-<run>-<name>``: container id, cgroup, bundle dir and veth alias of a sandbox.
NAMES = ResourceNames(PREFIX)
resource_name = NAMES.of
owned = NAMES.owned


def runc_error(stderr: str) -> str:
    """The last message runc logged as an error, else the last non-empty stderr line."""
    msgs = _RUNC_MSG.findall(stderr)
    if msgs:
        return str(msgs[-1]).replace('\\"', '"')
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"


@dataclass(frozen=True)
class RuncOptions(DriverOptions):
    binary: str = "runc"
    #: runc's ``--root``: its state of every container, shared by all runs so gc finds them.
    state_root: Path = DEFAULT_STATE_ROOT
    #: Seconds any one runc command may take.
    command_timeout: float = option(60.0, gt=0)


class RuncSandbox(SandboxBase):
    """One runc container. Owns its container, cgroup (through runc), overlay, veth and bundle dir."""

    kind = "runc sandbox"

    def __init__(
        self,
        spec: SandboxSpec,
        *,
        ident: str,
        base: Path,
        runc: Sequence[str],
        clock: PhaseClock,
        host: HostProbe,
        links: Links,
        timeout: float,
    ) -> None:
        super().__init__(spec, clock, workdir=WORKDIR)
        self._ident = ident
        self._base = base
        self._root = OverlayRoot(base)
        self._runc = tuple(runc)
        self._host = host
        self._links = links
        self._timeout = timeout
        self._created = False
        self._veth: network.Veth | None = None
        self._pid: int | None = None

    # -- protocol -----------------------------------------------------------------------------

    @property
    def ident(self) -> str:
        """The runc container id (also the cgroup leaf and bundle dir name)."""
        return self._ident

    @property
    def address(self) -> str | None:
        return self._veth.sandbox_ip if self._veth is not None else None

    @property
    def overlay(self) -> OverlayDirs:
        return self._root.dirs

    @property
    def init_pid(self) -> int | None:
        return self._pid

    def _exec(self, req: ExecRequest) -> ExecResult:
        if not self._created:
            raise SandboxError(f"sandbox {self.name} is not running; create it again")
        cmd = [*self._runc, "exec", "--cwd", WORKDIR]
        for key, value in (req.env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        cmd += [self._ident, *req.argv]
        res = run_command(cmd, timeout=req.timeout, stdin=req.stdin)
        # runc reports its own failure to start the process as exit 255 plus an "exec failed" log.
        if res.exit_code == 255 and 'msg="exec failed' in res.stderr:
            raise SandboxError(
                f"cannot run {req.argv[0]!r} in runc sandbox {self.name}: {runc_error(res.stderr)}"
            )
        return dataclasses.replace(res, argv=req.argv)

    def stats(self) -> SandboxStats:
        if self._destroyed or not self._created:
            return SandboxStats()
        res = run_command([*self._runc, "events", "--stats", self._ident], timeout=self._timeout)
        if not res.ok:
            raise SandboxError(f"runc events failed for {self._ident}: {runc_error(res.stderr)}")
        return SandboxStats.from_dict(parse_events_stats(res.stdout))

    def _teardown(self) -> list[str]:
        errors: list[str] = []
        if self._created:
            try:
                self._kill_and_delete()
            except SandboxError as err:
                errors.append(str(err))
        if self._veth is not None:
            try:
                self._links.delete(self._veth.host_link)
            except SandboxError as err:
                errors.append(str(err))
        return errors + self._root.destroy()

    def _kill_and_delete(self) -> None:
        """SIGKILL the init (which ends the whole pid namespace), wait for it, then delete.

        ``runc delete --force`` on a running container does the same but polls for the exit in
        100 ms sleeps, which would make every destroy cost >= 100 ms; like containerd, kill first
        and watch the init ourselves, so the delete that follows finds a stopped container. runc
        removes the cgroups it made.
        """
        with self._clock.phase("runc_kill"):
            if self._pid is not None:
                # Fails harmlessly when the init is already gone; the wait below is the check.
                run_command([*self._runc, "kill", self._ident, "KILL"], timeout=self._timeout)
                if not _wait_gone(self._host, self._pid, self._timeout):
                    raise SandboxError(f"init {self._pid} of {self._ident} survived SIGKILL")
        with self._clock.phase("runc_delete"):
            res = run_command([*self._runc, "delete", "--force", self._ident], timeout=self._timeout)
            if not res.ok:
                raise SandboxError(f"runc delete {self._ident}: {runc_error(res.stderr)}")

    # -- creation steps (called by the driver) ----------------------------------------------------

    def _start(self, lower: Path | tuple[Path, ...], hostname: str) -> None:
        clock = self._clock
        with clock.phase("create"):
            self._root.make(lower, self.name, self._spec.run_id)
            dirs = self.overlay
            (dirs.merged / WORKDIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
            io_devices = (
                [(d.major, d.minor) for d in disks_of([dirs.upper, self._spec.volume], self._host)]
                if self._spec.io_bps is not None
                else []
            )
            config = oci_config(
                self._spec,
                rootfs=dirs.merged,
                args=INIT_ARGS,
                cgroups_path=f"/{self._ident}",
                hostname=hostname,
                io_devices=io_devices,
            )
            (self._base / "config.json").write_text(json.dumps(config, indent=1))
        with clock.phase("runc_create"):
            # Set first: a create that fails half-way may still leave state that delete clears.
            self._created = True
            pid_file = self._base / "init.pid"
            self._run_detached(
                [*self._runc, "create", "--bundle", str(self._base), "--pid-file", str(pid_file), self._ident]
            )
            self._pid = int(pid_file.read_text().strip())
        if self._spec.network:
            with clock.phase("network"):
                self._veth = network.setup_veth(self._links, self._pid, self._ident)
        with clock.phase("runc_start"):
            res = run_command([*self._runc, "start", self._ident], timeout=self._timeout)
            if not res.ok:
                raise SandboxError(f"runc start {self._ident} failed: {runc_error(res.stderr)}")
        self._ready_then_probe(self._timeout)

    def _run_detached(self, argv: Sequence[str]) -> None:
        """Run ``runc create``. Its stdio becomes the container init's, so it must not be a pipe
        we wait on (the init keeps it open forever): both go to ``init.log`` in the bundle."""
        log_path = self._base / "init.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=self._timeout)
            except BaseException as err:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if isinstance(err, subprocess.TimeoutExpired):
                    raise SandboxError(f"runc create did not finish within {self._timeout:.0f}s") from err
                raise
        if code != 0:
            text = log_path.read_text(errors="replace")
            raise SandboxError(f"runc create {self._ident} failed: {runc_error(text)}")


class RuncDriver:
    name: ClassVar[str] = "runc"
    description: ClassVar[str] = (
        "reference OCI runtime: runc (create/start/exec) over the suite image through an overlay"
    )
    capabilities: ClassVar[Capabilities] = Capabilities.container(
        order=20, io_throttle=True, cpu_quota=True, layer_stack=LayerStackKind.OVERLAY_LOWERS
    )
    options_type: ClassVar[type[DriverOptions]] = RuncOptions
    #: gc(None) leaves resources named after a live run (``ctx.sparing``) alone.
    spares_live_runs: ClassVar[bool] = True

    def __init__(self, ctx: DriverContext, tools: Tools | None = None, links: Links | None = None) -> None:
        self._ctx = ctx
        self._host = ctx.host
        self._tools = tools or Tools()
        self._links = links or Links()
        self.opts = RuncOptions.parse(self.name, ctx.options)
        self._binary = self.opts.binary
        self._state_root = self.opts.state_root
        self._timeout = self.opts.command_timeout
        #: Asked once per binary: availability() and metadata() both report it.
        self._version = functools.cache(self._tools.version)

    @property
    def state_root(self) -> Path:
        return self._state_root

    def _runc(self) -> list[str]:
        return [self._binary, "--root", str(self._state_root)]

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def availability(self) -> Availability:
        p = self._tools
        path = p.which(self._binary)
        mode = cgroup_mode(self._host)
        details: dict[str, Any] = {"binary": path, "cgroup_mode": mode, "cgroup_limits": True}
        if path is None:
            return Availability(
                False, f"{self._binary} is not installed; install the Debian package `runc`", details
            )
        details["version"] = self._version(path)
        if not self._host.is_root:
            return Availability(
                False, "the runc driver needs root (rootless runc is not used); run as root", details
            )
        missing = missing_controllers(open_manager(self._host)) if mode != "none" else ["any"]
        if missing:
            return Availability(
                False,
                f"cgroup mode {mode!r} lacks controllers {', '.join(missing)}; "
                "mount cgroup v1 controllers or enable them in cgroup2",
                details,
            )
        details["network"] = bool(p.which("ip") and p.which("nsenter"))
        return Availability(True, "", details)

    def metadata(self) -> Mapping[str, Any]:
        path = self._tools.which(self._binary)
        return {
            "isolation": "oci-runtime",
            "runtime": "runc",
            "runc_version": self._version(path) if path else None,
            "cgroup_mode": cgroup_mode(self._host),
            "cgroup_limits": True,
            "namespaces": list(NAMESPACES),
            "capabilities": "docker-default",
            "seccomp": False,
            "rootfs": "overlay(image lower, per-sandbox upper)",
            "network": f"veth /30 from {network.SUBNET}",
            "volume": BIND_VOLUME,
        }

    def create(self, spec: SandboxSpec) -> RuncSandbox:
        image = image_rootfs(spec.image, self._ctx.state_dir)
        # A spec's layer stack sits on the image, topmost first, as Docker's image layers do.
        lower = image if spec.layers is None else (*spec.layers.dirs, image)
        spec = spec.with_volume_resolved()
        ident = resource_name(spec.run_id, spec.name)
        sandbox = RuncSandbox(
            spec,
            ident=ident,
            base=self._ctx.work_dir.resolve() / ident,
            runc=self._runc(),
            clock=PhaseClock(),
            host=self._host,
            links=self._links,
            timeout=self._timeout,
        )
        host_name = hostname(spec.name)
        return started_or_cleaned(sandbox, lambda: sandbox._start(lower, hostname=host_name))

    def close(self) -> None:
        # Nothing is shared between this driver's sandboxes; each destroy() removed its own.
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        """Containers, veths, overlay roots and cgroups of ``run_id``; raises GcIncomplete naming
        the cgroups that could not be removed."""
        removed: list[str] = []
        removed += self._gc_containers(run_id)
        removed += self._gc_links(run_id)
        removed += gc_overlay_roots(
            self._host.proc / "self" / "mountinfo",
            self._ctx.work_dir,
            lambda n: self._mine(n, run_id, "overlay root"),
        )
        left: list[str] = []
        removed += self._gc_cgroups(run_id, left)
        with contextlib.suppress(OSError):  # only when empty: other runs may still own containers
            self._state_root.rmdir()
        if left:
            raise GcIncomplete(removed, left)
        return removed

    def _mine(self, name: str, run_id: str | None, what: str) -> bool:
        """Whether gc of ``run_id`` (of every run but the live ones: None) takes ``name``."""
        return owned(name, run_id) and not self._ctx.sparing.spares(
            f"{what} {name}", lambda r: owned(name, r)
        )

    def _gc_containers(self, run_id: str | None) -> list[str]:
        if not self._state_root.is_dir() or self._tools.which(self._binary) is None:
            return []
        res = run_command([*self._runc(), "list", "--format", "json"], timeout=self._timeout)
        if not res.ok:
            log.warning("runc list failed: %s", runc_error(res.stderr))
            return []
        removed = []
        for item in json.loads(res.stdout or "null") or []:
            cid = str(item.get("id", ""))
            if self._mine(cid, run_id, "runc container"):
                out = run_command([*self._runc(), "delete", "--force", cid], timeout=self._timeout)
                if out.ok:
                    removed.append(f"runc container {cid}")
                else:
                    log.warning("runc delete %s: %s", cid, runc_error(out.stderr))
        return removed

    def _gc_links(self, run_id: str | None) -> list[str]:
        if self._tools.which("ip") is None:
            return []
        try:
            gone = self._links.gc(
                network.PREFIX,
                lambda lk: (
                    network.slot_of(lk.name) is not None
                    and self._mine(lk.alias, run_id, f"veth {lk.name} of")
                ),
            )
        except SandboxError as err:
            log.warning("runc gc: cannot list links: %s", err)
            return []
        return [f"veth {name}" for name in gone]

    def _gc_cgroups(self, run_id: str | None, left: list[str] | None = None) -> list[str]:
        """runc removes its cgroups at delete; a container that never got there leaves them. Those
        that cannot be removed are appended to ``left``."""
        try:
            manager = open_manager(self._host)
        except SandboxError:
            return []
        removed, stuck = remove_matching(manager, lambda n: self._mine(n, run_id, "cgroup"))
        for why in stuck:
            log.warning("%s", why)
        if left is not None:
            left += stuck
        return removed


def _wait_gone(host: HostProbe, pid: int, timeout: float) -> bool:
    """Whether ``pid`` exits (or is a zombie: it is not our child to reap) within ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while time.monotonic() < deadline:
        if not running(pid, host.proc):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return False
