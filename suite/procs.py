"""Running host processes with deadlines, killing their whole process group, and whatever else they
started, on every path."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

import psutil
from isobench.drivers.base import ExecResult
from isobench.errors import CellTimeout, SandboxError

__all__ = [
    "Drain",
    "communicate",
    "cpu_seconds",
    "descendants",
    "finished",
    "kill_tree",
    "pinned_stat",
    "run_command",
    "running",
    "split_stat",
    "stat_fields",
    "stop_all",
    "tool_version",
]

#: How long a killed command's output pipes may stay open before they are closed unread: a process
#: it started that outlived the kill (one stuck in uninterruptible I/O) holds them.
PIPE_GRACE_S = 5.0

#: How :func:`communicate` collects a process's (stdout, stderr): ``drain(proc, stdin, timeout)``.
Drain = Callable[[subprocess.Popen[bytes], bytes | None, float], tuple[bytes, bytes]]


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    cpus: Collection[int] | None = None,
    pass_fds: Sequence[int] = (),
) -> ExecResult:
    """Run ``argv`` in its own session; on timeout or interrupt the whole group is SIGKILLed.

    ``cpus``: the CPU affinity the command (and everything it starts) runs with; ``pass_fds``:
    descriptors it inherits (at the same numbers).
    """
    start = time.monotonic_ns()
    try:
        with _thread_affinity(cpus):
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
            )
    except FileNotFoundError as err:
        raise SandboxError(f"command not found: {argv[0]}") from err
    except PermissionError as err:
        raise SandboxError(f"command not executable: {argv[0]}") from err
    out, err_out = communicate(proc, argv, stdin=stdin, timeout=timeout)
    return finished(proc, argv, out, err_out, start)


def finished(
    proc: subprocess.Popen[bytes], argv: Sequence[str], out: bytes, err_out: bytes, start_ns: int
) -> ExecResult:
    """The result of ``proc``, which ran ``argv`` from ``start_ns`` until now and said ``out``/``err_out``."""
    return ExecResult(
        argv=tuple(argv),
        exit_code=proc.returncode,
        stdout=out.decode(errors="replace"),
        stderr=err_out.decode(errors="replace"),
        start_ns=start_ns,
        end_ns=time.monotonic_ns(),
    )


@contextlib.contextmanager
def _thread_affinity(cpus: Collection[int] | None) -> Iterator[None]:
    """Run the block with this thread's CPU affinity set to ``cpus``: a child forked inside inherits
    it from birth. Only the calling thread is touched (no preexec_fn, which is unsafe with threads),
    and its own affinity comes back afterwards."""
    if not cpus:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def communicate(
    proc: subprocess.Popen[bytes],
    argv: Sequence[str],
    *,
    stdin: bytes | None,
    timeout: float,
    kill: Callable[[subprocess.Popen[bytes]], None] | None = None,
    drain: Drain | None = None,
) -> tuple[bytes, bytes]:
    """(stdout, stderr) of ``proc``, started in its own session; on timeout (a CellTimeout naming
    ``argv``) or any interrupt it is stopped first (see :func:`stop_all`): by ``kill`` if given,
    else its whole process group is SIGKILLed. ``drain`` collects the output instead of
    ``Popen.communicate`` (called as ``drain(proc, stdin, timeout)``, raising
    ``subprocess.TimeoutExpired`` when time runs out)."""
    stop = kill or _kill_group
    try:
        if drain is not None:
            return drain(proc, stdin, timeout)
        return proc.communicate(input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        stop_all(proc, stop)
        raise CellTimeout(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from err
    except BaseException:
        stop_all(proc, stop)
        raise


def stop_all(proc: subprocess.Popen[bytes], stop: Callable[[subprocess.Popen[bytes]], None]) -> None:
    """Stop ``proc`` by ``stop``, then every process it had started, and reap it.

    A group kill misses a descendant that made a session of its own: fio's job processes do, and one
    that outlived its killed fio held the command's output pipes, so the reaping waited for it
    forever. The descendants are listed before ``stop`` (once their parent dies they are init's) and
    SIGKILLed after it. Pipes still open PIPE_GRACE_S later are closed unread."""
    strays = descendants(proc.pid)
    stop(proc)
    _kill(strays)
    try:
        proc.communicate(timeout=PIPE_GRACE_S)
    except subprocess.TimeoutExpired:
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        proc.wait()


def descendants(pid: int) -> list[psutil.Process]:
    """Every process ``pid`` started and that still lives (none if ``pid`` is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process it started, those in sessions of their own too."""
    strays = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _kill(strays)


def _kill(procs: Sequence[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):  # psutil checks the pid is still the process it listed
            p.kill()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def tool_version(binary: str) -> str:
    """First line of what ``<binary> --version`` prints (on stdout, else stderr), or "" if it
    cannot say (not installed, no output, no answer within 10 s)."""
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (p.stdout or p.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def split_stat(text: str) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` text after the command name, which may hold spaces and
    parentheses (field 3, the state, is index 0; field 22, the start time, index 19). Empty for a
    text that is not one."""
    _comm, closed, rest = text.rpartition(")")
    return rest.split() if closed else []


def stat_fields(pid: int, proc: Path = Path("/proc")) -> list[str] | None:
    """:func:`split_stat` of ``pid``'s stat file under ``proc``, or None if there is no such process."""
    try:
        return split_stat((proc / str(pid) / "stat").read_text()) or None
    except OSError:
        return None


def running(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie holds no resources any more)."""
    fields = stat_fields(pid, proc)
    return fields is not None and fields[0] not in ("Z", "X")


def cpu_seconds(fields: Sequence[str]) -> float | None:
    """utime + stime (all threads) from :func:`split_stat` fields, or None if they hold none."""
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError):
        return None


def pinned_stat(pid: int, proc: Path = Path("/proc")) -> tuple[int, list[str]] | None:
    """An open pidfd of ``pid`` and its ``/proc/<pid>/stat`` fields (:func:`split_stat`), read while
    the pidfd pins the process: the pidfd still signals after the read, so the fields are that
    process's, not those of a later one that took the pid number. None if there is no such
    process. The caller closes the pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        stat = (proc / str(pid) / "stat").read_text()
        signal.pidfd_send_signal(fd, 0)
    except OSError:
        os.close(fd)
        return None
    return fd, split_stat(stat)
