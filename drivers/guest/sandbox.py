"""The sandbox half both guest drivers share: a booted guest, reached through its agent.

A driver's sandbox adds only what its launcher knows: which process is the guest's qemu
(:meth:`GuestSandbox.qemu_pid`) and how to stop it (:meth:`GuestSandbox._stop`).
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from pathlib import Path

from isobench.drivers.base import ExecRequest, ExecResult, PhaseClock, SandboxBase, SandboxSpec, SandboxStats
from isobench.drivers.guest.agent import AgentChannel, AgentReady
from isobench.drivers.guest.memory import guest_used_bytes, host_memavailable_kib, qemu_process_stats
from isobench.errors import CellTimeout, SandboxError

__all__ = ["GuestSandbox"]


class GuestSandbox(SandboxBase):
    kind = "guest sandbox"

    def __init__(
        self,
        spec: SandboxSpec,
        channel: AgentChannel,
        ready: AgentReady,
        clock: PhaseClock,
        *,
        address: str | None,
        proc_root: Path,
        memavail_before_kib: int,
    ) -> None:
        super().__init__(spec, clock, workdir=ready.workdir, address=address)
        self._channel = channel
        self._proc_root = proc_root
        self._memavail_before_kib = memavail_before_kib

    @abstractmethod
    def qemu_pid(self) -> int | None:
        """The guest's qemu process on the host, or None when it is not known (any more)."""

    @abstractmethod
    def _stop(self) -> None:
        """Stop the guest and release what it holds; called once, by destroy()."""

    def _exec(self, req: ExecRequest) -> ExecResult:
        return self._channel.exec(req, cwd=self._workdir)

    def stats(self) -> SandboxStats:
        """qemu as the host sees it, the guest's own view of its memory, and the host's
        MemAvailable drop since create (see memory.py): the same figures from both drivers."""
        pid = self.qemu_pid()
        guest_ram = self._spec.memory_mib << 20
        out = {} if pid is None else qemu_process_stats(self._proc_root / str(pid), guest_ram)
        if not self._destroyed:
            with contextlib.suppress(SandboxError, CellTimeout):
                res = self._channel.exec(ExecRequest(("cat", "/proc/meminfo"), timeout=30))
                used = guest_used_bytes(res.stdout) if res.ok else None
                if used is not None:
                    out["vm.guest_used_bytes"] = used
        avail = host_memavailable_kib(self._proc_root)
        if avail is not None:
            out["vm.host_memavailable_delta_bytes"] = float((self._memavail_before_kib - avail) * 1024)
        return SandboxStats.from_dict(out)

    def _teardown(self) -> list[str]:
        # the destroy phase runs from the call until the guest holds nothing
        self._stop()
        return []
