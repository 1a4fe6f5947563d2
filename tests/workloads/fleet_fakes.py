"""isobench.testing's fake driver, grown for the density and limits workloads: it creates from
several threads at once, can take time to create, and fails from a given create on, so cleanup on
every path can be asserted without root."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from isobench.drivers.base import Capabilities, SandboxSpec, SandboxStats
from isobench.errors import SandboxError
from isobench.testing import FakeDriver, FakeSandbox, Rule

CONTAINER = Capabilities.container(order=1, io_throttle=True, cpu_quota=True)
#: A container runtime that can only give whole CPUs.
WHOLE_CPUS = Capabilities.container(order=2)
GUEST = Capabilities.vm(order=5)


class FleetDriver(FakeDriver):
    def __init__(
        self,
        *,
        fail_at: int | None = None,
        fail_with: str = "boom",
        create_delay: float = 0.0,
        stats: Mapping[str, float] | Callable[[], SandboxStats] | None = None,
        script: Sequence[Rule] = (),
        **kwargs: Any,
    ) -> None:
        typed = stats if callable(stats) else SandboxStats.from_dict(stats or {})
        super().__init__(stats=typed, script=script, **kwargs)
        #: When the last create returned (time.monotonic()).
        self.last_made = 0.0
        self.fail_at = fail_at
        self.fail_with = fail_with
        self.create_delay = create_delay
        #: Every spec asked for, including the ones whose create failed.
        self.specs: list[SandboxSpec] = []
        self._create_lock = threading.Lock()

    def create(self, spec: SandboxSpec) -> FakeSandbox:
        if self.create_delay:
            time.sleep(self.create_delay)
        with self._create_lock:
            self.specs.append(spec)
            attempt = len(self.specs)
            if self.fail_at is not None and attempt >= self.fail_at:
                raise SandboxError(f"create {attempt}: {self.fail_with}")
            sb = super().create(spec)
            self.last_made = time.monotonic()
            return sb

    @property
    def created(self) -> list[str]:
        return [sb.name for sb in self.sandboxes]

    @property
    def leaked(self) -> list[str]:
        return [sb.name for sb in self.sandboxes if not sb.destroyed]


def fleet_driver(*, guest: bool = False, name: str | None = None, **kwargs: Any) -> FleetDriver:
    """A container-like fake (a CPU-time quota and disk throttling: as the container driver), or a guest."""
    caps = GUEST if guest else CONTAINER
    return FleetDriver.like(caps, name=name or ("vm" if guest else "container"), **kwargs)  # type: ignore[return-value]


def fake_proc(root: Path, *, avail_kib: int = 8 << 20, busy: int = 1000) -> Path:
    """A /proc with meminfo and stat the density workload reads."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "meminfo").write_text(f"MemTotal: {16 << 20} kB\nMemAvailable: {avail_kib} kB\n")
    (root / "stat").write_text(f"cpu  {busy} 0 {busy} 100000 0 0 0 0 0 0\n")
    return root
