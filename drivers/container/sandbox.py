"""A running container and a command run cold: what the container driver hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.base import ExecRequest, ExecResult, PhaseClock, SandboxBase, SandboxSpec, SandboxStats
from isobench.drivers.container.config import ContainerConfig
from isobench.drivers.container.process import DEFAULT_ENV, run_helper
from isobench.drivers.container.resources import Resources, cgroup_args, seccomp_args
from isobench.model import PhaseTiming

__all__ = ["WORKDIR", "ColdRun", "ContainerSandbox"]

#: Writable directory inside every container, on its overlay upper layer.
WORKDIR = "/isobench-work"


@dataclass(frozen=True)
class ColdRun:
    """One command run cold: its result and every phase from the driver's call to teardown."""

    result: ExecResult
    phases: tuple[PhaseTiming, ...]

    @property
    def start_to_exit_s(self) -> float:
        """Driver call to the command's exit (teardown excluded)."""
        return (self.result.end_ns - self.result.start_ns) / 1e9

    def phase(self, name: str) -> PhaseTiming | None:
        return next((p for p in self.phases if p.name == name), None)


class ContainerSandbox(SandboxBase):
    """A running container: a tiny init as pid 1; commands enter it with setns."""

    kind = "container"

    def __init__(
        self,
        spec: SandboxSpec,
        config: ContainerConfig,
        helper: Path,
        res: Resources,
        init_pid: int,
        clock: PhaseClock,
    ) -> None:
        super().__init__(spec, clock)
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
    def workdir(self) -> str:
        return WORKDIR

    @property
    def address(self) -> str | None:
        return str(self._res.veth.container_ip) if self._res.veth else None

    @property
    def host_address(self) -> str | None:
        """The host end of the veth (what the container reaches the host at)."""
        return str(self._res.veth.host_ip) if self._res.veth else None

    def _exec(self, req: ExecRequest) -> ExecResult:
        cmd = [str(self._helper), "exec", "--pid", str(self._init_pid), "--ns", self._config.ns_arg]
        cmd += cgroup_args(self._res.cgroup)
        cmd += seccomp_args(self._config.hardening, self._config.seccomp_filter)
        cmd += ["--cwd", WORKDIR]
        result, _ = run_helper(
            cmd, list(req.argv), timeout=req.timeout, env={**DEFAULT_ENV, **(req.env or {})}, stdin=req.stdin
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
