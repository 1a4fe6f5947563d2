"""The docker driver's wire and readers without a daemon: exec output frames, the stdin/stdout pump
and its deadline, the cgroup (v1, v2) and API stats readers, and the error a dead daemon gives."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from isobench.drivers.docker.engine import pump, read_frames
from isobench.drivers.docker.sandbox import naming_a_dead_daemon
from isobench.drivers.docker.stats import ContainerCgroup, cgroup_of, parse_api_stats, parse_proc_cgroup
from isobench.errors import CellTimeout, SandboxError

RUN = "r1"


def test_read_frames_splits_streams_and_keeps_a_partial_frame() -> None:
    def frame(stream: int, payload: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(payload)) + payload

    data = frame(1, b"out") + frame(2, b"err") + frame(1, b"more")[:6]
    frames, rest = read_frames(data)
    assert frames == [(1, b"out"), (2, b"err")]
    assert rest == frame(1, b"more")[:6]


def test_cgroup_v1_stats_from_a_fake_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text(
        "9:name=systemd:/p/c\n8:pids:/p/c\n5:cpu,cpuacct:/p/c\n4:memory:/p/c\n0::/p/c\n"
    )
    mem = tmp_path / "cg" / "memory" / "p" / "c"
    acct = tmp_path / "cg" / "cpu,cpuacct" / "p" / "c"
    pids = tmp_path / "cg" / "pids" / "p" / "c"
    for d in (mem, acct, pids):
        d.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("4096\n")
    (mem / "memory.max_usage_in_bytes").write_text("8192\n")
    (mem / "memory.limit_in_bytes").write_text("536870912\n")
    (mem / "memory.stat").write_text("rss 100\ntotal_rss 1024\ntotal_cache 0\n")
    (mem / "memory.kmem.usage_in_bytes").write_text("2048\n")
    (acct / "cpuacct.usage").write_text("1500000000\n")
    (pids / "pids.current").write_text("2\n")
    mountinfo = "".join(
        f"{i} 1 0:{i} / {tmp_path}/cg/{name} rw - cgroup cgroup rw,{opts}\n"
        for i, (name, opts) in enumerate(
            [("memory", "memory"), ("cpu,cpuacct", "cpu,cpuacct"), ("pids", "pids")], start=30
        )
    )
    (proc / "self").mkdir()
    (proc / "self" / "mountinfo").write_text(mountinfo)
    cg = cgroup_of(7, proc_root=proc)
    # The suite's own v1 reader: the container driver's figures, the same names.
    assert cg.stats() == {
        "memory_bytes": 4096.0,
        "memory_peak_bytes": 8192.0,
        "memory_rss_bytes": 1024.0,
        "memory_footprint_bytes": 1024.0 + 2048.0,
        "memory_stat.rss": 100.0,
        "oom_kills": 0.0,
        "cpu_seconds": 1.5,
        "pids": 2.0,
        "memory_limit_bytes": 536870912.0,
    }
    # An unlimited cgroup states PAGE_COUNTER_MAX pages in bytes: that is no limit.
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert "memory_limit_bytes" not in cg.stats()


def test_cgroup_v2_stats_and_a_vanished_cgroup(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    (d / "memory.current").write_text("2048\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.stat").write_text("anon 512\nfile 10\nkernel 100\n")
    (d / "cpu.stat").write_text("usage_usec 250000\nuser_usec 1\n")
    (d / "pids.current").write_text("1\n")
    assert ContainerCgroup(v2=d).stats() == {
        "memory_bytes": 2048.0,
        "memory_peak_bytes": 2048.0,  # no memory.peak before Linux 5.19: the usage now
        "memory_footprint_bytes": 622.0,
        "memory_rss_bytes": 512.0,
        "memory_stat.anon": 512.0,
        "memory_stat.file": 10.0,
        "memory_stat.kernel": 100.0,
        "oom_kills": 0.0,
        "cpu_seconds": 0.25,
        "pids": 1.0,
    }
    (d / "memory.max").write_text("1073741824\n")
    assert ContainerCgroup(v2=d).stats()["memory_limit_bytes"] == 1 << 30
    with pytest.raises(SandboxError, match="memory cgroup is gone"):
        ContainerCgroup(v2=tmp_path / "gone").stats()


def test_parse_proc_cgroup_and_api_stats() -> None:
    assert parse_proc_cgroup("4:memory:/a\n3:cpu,cpuacct:/b\n1:name=systemd:/c\n0::/d\n") == {
        "memory": "/a",
        "cpu": "/b",
        "cpuacct": "/b",
        "": "/d",
    }
    doc = {
        "memory_stats": {"usage": 10, "max_usage": 20, "stats": {"total_rss": 5}},
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}},
        "pids_stats": {"current": 1},
    }
    assert parse_api_stats(doc) == {
        "memory_bytes": 10.0,
        "memory_peak_bytes": 20.0,
        "memory_rss_bytes": 5.0,
        "cpu_seconds": 3.0,
        "pids": 1.0,
    }
    assert parse_api_stats({}) == {}


def _frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def _daemon_side(sock: socket.socket, *, read_stdin: bool, hang: bool = False) -> threading.Thread:
    """The daemon's end of an exec stream: echoes stdin as stdout (or ignores it), says bye on stderr."""

    def serve() -> None:
        got = b""
        if read_stdin:
            while chunk := sock.recv(65536):
                got += chunk
        sock.sendall(_frame(1, got or b"no input read") + _frame(2, b"bye"))
        if hang:
            time.sleep(3)
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_pump_feeds_stdin_and_splits_the_output() -> None:
    ours, theirs = socket.socketpair()
    _daemon_side(theirs, read_stdin=True)
    out = pump(ours, b"x" * 300_000, timeout=10)
    assert (len(out.stdout), out.stderr) == (300_000, b"bye")


def test_pump_does_not_block_on_input_nobody_reads() -> None:
    ours, theirs = socket.socketpair()
    _daemon_side(theirs, read_stdin=False)
    started = time.monotonic()
    out = pump(ours, b"x" * 10_000_000, timeout=10)
    assert out.stdout == b"no input read" and time.monotonic() - started < 5


def test_pump_has_a_deadline() -> None:
    ours, theirs = socket.socketpair()
    _daemon_side(theirs, read_stdin=False, hang=True)
    with pytest.raises(CellTimeout, match=r"within 0\.5s"):
        pump(ours, None, timeout=0.5)


def test_a_dead_daemon_is_named_instead_of_the_clients_error() -> None:
    refused = SandboxError("connection refused")
    dead = naming_a_dead_daemon(lambda: "dockerd exited with 1: bad config")
    with pytest.raises(SandboxError, match=r"^dockerd exited with 1: bad config$") as got, dead:
        raise refused
    assert got.value.__cause__ is refused
    alive = naming_a_dead_daemon(lambda: "")
    with pytest.raises(SandboxError, match=r"^connection refused$"), alive:  # the error as it was
        raise refused
    with pytest.raises(CellTimeout), naming_a_dead_daemon(lambda: "dead"):  # not a SandboxError
        raise CellTimeout("slow")


def _refused() -> SandboxError:
    try:
        raise SandboxError("docker exec: the daemon does not answer") from ConnectionRefusedError(
            111, "refused"
        )
    except SandboxError as err:
        return err


def test_a_daemon_that_stopped_answering_gets_a_moment_to_be_seen_dead() -> None:
    # killed, its socket refusing, its process not reaped yet: the third look sees it dead
    looks: list[float] = []

    def dying() -> str:
        looks.append(time.monotonic())
        return "dockerd exited with code -9: killed" if len(looks) >= 3 else ""

    killed = pytest.raises(SandboxError, match=r"^dockerd exited with code -9: killed$")
    with killed, naming_a_dead_daemon(dying, grace=5):
        raise _refused()
    assert len(looks) == 3
    # a daemon that stays up is waited for no longer than the grace, and its client's error stands
    looks.clear()
    start = time.monotonic()
    with pytest.raises(SandboxError, match="does not answer"), naming_a_dead_daemon(lambda: "", grace=0.2):
        raise _refused()
    assert time.monotonic() - start >= 0.2
    # an error the live daemon answered with is raised at once: one look, no wait
    with pytest.raises(SandboxError, match="no such container"), naming_a_dead_daemon(dying, grace=5):
        raise SandboxError("docker exec: no such container")
    assert len(looks) == 1
