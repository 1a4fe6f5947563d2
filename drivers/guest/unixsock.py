"""The two unix sockets qemu serves (the agent's virtio-serial port and QMP), seen from the host
side: connecting while qemu may not listen yet, and reading with a deadline, failures named once.
"""

from __future__ import annotations

import socket
import time

from isobench.errors import SandboxError

__all__ = ["connect_unix", "recv_until"]


def connect_unix(path: str, deadline: float, *, what: str, pause_s: float) -> socket.socket:
    """A stream connection to ``path``, retried every ``pause_s`` until ``deadline`` (time.monotonic())
    while qemu is starting and not listening yet; ``what`` names the socket in the error."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            s.connect(path)
            return s
        except OSError as err:
            s.close()
            if time.monotonic() >= deadline:
                raise SandboxError(f"cannot connect to {what} socket {path}: {err}") from None
            time.sleep(pause_s)


def recv_until(sock: socket.socket, deadline: float, *, size: int, broke: str, closed: str) -> bytes:
    """Up to ``size`` bytes, at least one; TimeoutError at ``deadline`` (time.monotonic()).
    A broken connection is SandboxError ``"<broke>: <error>"``, end of stream ``closed``."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)
    try:
        chunk = sock.recv(size)
    except TimeoutError:
        raise
    except OSError as err:
        raise SandboxError(f"{broke}: {err}") from err
    if not chunk:
        raise SandboxError(closed)
    return chunk
