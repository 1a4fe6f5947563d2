"""The guest core's host-side protocol and parsers: the agent channel against a socketpair."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from isobench.drivers.base import ExecRequest, ExecResult
from isobench.drivers.guest.agent import HEADER, AgentChannel, encode_frame, parse_ready
from isobench.errors import CellTimeout, SandboxError


def _fake_agent(sock: socket.socket, script: list[bytes]) -> threading.Thread:
    def run() -> None:
        for frame in script:
            sock.sendall(frame)
        sock.recv(1 << 16)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_agent_protocol_ready_and_exec() -> None:
    host, guest = socket.socketpair()
    ready = b"monotonic_ns=5\nboottime_ns=7\ninit_uptime=0.5\nswitch_uptime=0.6\nkernel=6.1\n"
    _fake_agent(
        guest,
        [
            encode_frame(b"R", ready),
            encode_frame(b"O", b"he"),
            encode_frame(b"e", b"oops"),
            encode_frame(b"O", b"llo"),
            encode_frame(b"X", b"exit 3 start_ns=1 end_ns=2"),
        ],
    )
    ch = AgentChannel(host)
    r, _ = ch.wait_ready(deadline=__import__("time").monotonic() + 5)
    assert (r.boottime_ns, r.init_uptime_s, r.kernel) == (7, 0.5, "6.1")
    res = ch.exec(ExecRequest(("x",), timeout=5))
    assert (res.stdout, res.stderr, res.exit_code) == ("hello", "oops", 3)


def test_agent_protocol_signal_failure_and_corruption() -> None:
    host, guest = socket.socketpair()
    _fake_agent(
        guest, [encode_frame(b"X", b"signal 9"), encode_frame(b"F", b"cannot execute nope"), b"garbage!!"]
    )
    ch = AgentChannel(host)
    assert ch.exec(ExecRequest(("x",), timeout=5)).exit_code == -9
    with pytest.raises(SandboxError, match="cannot execute nope"):
        ch.exec(ExecRequest(("nope",), timeout=5))
    with pytest.raises(SandboxError, match="corrupt"):
        ch.exec(ExecRequest(("x",), timeout=5))


def test_agent_timeout_sends_kill() -> None:
    host, guest = socket.socketpair()
    ch = AgentChannel(host)

    def agent() -> None:
        got = b""
        while b"IBK" not in got:
            got += guest.recv(4096)
        guest.sendall(encode_frame(b"X", b"signal 9"))

    threading.Thread(target=agent, daemon=True).start()
    with pytest.raises(CellTimeout):
        ch.exec(ExecRequest(("sleep", "100"), timeout=0.2))


def test_concurrent_execs_queue_instead_of_mixing_frames() -> None:
    """The agent runs one command at a time; a second caller (stats() during a workload command)
    must wait its turn, never read the first command's frames."""

    host, guest = socket.socketpair()

    def agent() -> None:
        for i in range(2):
            head = b""
            while len(head) < HEADER.size:
                head += guest.recv(HEADER.size - len(head))
            _, _, length = HEADER.unpack(head)
            body = b""
            while len(body) < length:
                body += guest.recv(length - len(body))
            guest.sendall(encode_frame(b"O", str(i).encode()))
            time.sleep(0.2)  # a second request arrives now if the channel lets it
            guest.sendall(encode_frame(b"X", f"exit {i} start_ns=1 end_ns=2".encode()))

    threading.Thread(target=agent, daemon=True).start()
    ch = AgentChannel(host)
    results: list[ExecResult] = []
    callers = [
        threading.Thread(target=lambda: results.append(ch.exec(ExecRequest(("x",), timeout=5))))
        for _ in range(2)
    ]
    for c in callers:
        c.start()
        time.sleep(0.05)
    for c in callers:
        c.join(10)
    assert sorted(r.exit_code for r in results) == [0, 1]
    assert all(r.stdout == str(r.exit_code) for r in results)


def test_malformed_ready() -> None:
    with pytest.raises(SandboxError):
        parse_ready(b"nonsense")
