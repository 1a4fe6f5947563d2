"""GuestSandbox, the half both guest sandboxes share, against a scripted agent and a fake /proc."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from isobench.drivers.base import PhaseClock, SandboxSpec
from isobench.drivers.guest.agent import HEADER, AgentChannel, AgentReady, encode_frame
from isobench.drivers.guest.sandbox import GuestSandbox
from isobench.errors import SandboxError

MEMINFO = b"MemTotal: 262144 kB\nMemFree: 200000 kB\nMemAvailable: 233472 kB\n"


def _agent(sock: socket.socket) -> None:
    """Answers every exec with /proc/meminfo, as the in-guest agent would for ``cat``."""
    while True:
        head = sock.recv(HEADER.size, socket.MSG_WAITALL)
        if len(head) < HEADER.size:
            return
        _, _, length = HEADER.unpack(head)
        sock.recv(length, socket.MSG_WAITALL)
        sock.sendall(encode_frame(b"O", MEMINFO) + encode_frame(b"X", b"exit 0"))


class _Guest(GuestSandbox):
    def __init__(self, proc_root: Path, channel: AgentChannel) -> None:
        ready = AgentReady(1, 1, 0, None, None, "6.1", "/var/tmp/isobench")
        super().__init__(
            SandboxSpec("g", "r", memory_mib=256),
            channel,
            ready,
            PhaseClock(),
            address="10.215.1.2",
            proc_root=proc_root,
            memavail_before_kib=1_048_576,
        )
        self.stops = 0

    def qemu_pid(self) -> int | None:
        return 4242

    def _stop(self) -> None:
        self.stops += 1


@pytest.fixture
def guest(tmp_path: Path) -> _Guest:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(
        "4242 (qemu-system-x86) S " + " ".join(["0"] * 10) + " 300 100 0 0\n"
    )
    (tmp_path / "meminfo").write_text("MemTotal: 4194304 kB\nMemAvailable: 786432 kB\n")
    host, agent = socket.socketpair()
    threading.Thread(target=_agent, args=(agent,), daemon=True).start()
    return _Guest(tmp_path, AgentChannel(host))


def test_stats_are_the_same_keys_for_every_guest_driver(guest: _Guest) -> None:
    assert (guest.name, guest.workdir, guest.address) == ("g", "/var/tmp/isobench", "10.215.1.2")
    assert guest.stats().as_dict() == {
        "cpu_seconds": 400 / os.sysconf("SC_CLK_TCK"),  # no smaps in the fake /proc: no qemu memory keys
        "vm.guest_used_bytes": float((262144 - 233472) * 1024),
        "vm.host_memavailable_delta_bytes": float((1_048_576 - 786432) * 1024),
    }


def test_destroy_is_idempotent_timed_and_ends_exec(guest: _Guest) -> None:
    assert guest.exec(["cat", "/proc/meminfo"], timeout=5).stdout == MEMINFO.decode()
    guest.destroy()
    guest.destroy()
    assert guest.stops == 1
    assert [p.name for p in guest.phases] == ["destroy"]
    with pytest.raises(SandboxError, match="sandbox g is destroyed"):
        guest.exec(["true"], timeout=5)
    assert guest.stats().guest_used_bytes is None  # a destroyed guest is not asked
