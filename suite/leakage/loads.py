"""Host-side loads for correlation probes, run as a child process the host kills afterwards.

``python -m isobench.leakage.loads KIND START PERIOD PERIODS DIR`` follows the on/off schedule of a
:class:`~isobench.leakage.series.LoadPattern` on CLOCK_BOOTTIME (the clock a container's
/proc/uptime shows), so the child needs no signal from the parent to switch. Every worker also
stops by itself at the end of the schedule; the parent kills the whole process group regardless.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

__all__ = ["LOAD_KINDS", "LoadKind", "running_load"]

LoadKind = Literal["cpu", "memory", "disk", "files", "ipi", "net", "fork"]
LOAD_KINDS: tuple[LoadKind, ...] = ("cpu", "memory", "disk", "files", "ipi", "net", "fork")

#: Sizes chosen to stand well above the background noise of a busy 2-core host, yet stay small.
MEMORY_BYTES = 256 << 20
PAGE = 4096
OPEN_FILES = 4000
DISK_REGION = 32 << 20
DISK_BLOCK = 1 << 20


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _phase(start: float, period: float, periods: int) -> tuple[bool, float] | None:
    """(on?, seconds until the phase ends) now, or None once the schedule is over."""
    t = _now() - start
    if t < 0:
        return False, -t
    k = int(t // period)
    if k >= periods:
        return None
    return k % 2 == 1, (k + 1) * period - t


def _follow(
    start: float, period: float, periods: int, on: Callable[[float], None], off: Callable[[], None]
) -> None:
    """Call ``on(deadline)`` during on-phases (it returns at the deadline) and ``off()`` entering off."""
    was_on = False
    while (ph := _phase(start, period, periods)) is not None:
        is_on, left = ph
        if is_on:
            on(_now() + left)
            was_on = True
        else:
            if was_on:
                off()
                was_on = False
            time.sleep(left)
    if was_on:
        off()


def _spin(deadline: float) -> None:
    while _now() < deadline:
        pass


def _fork_workers(n: int, body: Callable[[int], None]) -> None:
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                body(i)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def _cpu(start: float, period: float, periods: int, _dir: Path) -> None:
    # Two spinners per CPU: the runnable count jumps well above a busy host's background, and a
    # guest's vCPU threads on any of these CPUs must wait (steal time).
    cpus = sorted(os.sched_getaffinity(0))

    def worker(i: int) -> None:
        os.sched_setaffinity(0, {cpus[i % len(cpus)]})
        _follow(start, period, periods, _spin, lambda: None)

    _fork_workers(2 * len(cpus), worker)


def _memory(start: float, period: float, periods: int, _dir: Path) -> None:
    # One mapping, faulted in on "on" and dropped with MADV_DONTNEED on "off". Transparent huge pages
    # (where allowed) make the faults cheap enough for quarter-second periods even in a nested VM.
    buf = mmap.mmap(-1, MEMORY_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError, AttributeError):
        buf.madvise(mmap.MADV_HUGEPAGE)
    resident = False

    def on(deadline: float) -> None:
        nonlocal resident
        if not resident:
            for off in range(0, MEMORY_BYTES, PAGE):
                buf[off] = 1
            resident = True
        time.sleep(max(0.0, deadline - _now()))

    def off() -> None:
        nonlocal resident
        buf.madvise(mmap.MADV_DONTNEED)
        resident = False

    # The first fault-in of fresh pages is several times slower than later ones: do it before the
    # schedule starts (the lead time covers it) so every "on" phase looks alike.
    on(_now())
    off()
    try:
        _follow(start, period, periods, on, off)
    finally:
        buf.close()


def _disk(start: float, period: float, periods: int, dir_: Path) -> None:
    path = dir_ / "isobench-leak-disk.bin"
    block = os.urandom(DISK_BLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    pos = 0

    def on(deadline: float) -> None:
        nonlocal pos
        while _now() < deadline:
            os.pwrite(fd, block, pos)
            pos = (pos + DISK_BLOCK) % DISK_REGION
            os.fdatasync(fd)

    try:
        _follow(start, period, periods, on, lambda: None)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _files(start: float, period: float, periods: int, _dir: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    fds: list[int] = []

    def on(deadline: float) -> None:
        if not fds:
            # Each open() allocates a struct file, which is what /proc/sys/fs/file-nr counts.
            with contextlib.suppress(OSError):
                for _ in range(OPEN_FILES):
                    fds.append(os.open("/dev/null", os.O_RDONLY))
        time.sleep(max(0.0, deadline - _now()))

    def off() -> None:
        for fd in fds:
            os.close(fd)
        fds.clear()

    _follow(start, period, periods, on, off)


def _ipi(start: float, period: float, periods: int, _dir: Path) -> None:
    """Two processes on different CPUs bounce a byte: every wake-up is a reschedule IPI."""
    cpus = sorted(os.sched_getaffinity(0))
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setaffinity(0, {cpus[-1]})
            os.close(a_w)
            os.close(b_r)
            while os.read(a_r, 1) == b"x":
                os.write(b_w, b"x")
        finally:
            os._exit(0)
    os.sched_setaffinity(0, {cpus[0]})
    os.close(a_r)
    os.close(b_w)

    def on(deadline: float) -> None:
        while _now() < deadline:
            for _ in range(64):
                os.write(a_w, b"x")
                os.read(b_r, 1)

    try:
        _follow(start, period, periods, on, lambda: None)
    finally:
        os.write(a_w, b"q")
        os.waitpid(pid, 0)


def _net(start: float, period: float, periods: int, _dir: Path) -> None:
    """UDP datagrams over loopback: each delivery runs the NET_RX softirq."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = rx.getsockname()
    payload = b"\0" * 64

    def on(deadline: float) -> None:
        while _now() < deadline:
            for _ in range(64):
                tx.sendto(payload, addr)
            # Drain so the socket never fills and every datagram is really delivered.
            with contextlib.suppress(BlockingIOError):
                while True:
                    rx.recv(2048)

    try:
        _follow(start, period, periods, on, lambda: None)
    finally:
        tx.close()
        rx.close()


def _fork(start: float, period: float, periods: int, _dir: Path) -> None:
    """Short-lived children: each takes the next pid of the host's pid namespace (ns_last_pid)."""

    def on(deadline: float) -> None:
        while _now() < deadline:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)

    _follow(start, period, periods, on, lambda: None)


_KINDS: dict[str, Callable[[float, float, int, Path], None]] = {
    "cpu": _cpu,
    "memory": _memory,
    "disk": _disk,
    "files": _files,
    "ipi": _ipi,
    "net": _net,
    "fork": _fork,
}


# Not ``-m``: the package's __init__ already imports this module, which runpy warns about.
_ENTRY = "import sys; from isobench.leakage.loads import main; sys.exit(main(sys.argv[1:]))"


@contextlib.contextmanager
def running_load(kind: LoadKind, start: float, period: float, periods: int, dir_: Path) -> Iterator[None]:
    """Run the load in its own session for the block; its whole process group dies on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENTRY, kind, repr(start), repr(period), str(periods), str(dir_)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        (dir_ / "isobench-leak-disk.bin").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    kind, start, period, periods, dir_ = argv
    end = float(start) + float(period) * int(periods)
    # Belt and braces: even an orphaned child cannot outlive its schedule by more than a few seconds.
    signal.alarm(max(1, int(end - _now()) + 5))
    _KINDS[kind](float(start), float(period), int(periods), Path(dir_))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
