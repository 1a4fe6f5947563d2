"""Connecting to and reading from qemu's unix sockets: retries, deadlines and the errors' words."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from isobench.drivers.guest.unixsock import connect_unix, recv_until
from isobench.errors import SandboxError


def test_no_listener_until_the_deadline_is_named(tmp_path: Path) -> None:
    path = str(tmp_path / "qmp.sock")
    with pytest.raises(SandboxError, match=re.escape(f"cannot connect to qemu's QMP socket {path}: ")):
        connect_unix(path, time.monotonic() + 0.05, what="qemu's QMP", pause_s=0.01)


def test_reads_then_times_out_then_names_a_closed_stream(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        client = connect_unix(path, time.monotonic() + 5, what="guest agent", pause_s=0.01)
        peer, _ = server.accept()

        def read(within_s: float) -> bytes:
            deadline = time.monotonic() + within_s
            return recv_until(client, deadline, size=4, broke="channel broke", closed="channel closed")

        with client, peer:
            peer.sendall(b"hello")
            assert read(5) == b"hell"
            assert read(5) == b"o"
            with pytest.raises(TimeoutError):
                read(0.02)
            peer.close()
            with pytest.raises(SandboxError, match=r"^channel closed$"):
                read(5)
