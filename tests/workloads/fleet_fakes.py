"""Fake drivers and sandboxes for the density and limits workloads: they record what was created
and destroyed, and fail on request, so cleanup on every path can be asserted without root."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import Availability, Capabilities, ExecResult, SandboxSpec, SandboxStats
from isobench.errors import SandboxError

Responder = Callable[[Sequence[str]], ExecResult]


def result(argv: Sequence[str], code: int = 0, stdout: str = "", stderr: str = "") -> ExecResult:
    now = time.monotonic_ns()
    return ExecResult(tuple(argv), code, stdout, stderr, now, now + 1_000_000)


@dataclass
class FakeSandbox:
    spec: SandboxSpec
    book: FakeDriver
    stats_value: Mapping[str, float] = field(default_factory=dict)
    destroyed: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def phases(self) -> Sequence[Any]:
        return ()

    @property
    def workdir(self) -> str:
        return "/tmp"

    @property
    def address(self) -> str | None:
        return None

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        self.book.execs.append((self.spec, tuple(argv)))
        return self.book.respond(argv)

    def stats(self) -> SandboxStats:
        return SandboxStats.from_dict(self.stats_value)

    def destroy(self) -> None:
        if not self.destroyed:
            self.destroyed = True
            with self.book.lock:
                self.book.destroyed.append(self.name)


class FakeDriver:
    name: ClassVar[str] = "container"
    description: ClassVar[str] = "fake"
    option_types: ClassVar[Mapping[str, tuple[type, ...]]] = {}

    def __init__(
        self,
        *,
        fail_at: int | None = None,
        fail_with: str = "boom",
        meta: Mapping[str, Any] | None = None,
        stats: Mapping[str, float] | None = None,
        respond: Responder | None = None,
        create_delay: float = 0.0,
        guest: bool = False,
    ) -> None:
        self.capabilities = Capabilities.vm(order=5) if guest else Capabilities.container(order=1)
        self.fail_at = fail_at
        self.fail_with = fail_with
        self.meta = dict(meta or {})
        self.stats = dict(stats or {})
        self.respond = respond or result
        self.create_delay = create_delay
        self.created: list[str] = []
        self.specs: list[SandboxSpec] = []
        self.destroyed: list[str] = []
        self.execs: list[tuple[SandboxSpec, tuple[str, ...]]] = []
        self.lock = threading.Lock()
        self.live: list[FakeSandbox] = []

    def availability(self) -> Availability:
        return Availability(True)

    def metadata(self) -> Mapping[str, Any]:
        return self.meta

    def create(self, spec: SandboxSpec) -> FakeSandbox:
        if self.create_delay:
            time.sleep(self.create_delay)
        with self.lock:
            attempt = len(self.specs) + 1
            self.specs.append(spec)
            if self.fail_at is not None and attempt >= self.fail_at:
                raise SandboxError(f"create {attempt}: {self.fail_with}")
            self.created.append(spec.name)
            sb = FakeSandbox(spec, self, self.stats)
            self.live.append(sb)
            return sb

    def gc(self, run_id: str | None = None) -> list[str]:
        return []

    def close(self) -> None:
        pass

    @property
    def leaked(self) -> list[str]:
        return [sb.name for sb in self.live if not sb.destroyed]


def fake_proc(root: Path, *, avail_kib: int = 8 << 20, busy: int = 1000) -> Path:
    """A /proc with meminfo and stat the density workload reads."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "meminfo").write_text(f"MemTotal: {16 << 20} kB\nMemAvailable: {avail_kib} kB\n")
    (root / "stat").write_text(f"cpu  {busy} 0 {busy} 100000 0 0 0 0 0 0\n")
    return root
