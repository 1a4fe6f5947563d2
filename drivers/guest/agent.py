"""Host side of the guest agent protocol (the guest side is vm-images/agent/agent.c).

Frames in both directions: ``b"IB"`` magic, one type byte, a big-endian u32 length, the payload.
Binary length-prefixed strings rather than JSON because the guest side is a few hundred lines of
static C with no parser, and argv/stdin/stdout may hold any bytes.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from isobench.drivers.base import ExecRequest, ExecResult
from isobench.drivers.guest.unixsock import connect_unix, recv_until
from isobench.errors import CellTimeout, SandboxError

log = logging.getLogger(__name__)

__all__ = ["AgentChannel", "AgentReady", "encode_exec", "encode_frame", "parse_ready"]

MAGIC = b"IB"
HEADER = struct.Struct(">2scI")
MAX_FRAME = 64 << 20
PORT_NAME = "org.isobench.agent.0"


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload)) + payload


def _str(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def encode_exec(argv: Sequence[str], env: Mapping[str, str] | None, cwd: str, stdin: bytes | None) -> bytes:
    if not argv:
        raise SandboxError("exec needs a non-empty argv")
    args = [a.encode() for a in argv]
    envs = [f"{k}={v}".encode() for k, v in (env or {}).items()]
    body = struct.pack(">I", len(args)) + b"".join(_str(a) for a in args)
    body += struct.pack(">I", len(envs)) + b"".join(_str(e) for e in envs)
    body += _str(cwd.encode()) + _str(stdin or b"")
    return encode_frame(b"E", body)


@dataclass(frozen=True)
class AgentReady:
    """The guest's clock readings when the agent said ready (all guest clocks, ns or seconds)."""

    monotonic_ns: int
    boottime_ns: int
    agent_start_boottime_ns: int
    init_uptime_s: float | None
    switch_uptime_s: float | None
    kernel: str
    workdir: str


def parse_ready(payload: bytes) -> AgentReady:
    kv: dict[str, str] = {}
    for line in payload.decode(errors="replace").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            kv[k] = v

    def f(key: str) -> float | None:
        try:
            return float(kv[key])
        except (KeyError, ValueError):
            return None

    try:
        return AgentReady(
            monotonic_ns=int(kv["monotonic_ns"]),
            boottime_ns=int(kv["boottime_ns"]),
            agent_start_boottime_ns=int(kv.get("agent_start_boottime_ns", "0")),
            init_uptime_s=f("init_uptime"),
            switch_uptime_s=f("switch_uptime"),
            kernel=kv.get("kernel", ""),
            workdir=kv.get("workdir", "/var/tmp/isobench"),
        )
    except (KeyError, ValueError) as err:
        raise SandboxError(f"guest agent sent a malformed ready frame: {payload[:200]!r}") from err


class AgentChannel:
    """A connected unix socket to one guest's agent port."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        # The wire protocol carries one command at a time: a second caller (a stats() read while a
        # workload command runs, a stop command while a server runs) queues here instead of
        # interleaving its frames with the first one's.
        self._busy = threading.Lock()

    @classmethod
    def connect(cls, path: str, deadline: float) -> AgentChannel:
        """Connect to qemu's listening socket, retrying until ``deadline`` (time.monotonic())."""
        return cls(connect_unix(path, deadline, what="guest agent", pause_s=0.01))

    def close(self) -> None:
        self._sock.close()

    def send(self, frame: bytes) -> None:
        try:
            self._sock.sendall(frame)
        except OSError as err:
            raise SandboxError(f"guest agent channel broke while sending: {err}") from err

    def recv(self, deadline: float) -> tuple[bytes, bytes]:
        """The next frame as (type, payload); raises TimeoutError at ``deadline``."""
        while True:
            if len(self._buf) >= HEADER.size:
                magic, kind, length = HEADER.unpack_from(self._buf)
                if magic != MAGIC or length > MAX_FRAME:
                    raise SandboxError(f"guest agent sent a corrupt frame header {self._buf[:7]!r}")
                end = HEADER.size + length
                if len(self._buf) >= end:
                    payload = self._buf[HEADER.size : end]
                    self._buf = self._buf[end:]
                    return kind, payload
            self._buf += recv_until(
                self._sock,
                deadline,
                size=1 << 20,
                broke="guest agent channel broke",
                closed="guest agent channel closed (guest died or powered off)",
            )

    def wait_ready(self, deadline: float) -> tuple[AgentReady, int]:
        """Block until the ready frame; return it and the host CLOCK_MONOTONIC ns it arrived at."""
        kind, payload = self.recv(deadline)
        now = time.monotonic_ns()
        if kind != b"R":
            raise SandboxError(f"guest agent spoke before ready: frame type {kind!r}")
        return parse_ready(payload), now

    def exec(self, req: ExecRequest, cwd: str = "") -> ExecResult:
        frame = encode_exec(req.argv, req.env, cwd, req.stdin)
        with self._busy:
            return self._run(frame, req.argv, req.timeout)

    def _run(self, frame: bytes, argv: Sequence[str], timeout: float) -> ExecResult:
        """Send one exec frame and collect its output until the exit frame (or kill at timeout)."""
        start = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        self.send(frame)
        out: list[bytes] = []
        err: list[bytes] = []
        killed = False
        while True:
            try:
                kind, payload = self.recv(deadline if not killed else deadline + 30)
            except TimeoutError:
                if killed:
                    raise SandboxError(f"guest agent did not answer after killing {argv[0]}") from None
                self.send(encode_frame(b"K"))
                killed = True
                continue
            if kind == b"O":
                out.append(payload)
            elif kind == b"e":
                err.append(payload)
            elif kind == b"F":
                raise SandboxError(f"in guest: {payload.decode(errors='replace')}")
            elif kind == b"X":
                if killed:
                    raise CellTimeout(f"{' '.join(argv)} did not finish within {timeout:.0f}s (in guest)")
                return ExecResult(
                    argv=tuple(argv),
                    exit_code=_exit_code(payload),
                    stdout=b"".join(out).decode(errors="replace"),
                    stderr=b"".join(err).decode(errors="replace"),
                    start_ns=start,
                    end_ns=time.monotonic_ns(),
                )
            else:
                log.debug("ignoring agent frame %r during exec", kind)

    def poweroff(self, deadline: float) -> bool:
        """Ask the guest to power off; True if it acknowledged."""
        try:
            self.send(encode_frame(b"P"))
            while True:
                kind, _ = self.recv(deadline)
                if kind == b"p":
                    return True
        except (TimeoutError, SandboxError):
            return False


def _exit_code(payload: bytes) -> int:
    """``exit N`` -> N; ``signal N`` -> -N (subprocess's convention)."""
    words = payload.decode(errors="replace").split()
    if len(words) >= 2 and words[0] in ("exit", "signal") and words[1].lstrip("-").isdigit():
        n = int(words[1])
        return n if words[0] == "exit" else -n
    raise SandboxError(f"guest agent sent a malformed exit frame: {payload[:100]!r}")
