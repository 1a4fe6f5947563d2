"""A minimal QMP client: enough to know qemu is up (the greeting) and to ask it to quit.

QMP is line-delimited JSON over the unix socket qemu listens on. Only ``qmp_capabilities`` and
``quit`` are used, so this is a few dozen lines rather than a dependency.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from isobench.drivers.guest.unixsock import connect_unix, recv_until
from isobench.errors import SandboxError

__all__ = ["QmpClient"]


class QmpClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""

    @classmethod
    def connect(cls, path: str, deadline: float) -> QmpClient:
        """Connect (retrying until qemu listens), read the greeting and negotiate capabilities."""
        client = cls(connect_unix(path, deadline, what="qemu's QMP", pause_s=0.005))
        try:
            greeting = client._read(deadline)
            if "QMP" not in greeting:
                raise SandboxError(f"qemu's QMP socket sent no greeting: {greeting!r:.200}")
            client.execute("qmp_capabilities", deadline)
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        self._sock.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._buf:
            try:
                self._buf += recv_until(
                    self._sock,
                    deadline,
                    size=65536,
                    broke="QMP connection broke",
                    closed="qemu closed the QMP connection",
                )
            except TimeoutError:
                raise SandboxError("qemu did not answer on QMP in time") from None
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError as err:
            raise SandboxError(f"qemu sent malformed QMP: {line[:200]!r}") from err
        if not isinstance(msg, dict):
            raise SandboxError(f"qemu sent malformed QMP: {line[:200]!r}")
        return msg

    def execute(self, command: str, deadline: float) -> dict[str, Any]:
        """Run ``command`` and return its ``return`` value; events in between are skipped."""
        try:
            self._sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
        except OSError as err:
            raise SandboxError(f"QMP connection broke: {err}") from err
        while True:
            msg = self._read(deadline)
            if "return" in msg:
                ret = msg["return"]
                return ret if isinstance(ret, dict) else {}
            if "error" in msg:
                raise SandboxError(f"QMP {command} failed: {msg['error'].get('desc', msg['error'])}")
