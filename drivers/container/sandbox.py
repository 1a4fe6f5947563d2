"""A running container and a command run cold: what the container driver hands back."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.base import ExecRequest, ExecResult, PhaseClock, SandboxBase, SandboxSpec, SandboxStats
from isobench.drivers.container.config import ContainerConfig
from isobench.drivers.container.helper import ARGV0, HelperImage
from isobench.drivers.container.process import DEFAULT_ENV, run_helper
from isobench.drivers.container.resources import Resources, cgroup_args, seccomp_args
from isobench.errors import SandboxError
from isobench.model import PhaseTiming

__all__ = ["WORKDIR", "ColdRun", "ContainerSandbox", "make_container_dirs"]

#: Writable directory inside every container, on its overlay upper layer.
WORKDIR = "/isobench-work"


def make_container_dirs(base: Path, config: ContainerConfig, *, workdir: bool, upper: bool = True) -> None:
    """The directories of one container under its own ``base`` (made 0700 by the caller).

    ``upper`` is the container's ``/`` (its mode shows inside, so 0755), ``work`` is overlayfs's
    own (0700); ``workdir`` adds :data:`WORKDIR` on the upper layer (a sandbox's, not a cold
    run's). A volume reachable by other host users is closed to them (its contents are the
    container's). With subordinate ids the container's root owns them all, the root is mounted
    on ``merged`` (other containers share one mount point, see the driver), and ``idmap/<i>`` are
    where the helper attaches the idmapped image layers and volume.

    Every directory is a journal update to make and one to remove (~1.6 ms each on this host's
    ext4 under load), so there are only as many as needed; ``upper=False`` (a cold run whose
    helper makes them in a tmpfs of the container's own) makes none, ``base`` included.
    """
    for sub, mode in (("upper", 0o755), ("work", 0o700)) if upper else ():
        (base / sub).mkdir(mode=mode)
    owned = [base, base / "upper", base / "work"]
    if workdir:
        # The sandbox's workdir sits in the upper layer from the start: on its own storage.
        owned.append(base / "upper" / WORKDIR.lstrip("/"))
        owned[-1].mkdir()
    if config.volume is not None:
        mode = stat.S_IMODE(config.volume.stat().st_mode)
        if mode & 0o077:
            os.chmod(config.volume, mode & 0o700)
    if config.subids is None:
        return
    (base / "merged").mkdir()
    idmap = base / "idmap"
    idmap.mkdir(mode=0o700)
    owned += [base / "merged", idmap]
    for name in [*(str(i) for i in range(len(config.lowers))), "volume"]:
        (idmap / name).mkdir()
    for path in owned:
        os.chown(path, config.subids.uid_start, config.subids.gid_start)


@dataclass(frozen=True)
class ColdRun:
    """One command run cold: its result and every phase from the driver's call to teardown."""

    result: ExecResult
    phases: tuple[PhaseTiming, ...]

    @property
    def start_to_exit_s(self) -> float:
        """Driver call to the command's exit (teardown excluded)."""
        return self.result.seconds

    def phase(self, name: str) -> PhaseTiming | None:
        return next((p for p in self.phases if p.name == name), None)


class ContainerSandbox(SandboxBase):
    """A running container: a tiny init as pid 1; commands enter it with setns."""

    kind = "container"

    def __init__(
        self,
        spec: SandboxSpec,
        config: ContainerConfig,
        helper: HelperImage,
        res: Resources,
        init_pid: int,
        clock: PhaseClock,
    ) -> None:
        super().__init__(spec, clock, workdir=WORKDIR)
        self._config = config
        self._helper = helper
        self._res = res
        self._init_pid = init_pid

    @property
    def ident(self) -> str:
        """The name of its cgroup and directories (``isobench-<run>-ctr-<name>-<n>``)."""
        return self._res.names.ident

    @property
    def init_pid(self) -> int:
        """Host pid of the container's pid 1."""
        return self._init_pid

    @property
    def upper_dir(self) -> Path:
        assert self._res.base_dir is not None, "sandbox destroyed"
        return self._res.base_dir / "upper"

    @property
    def address(self) -> str | None:
        return str(self._res.veth.container_ip) if self._res.veth else None

    @property
    def host_address(self) -> str | None:
        """The host end of the veth (what the container reaches the host at)."""
        return str(self._res.veth.host_ip) if self._res.veth else None

    def _exec(self, req: ExecRequest) -> ExecResult:
        pidfd = self._res.pidfd
        if pidfd is None:
            raise SandboxError(f"container {self.name}: its init is gone")
        # By the pidfd the driver holds: a recycled pid number can never be joined.
        cmd = [ARGV0, "exec", "--ppid", str(os.getpid()), "--pidfd", str(pidfd), "--ns", self._config.ns_arg]
        cmd += cgroup_args(self._res.cgroup)
        for rl in self._config.rlimits:
            cmd += ["--rlimit", rl.arg]
        cmd += seccomp_args(self._config.hardening, self._config.seccomp_filter)
        cmd += ["--cwd", WORKDIR]
        result, _ = run_helper(
            self._helper,
            cmd,
            list(req.argv),
            timeout=req.timeout,
            env={**DEFAULT_ENV, **(req.env or {})},
            stdin=req.stdin,
            pass_fds=(pidfd,),
        )
        return result

    def stats(self) -> SandboxStats:
        cg = self._res.cgroup
        return (
            SandboxStats.from_dict(cg.stats()) if cg is not None and not self._destroyed else SandboxStats()
        )

    def _teardown(self) -> list[str]:
        self._res.release()
        return list(self._res.errors)
