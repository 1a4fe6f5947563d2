"""Running the native helper: its stdio, its report pipe, its deadline, and the phases it reports."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from isobench.drivers.base import ExecResult, PhaseClock
from isobench.drivers.container.helper import HelperImage
from isobench.drivers.container.report import HelperReport, parse_report
from isobench.errors import SandboxError
from isobench.procs import communicate, finished

__all__ = ["DEFAULT_ENV", "START_TIMEOUT_S", "GoPipe", "add_helper_phases", "read_all", "run_helper"]

#: The whole environment of a command in a container (plus the exec request's own): never the runner's.
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "TERM": "xterm",
}
START_TIMEOUT_S = 30.0


def read_all(fd: int, deadline: float) -> str:
    """Read a pipe to EOF, giving up at ``deadline`` (monotonic seconds)."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxError(f"container helper did not finish setup within {START_TIMEOUT_S:.0f}s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


def run_helper(
    image: HelperImage,
    cmd: list[str],
    argv: list[str],
    *,
    timeout: float,
    env: Mapping[str, str],
    stdin: bytes | None,
    pass_fds: tuple[int, ...] = (),
    go: Callable[[], None] | None = None,
) -> tuple[ExecResult, HelperReport]:
    """Run the helper (from its sealed image) with the command's stdio captured and its setup
    errors on a report pipe. ``env`` is the command's whole environment.

    ``go`` runs while the helper starts (its exec and clone overlap it on another CPU); the helper
    attaches its child to the cgroups only after ``go`` returned. If ``go`` raises, the helper is
    told so (EOF on its go pipe), kills its child and exits, and the exception propagates."""
    r, w = os.pipe()
    pipe = GoPipe() if go is not None else None
    start = time.monotonic_ns()
    try:
        proc = subprocess.Popen(
            [*cmd[:2], "--report-fd", str(w), *GoPipe.args_of(pipe), *cmd[2:], "--", *argv],
            executable=image.executable,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            pass_fds=(w, image.fd, *pass_fds, *GoPipe.fds_of(pipe)),
            start_new_session=True,
        )
    except OSError as err:
        os.close(r)
        os.close(w)
        if pipe is not None:
            pipe.close()
        raise SandboxError(f"cannot start container helper {cmd[0]}: {err}") from err
    os.close(w)
    if pipe is not None:
        pipe.spawned()
    try:
        if go is not None and pipe is not None:
            _go(proc, argv, go, pipe)
        # As every command (a CellTimeout naming argv on timeout, the helper stopped on every
        # error path), but drained through a pidfd and stopped the helper's way.
        out, err_out = communicate(proc, argv, stdin=stdin, timeout=timeout, kill=_killpg, drain=_drain_pidfd)
        result = finished(proc, argv, out, err_out, start)
        report = parse_report(read_all(r, time.monotonic() + 5))
    finally:
        os.close(r)
    if report.error:
        raise SandboxError(f"cannot run {argv[0]} in the container: {report.error}")
    return result, report


class GoPipe:
    """The pipe a helper started with ``--go-fd`` waits on before it attaches its child to the
    cgroups, which the driver makes meanwhile: one byte lets it go on, EOF makes it kill its child
    and exit."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()

    @staticmethod
    def args_of(pipe: GoPipe | None) -> list[str]:
        """The helper's arguments for ``pipe`` (none without one)."""
        return ["--go-fd", str(pipe._r)] if pipe is not None else []

    @staticmethod
    def fds_of(pipe: GoPipe | None) -> tuple[int, ...]:
        """The fd the helper must inherit (``pass_fds``)."""
        return (pipe._r,) if pipe is not None else ()

    def spawned(self) -> None:
        """The helper holds its copy of the read end: ours goes, so the helper sees EOF if we die."""
        os.close(self._r)
        self._r = -1

    def release(self) -> None:
        """Let the helper go on (a helper already gone has said why in its report)."""
        with contextlib.suppress(BrokenPipeError):
            os.write(self._w, b"x")
        self.close()

    def close(self) -> None:
        """Close what is still open: without the byte, the helper gives up. Idempotent."""
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)
        self._r = self._w = -1


def _go(proc: subprocess.Popen[bytes], argv: list[str], go: Callable[[], None], pipe: GoPipe) -> None:
    """Run ``go``, then release the helper; if it raises, the EOF stops the helper, which is
    reaped before the exception goes on."""
    try:
        go()
    except BaseException:
        pipe.close()
        with contextlib.suppress(Exception):
            communicate(proc, argv, stdin=None, timeout=5.0, kill=_killpg, drain=_drain_pidfd)
        raise
    pipe.release()


def _drain_pidfd(proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float) -> tuple[bytes, bytes]:
    """(stdout, stderr) of the helper, as ``Popen.communicate`` gives them, but its exit is awaited
    through a pidfd. ``Popen.wait`` polls with sleeps of 1, 2, 4 ... ms, and a helper has closed its
    pipes a moment before it can be reaped: a quarter of the cold starts and execs here slept 1 ms
    or more."""
    pidfd = os.pidfd_open(proc.pid)  # not reaped yet, so the pid is still the helper's
    try:
        return _drain(proc, pidfd, stdin, time.monotonic() + timeout)
    finally:
        os.close(pidfd)


def _drain(
    proc: subprocess.Popen[bytes], pidfd: int, stdin: bytes | None, deadline: float
) -> tuple[bytes, bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        pending = memoryview(stdin or b"")
        stdin_fd = proc.stdin.fileno() if proc.stdin is not None else -1
        if proc.stdin is not None:
            if pending:
                sel.register(stdin_fd, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        open_fds, exited = set(chunks), False
        while open_fds or not exited:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _ in sel.select(remaining):
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                elif key.fd == stdin_fd and proc.stdin is not None:
                    try:
                        pending = pending[os.write(key.fd, pending[: select.PIPE_BUF]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(key.fd)
                        proc.stdin.close()
                else:
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
                        open_fds.discard(key.fd)
    if proc.stdin is not None and not proc.stdin.closed:  # it exited without reading it all
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    out, err = (b"".join(chunks[f.fileno()]) for f in (proc.stdout, proc.stderr))
    proc.stdout.close()
    proc.stderr.close()
    proc.wait()  # it has exited: reaped at once
    return out, err


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    """Stop a helper and its process group (``communicate`` then kills what else it started and
    reaps it).

    SIGTERM first: the helper SIGKILLs its in-container child and reaps it, so no zombie of the
    container's pid namespace ends up waiting on the host's init. Then SIGKILL the whole group.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def add_helper_phases(clock: PhaseClock, report: HelperReport, spawn_ns: int) -> None:
    if report.started_ns is not None:
        clock.add("spawn", spawn_ns, report.started_ns)
    for p in report.phases:
        clock.add(p.name, p.start_ns, p.end_ns)
