"""Test doubles: a scripted sandbox and driver, so a workload's orchestration is tested without root.

A :class:`FakeSandbox` answers each ``exec`` from a script of rules, ``(pattern, response)``: the
first rule whose regular expression is found in the command line (``" ".join(argv)``) answers. A
response is a :class:`Reply` (or a ``str``, the stdout of a successful command), an
:class:`~isobench.drivers.base.ExecResult`, or a callable taking the argv and returning either (or
raising, as a real exec may). Every call is recorded; a command no rule matches fails the test.
A :class:`FakeDriver` creates such sandboxes from one shared script and records them::

    driver = FakeDriver.like(HostDriver, script=[(r"^sysbench cpu", Reply(stdout=recorded))])
    ctx = workload_context(driver, params={"events": 500})
    measurements = list(get_workload("cpu").run(ctx))
    assert driver.commands() == [...]

Both honour the real protocols: the sandbox is a :class:`~isobench.drivers.base.SandboxBase` (one
``create`` and ``ready`` phase, an idempotent timed ``destroy``, no exec after it) and the driver a
:class:`~isobench.drivers.base.Driver` with ``capabilities`` (``like`` borrows a real driver's).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from isobench.drivers.base import (
    Availability,
    Capabilities,
    Driver,
    DriverContext,
    ExecRequest,
    ExecResult,
    OptionTypes,
    PhaseClock,
    Sandbox,
    SandboxBase,
    SandboxSpec,
    SandboxStats,
)
from isobench.workloads.base import WorkloadContext

__all__ = [
    "Call",
    "FakeDriver",
    "FakeSandbox",
    "Reply",
    "Response",
    "Rule",
    "UnscriptedExec",
    "fake_guest_image",
    "fake_tool",
    "in_turn",
    "workload_context",
]


#: What a sandbox that measures nothing reports (the host driver's and bwrap's answer).
_NO_STATS = SandboxStats()


@dataclass(frozen=True)
class Reply:
    """What a scripted command prints and exits with, after ``seconds`` (really waited)."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    seconds: float = 0.001


#: A scripted answer: a Reply, a str (stdout, exit 0), an ExecResult, or a function of the argv.
Response = Reply | str | ExecResult | Callable[[tuple[str, ...]], "Reply | str | ExecResult"]
#: A regular expression searched in ``" ".join(argv)``, and what a matching command gets.
Rule = tuple[str, Response]


@dataclass(frozen=True)
class Call:
    """One ``exec`` a fake sandbox received."""

    sandbox: str
    argv: tuple[str, ...]
    timeout: float
    env: Mapping[str, str] | None = None
    stdin: bytes | None = None

    @property
    def command(self) -> str:
        return " ".join(self.argv)


class UnscriptedExec(AssertionError):
    """A fake sandbox ran a command its script has no rule for: the test did not expect it."""


def in_turn(*responses: Response) -> Callable[[tuple[str, ...]], Reply | str | ExecResult]:
    """One response per call, in order (e.g. refused, then served); the last one repeats."""
    left = list(responses)

    def next_response(argv: tuple[str, ...]) -> Reply | str | ExecResult:
        response = left.pop(0) if len(left) > 1 else left[0]
        return response(argv) if callable(response) else response

    return next_response


def _answer(response: Response, argv: tuple[str, ...]) -> ExecResult:
    got = response(argv) if callable(response) else response
    if isinstance(got, ExecResult):
        return got
    reply = Reply(stdout=got) if isinstance(got, str) else got
    start = time.monotonic_ns()
    time.sleep(reply.seconds)  # on the real clock, so phases and outer timings stay consistent
    return ExecResult(argv, reply.exit_code, reply.stdout, reply.stderr, start, time.monotonic_ns())


class FakeSandbox(SandboxBase):
    """A sandbox that runs nothing: its execs are answered by a script and recorded."""

    kind = "fake sandbox"

    def __init__(
        self,
        spec: SandboxSpec | None = None,
        *,
        script: Sequence[Rule] = (),
        workdir: str = "/var/tmp/isobench",
        address: str | None = "10.0.0.2",
        stats: SandboxStats | Callable[[], SandboxStats] = _NO_STATS,
        calls: list[Call] | None = None,
        events: list[str] | None = None,
    ) -> None:
        clock = PhaseClock()
        with clock.phase("create"):
            spec = spec or SandboxSpec(name="fake", run_id="fake")
        now = time.monotonic_ns()
        clock.add("ready", now, now)
        # the address is given only when the spec asks for a network, as real drivers do
        super().__init__(spec, clock, workdir=workdir, address=address if spec.network else None)
        self._rules = list(script)
        self._stats = stats
        #: Every exec, in order (shared with the driver that made this sandbox, if any).
        self.calls: list[Call] = calls if calls is not None else []
        #: ``destroy <name>`` once torn down (shared with the driver's life-cycle log, if any).
        self.events: list[str] = events if events is not None else []
        self._lock = threading.Lock()

    def on(self, pattern: str, response: Response) -> FakeSandbox:
        """Add a rule after the ones already there; returns the sandbox, so rules chain."""
        self._rules.append((pattern, response))
        return self

    def commands(self) -> list[str]:
        return [c.command for c in self.calls if c.sandbox == self.name]

    def _exec(self, req: ExecRequest) -> ExecResult:
        call = Call(self.name, req.argv, req.timeout, req.env, req.stdin)
        with self._lock:  # servers exec from a background thread (the network workload)
            self.calls.append(call)
        for pattern, response in self._rules:
            if re.search(pattern, call.command):
                return _answer(response, call.argv)
        patterns = ", ".join(repr(p) for p, _ in self._rules) or "none"
        raise UnscriptedExec(f"{self.name}: no rule for {call.command!r} (rules: {patterns})")

    def stats(self) -> SandboxStats:
        return self._stats() if callable(self._stats) else self._stats

    def _teardown(self) -> list[str]:
        self.events.append(f"destroy {self.name}")
        return []


#: What a FakeDriver is unless it is made ``like`` another driver: a container that sorts last.
_FAKE_CAPABILITIES = Capabilities.container(order=1 << 20)

_counter = itertools.count()


class FakeDriver:
    """A driver whose sandboxes are :class:`FakeSandbox` es sharing one script and one call log."""

    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "a scripted test double (isobench.testing)"
    option_types: ClassVar[OptionTypes] = {}
    capabilities: ClassVar[Capabilities] = _FAKE_CAPABILITIES

    def __init__(
        self,
        ctx: DriverContext | None = None,
        *,
        script: Sequence[Rule] = (),
        metadata: Mapping[str, Any] | None = None,
        accel: str = "tcg",
        workdir: str = "/var/tmp/isobench",
        address: str | None = "10.0.0.2",
        stats: SandboxStats | Callable[[], SandboxStats] = _NO_STATS,
        events: list[str] | None = None,
    ) -> None:
        self.ctx = ctx or DriverContext(
            state_dir=Path("/nonexistent"), work_dir=Path("/nonexistent"), run_id="fake"
        )
        self.script: list[Rule] = list(script)
        self._metadata = dict(metadata or {})
        self._accel = accel
        self._workdir = workdir
        self._address = address
        self._stats = stats
        #: Every sandbox created, in order, and every exec any of them received.
        self.sandboxes: list[FakeSandbox] = []
        self.calls: list[Call] = []
        #: The life cycle, in order: ``create <sandbox>``, ``destroy <sandbox>``, ``close <driver>``;
        #: pass one list to several drivers for one timeline of a run.
        self.events: list[str] = events if events is not None else []
        self.closed = False

    @classmethod
    def like(
        cls, driver: type[Driver] | Capabilities, *, name: str | None = None, **kwargs: Any
    ) -> FakeDriver:
        """A fake with a real driver's name and capabilities (or the capabilities given)."""
        if isinstance(driver, Capabilities):
            caps, default_name = driver, cls.name
        else:
            caps, default_name = driver.capabilities, driver.name
        attrs = {"name": name or default_name, "capabilities": caps}
        sub: type[FakeDriver] = type(f"Fake_{attrs['name']}_{next(_counter)}", (cls,), attrs)
        return sub(**kwargs)

    def on(self, pattern: str, response: Response) -> FakeDriver:
        """Add a rule for every sandbox, made or to be made; returns the driver, so rules chain."""
        self.script.append((pattern, response))
        for sb in self.sandboxes:
            sb.on(pattern, response)
        return self

    def commands(self) -> list[str]:
        return [c.command for c in self.calls]

    def availability(self) -> Availability:
        return Availability(True)

    def probed_capabilities(self) -> Capabilities:
        caps = self.capabilities
        return caps.with_accel(self._accel) if caps.guest else caps

    def metadata(self) -> Mapping[str, Any]:
        return dict(self._metadata)

    def create(self, spec: SandboxSpec) -> FakeSandbox:
        sb = FakeSandbox(
            spec,
            script=self.script,
            workdir=self._workdir,
            address=self._address,
            stats=self._stats,
            calls=self.calls,
            events=self.events,
        )
        self.events.append(f"create {spec.name}")
        self.sandboxes.append(sb)
        return sb

    def gc(self, run_id: str | None = None) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True
        self.events.append(f"close {self.name}")


def workload_context(
    driver: Driver,
    *,
    spec: SandboxSpec | None = None,
    params: Mapping[str, Any] | None = None,
    quick: bool = True,
    timeout: float = 60.0,
    scratch: Path | None = None,
) -> WorkloadContext:
    """A WorkloadContext over ``driver`` (a fake, or a real one in integration tests) whose sandbox
    factory creates with the overrides applied and destroys on leaving, as the runner's does."""
    run_id = f"fake{uuid.uuid4().hex[:8]}"
    base = spec or SandboxSpec(name=f"isobench-{run_id}-{driver.name}", run_id=run_id, vcpus=1)

    @contextmanager
    def factory(**overrides: Any) -> Iterator[Sandbox]:
        sandbox = driver.create(dataclasses.replace(base, **overrides))
        try:
            yield sandbox
        finally:
            sandbox.destroy()

    return WorkloadContext(
        driver=driver,
        spec=base,
        sandbox=factory,
        quick=quick,
        params=dict(params or {}),
        timeout=timeout,
        scratch=scratch,
    )


def fake_tool(path: Path, script: str) -> str:
    """An executable ``/bin/sh`` script standing in for a host tool (qemu-img, dockerd, ...); its path."""
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def fake_guest_image(state_dir: Path, digest: str = "abc123") -> Path:
    """A built ``default`` image under ``state_dir`` as far as the guest core checks one (a kernel
    with a setup header, an initramfs, an ext4 superblock), though nothing in it boots; its root."""
    root = state_dir / "images" / f"default-{digest}"
    root.mkdir(parents=True)
    kernel = bytearray(0x400)
    kernel[0x202:0x206] = b"HdrS"
    (root / "vmlinuz").write_bytes(bytes(kernel))
    (root / "initrd.img").write_bytes(b"07070100")
    disk = bytearray(4096)
    disk[1024 + 56 : 1024 + 58] = b"\x53\xef"
    (root / "rootfs.ext4").write_bytes(bytes(disk))
    (root / ".complete").write_text("")
    return root
