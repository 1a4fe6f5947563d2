"""The end of a guest's boot both launchers share: agent connected, ready frame, one error otherwise."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from isobench.drivers.guest import boot
from isobench.drivers.guest.agent import encode_frame
from isobench.drivers.guest.boot import BootTimeout, wait_for_agent
from isobench.errors import SandboxError

READY = b"monotonic_ns=5\nboottime_ns=7\nkernel=6.1\n"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A listening agent socket whose one connection ``behave`` handles, like qemu's chardev."""
    listeners: list[socket.socket] = []

    def start(behave: Callable[[socket.socket], None]) -> str:
        path = str(tmp_path / f"agent{len(listeners)}.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        listeners.append(srv)

        def serve() -> None:
            conn, _ = srv.accept()
            behave(conn)

        threading.Thread(target=serve, daemon=True).start()
        return path

    yield start
    for srv in listeners:
        srv.close()


def _logs(tmp_path: Path) -> tuple[Path, Path]:
    console, qemu_log = tmp_path / "console.log", tmp_path / "qemu.log"
    console.write_text("Booting the kernel\nRun /init as init process\n")
    qemu_log.write_text("qemu-system-x86_64: terminating on signal 15\n")
    return console, qemu_log


def test_a_ready_guest_gives_its_channel_and_ready_frame(tmp_path: Path, agent: Callable[..., str]) -> None:
    path = agent(lambda conn: conn.sendall(encode_frame(b"R", READY)))
    console, _ = _logs(tmp_path)
    channel, ready, ready_ns = wait_for_agent(path, 5, guest="g", console=console)
    try:
        assert (ready.boottime_ns, ready.kernel) == (7, "6.1")
        assert ready_ns > 0
    finally:
        channel.close()


def test_a_guest_not_ready_in_time_is_a_boot_timeout_naming_its_console(
    tmp_path: Path, agent: Callable[..., str]
) -> None:
    held: list[socket.socket] = []
    path = agent(held.append)  # connected, never says ready
    console, _ = _logs(tmp_path)
    with pytest.raises(BootTimeout, match=r"guest g \(microvm\) was not ready within 0s; .*'Run /init"):
        wait_for_agent(path, 0.2, guest="g (microvm)", console=console)


def test_a_guest_that_dies_first_is_named_with_the_last_words_of_its_logs(
    tmp_path: Path, agent: Callable[..., str]
) -> None:
    console, qemu_log = _logs(tmp_path)
    path = agent(lambda conn: conn.close())
    with pytest.raises(SandboxError, match="died before ready") as err:
        wait_for_agent(path, 5, guest="g", console=console, qemu_log=qemu_log)
    assert not isinstance(err.value, BootTimeout)
    assert "qemu said 'qemu-system-x86_64: terminating on signal 15'" in str(err.value)
    assert "console 'Run /init as init process'" in str(err.value)
    path = agent(lambda conn: conn.close())
    with pytest.raises(SandboxError, match=r"died before ready .*; last console line: 'Run /init"):
        wait_for_agent(path, 5, guest="g", console=console)


def test_an_agent_socket_that_never_answers_is_a_death_not_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boot, "CONNECT_TIMEOUT_S", 0.05)
    console, _ = _logs(tmp_path)
    with pytest.raises(
        SandboxError, match=r"guest g died before ready \(cannot connect to guest agent"
    ) as err:
        wait_for_agent(str(tmp_path / "absent.sock"), 5, guest="g", console=console)
    assert not isinstance(err.value, BootTimeout)
