"""A guest's boot as its launcher sees it: from qemu running to the agent's ready frame.

Both launchers (``vm`` through libvirt, ``qemu`` directly) end a create the same way: connect to
the agent's socket, wait for its ready frame, and turn a boot that took too long or a guest that
died on the way into one error naming the guest and the last words of its logs.
"""

from __future__ import annotations

import time
from pathlib import Path

from isobench.drivers.guest.agent import AgentChannel, AgentReady
from isobench.drivers.guest.process import last_line
from isobench.errors import SandboxError

__all__ = ["BootTimeout", "wait_for_agent"]

#: How long qemu may take to accept a connection on the agent's socket once it runs.
CONNECT_TIMEOUT_S = 10


class BootTimeout(SandboxError):
    """A guest that was not ready by its deadline: on a loaded host that is no proof it never would be."""


def wait_for_agent(
    socket_path: str,
    boot_timeout: float,
    *,
    guest: str,
    console: Path,
    qemu_log: Path | None = None,
) -> tuple[AgentChannel, AgentReady, int]:
    """The connected agent, its ready frame and the host CLOCK_MONOTONIC ns that frame arrived at.

    ``guest`` names the guest in errors; ``console`` (and ``qemu_log``, where the launcher keeps
    qemu's own output) give them their last line. Not ready within ``boot_timeout`` s is
    :class:`BootTimeout`; a guest that died first (or whose socket never answered) SandboxError.
    The channel is closed on every failure.
    """
    deadline = time.monotonic() + boot_timeout
    try:
        channel = AgentChannel.connect(socket_path, time.monotonic() + CONNECT_TIMEOUT_S)
        try:
            ready, ready_ns = channel.wait_ready(deadline)
        except BaseException:
            channel.close()
            raise
    except TimeoutError:
        raise BootTimeout(
            f"guest {guest} was not ready within {boot_timeout:.0f}s; last console line: {last_line(console)!r}"
        ) from None
    except SandboxError as err:
        said = (
            f"last console line: {last_line(console)!r}"
            if qemu_log is None
            else f"qemu said {last_line(qemu_log)!r}, console {last_line(console)!r}"
        )
        raise SandboxError(f"guest {guest} died before ready ({err}); {said}") from err
    return channel, ready, ready_ns
