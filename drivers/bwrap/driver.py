"""The ``bwrap`` driver: bubblewrap's namespace sandbox over the suite image, as a reference point.

bubblewrap has no daemon, no long-lived container and no "exec into": every ``exec()`` is a fresh
``bwrap`` invocation (new pid/ipc/uts/cgroup and, unless spec.network, net namespaces) over the same
per-sandbox root. That root is an overlay mounted once at ``create`` (image = read-only lower layer,
upper/work/merged in ``<work_dir>/isobench-bwrap-<run>-<name>/``), so files written by one exec are
seen by the next, as in the other drivers. Debian 12's bwrap 0.8 has no ``--overlay`` option (0.9
added it), hence the driver mounts the overlay itself, which needs root.

What bwrap cannot do, and this driver therefore does not pretend to:
- no cgroup limits: spec.memory_mib, vcpus and pids_limit are not enforced (``cgroup_limits: false``
  in metadata); spec.cpuset is honoured as CPU affinity through ``taskset``;
- no veth: spec.network keeps the host network namespace and the address is 127.0.0.1;
- no stats: there is no process that outlives an exec, so ``stats()`` is empty;
- /sys is a read-only bind of the host's sysfs (bwrap cannot mount a fresh one).

Phases: ``create`` (dirs + overlay), ``ready`` (a point), ``exec`` (the first ``bwrap ... true`` round
trip, made inside create() so a broken image fails there), ``destroy``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
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
    PhaseClock,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
    started_or_cleaned,
)
from isobench.drivers.bwrap.command import (
    WORKDIR,
    BwrapSettings,
    bwrap_argv,
    parse_version,
)
from isobench.drivers.naming import ResourceNames, hostname
from isobench.drivers.options import option
from isobench.errors import SandboxError
from isobench.hostsys import Tools
from isobench.images import image_rootfs
from isobench.mounts import OverlayDirs, OverlayRoot, gc_overlay_roots
from isobench.procs import run_command

__all__ = ["BwrapDriver", "BwrapSandbox", "resource_name"]

log = logging.getLogger(__name__)

PREFIX = "isobench-bwrap-"
#: bwrap prints its own setup failures as "bwrap: <reason>" and exits 1.
_BWRAP_FAILURE = re.compile(r"^bwrap: (.+)$", re.MULTILINE)
#: First bubblewrap release with --overlay/--overlay-src.
OVERLAY_OPTION_SINCE = (0, 9, 0)


#: ``isobench-bwrap-<run>-<name>``: the sandbox's directory under the run's work dir.
NAMES = ResourceNames(PREFIX)
resource_name = NAMES.of
owned = NAMES.owned


@dataclass(frozen=True)
class BwrapOptions(DriverOptions):
    binary: str = "bwrap"
    #: Seconds any one bwrap or mount command may take.
    command_timeout: float = option(60.0, gt=0)


class BwrapSandbox(SandboxBase):
    """A per-sandbox overlay root; each exec is one bwrap invocation over it."""

    kind = "bwrap sandbox"

    def __init__(self, spec: SandboxSpec, *, base: Path, settings: BwrapSettings, clock: PhaseClock) -> None:
        # no network namespace of its own: the host's loopback reaches it
        super().__init__(spec, clock, workdir=WORKDIR, address="127.0.0.1" if spec.network else None)
        self._root = OverlayRoot(base)
        self._settings = settings

    @property
    def overlay(self) -> OverlayDirs:
        return self._root.dirs

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        """The host command line that runs ``argv`` in this sandbox."""
        return bwrap_argv(self._settings, argv, env)

    def _exec(self, req: ExecRequest) -> ExecResult:
        if not self._root.mounted:
            raise SandboxError(f"sandbox {self.name} is not set up; create it again")
        # bwrap's --die-with-parent plus run_command's process-group kill end the whole sandbox
        # on timeout or Ctrl-C.
        res = run_command(self.command(req.argv, req.env), timeout=req.timeout, stdin=req.stdin)
        if res.exit_code == 1:
            failure = _BWRAP_FAILURE.findall(res.stderr)
            if failure:
                raise SandboxError(
                    f"bwrap could not run {req.argv[0]!r} in sandbox {self.name}: {failure[-1]}"
                )
        return dataclasses.replace(res, argv=req.argv)

    def stats(self) -> SandboxStats:
        # Nothing outlives an exec and bwrap makes no cgroup: there is nothing to sample.
        return SandboxStats()

    def _teardown(self) -> list[str]:
        return self._root.destroy()

    def _start(self, lower: Path, timeout: float) -> None:
        with self._clock.phase("create"):
            self._root.make(lower, self.name, self._spec.run_id)
            (self.overlay.merged / WORKDIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self._ready_then_probe(timeout)


class BwrapDriver:
    name: ClassVar[str] = "bwrap"
    description: ClassVar[str] = (
        "reference namespace sandbox: bubblewrap per exec over the suite image (no cgroup limits)"
    )
    capabilities: ClassVar[Capabilities] = Capabilities.container(order=30)
    options_type: ClassVar[type[DriverOptions]] = BwrapOptions
    #: gc(None) leaves sandbox roots named after a live run (``ctx.sparing``) alone.
    spares_live_runs: ClassVar[bool] = True

    def __init__(self, ctx: DriverContext, tools: Tools | None = None) -> None:
        self._ctx = ctx
        self._tools = tools or Tools()
        self.opts = BwrapOptions.parse(self.name, ctx.options)
        self._binary = self.opts.binary
        self._timeout = self.opts.command_timeout
        #: Asked once per binary: availability() and metadata() both report it.
        self._version = functools.cache(self._tools.version)

    def availability(self) -> Availability:
        p = self._tools
        path = p.which(self._binary)
        details: dict[str, Any] = {
            "binary": path,
            "cgroup_limits": False,
            "note": "no cgroup limits: spec memory/vcpus/pids are not enforced; cpuset via taskset",
        }
        if path is None:
            return Availability(
                False, f"{self._binary} is not installed; install the Debian package `bubblewrap`", details
            )
        version = self._version(path)
        parsed = parse_version(version)
        details["version"] = version
        details["overlay_option"] = parsed is not None and parsed >= OVERLAY_OPTION_SINCE
        details["cpu_affinity"] = p.which("taskset") is not None
        if not self._ctx.host.is_root:
            return Availability(
                False, "the bwrap driver mounts a per-sandbox overlay and needs root; run as root", details
            )
        return Availability(True, "", details)

    def probed_capabilities(self) -> Capabilities:
        return self.capabilities

    def metadata(self) -> Mapping[str, Any]:
        path = self._tools.which(self._binary)
        return {
            "isolation": "bubblewrap",
            "bwrap_version": self._version(path) if path else None,
            "cgroup_limits": False,
            "namespaces": ["pid", "ipc", "uts", "cgroup", "mount", "network unless spec.network"],
            "user_namespace": False,
            "capabilities": "docker-default",
            "exec_model": "fresh bwrap process per exec",
            "rootfs": "overlay(image lower, per-sandbox upper) mounted once at create",
            "network": "spec.network: host netns, address 127.0.0.1; else own netns, loopback only",
            "cpu_affinity": "taskset from spec.cpuset" if self._tools.which("taskset") else "none",
            "volume": BIND_VOLUME,
        }

    def create(self, spec: SandboxSpec) -> BwrapSandbox:
        lower = image_rootfs(spec.image, self._ctx.state_dir)
        spec = spec.with_volume_resolved()
        path = self._tools.which(self._binary)
        if path is None:
            raise SandboxError(f"{self._binary} is not installed; install the Debian package `bubblewrap`")
        taskset = self._tools.which("taskset") if spec.cpuset else None
        if spec.cpuset and taskset is None:
            log.warning("taskset not found: bwrap sandbox %s runs without CPU affinity", spec.name)
        base = self._ctx.work_dir.resolve() / resource_name(spec.run_id, spec.name)
        settings = BwrapSettings(
            binary=path,
            root=OverlayDirs(base).merged,
            hostname=hostname(spec.name),
            share_net=spec.network,
            volume=spec.volume,
            cpuset=spec.cpuset,
            taskset=taskset,
        )
        sandbox = BwrapSandbox(spec, base=base, settings=settings, clock=PhaseClock())
        return started_or_cleaned(sandbox, lambda: sandbox._start(lower, self._timeout))

    def close(self) -> None:
        # Nothing is shared between this driver's sandboxes; each destroy() removed its own.
        pass

    def gc(self, run_id: str | None = None) -> list[str]:
        """Unmount and remove sandbox roots of ``run_id`` (all bwrap ones if None). bwrap processes
        need no collecting: --die-with-parent ends them with the run that started them."""
        sparing = self._ctx.sparing

        def mine(n: str) -> bool:
            return owned(n, run_id) and not sparing.spares(f"bwrap root {n}", lambda r: owned(n, r))

        return gc_overlay_roots(self._ctx.host.proc / "self" / "mountinfo", self._ctx.work_dir, mine)
