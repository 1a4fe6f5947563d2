"""A qemu process the host launched itself (the ``qemu`` driver's guests, the accel probe), and
the last words of a guest's logs for error messages."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from isobench.errors import SandboxError

__all__ = ["kill_qemu", "last_line", "one_line", "spawn_qemu", "wait_exit"]


def spawn_qemu(argv: Sequence[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd`` with stdout and stderr in ``log``.

    Its own session: a terminal Ctrl-C reaches the runner, which destroys guests in order, instead
    of killing qemu under it; and :func:`kill_qemu` can kill the whole group.
    """
    with log.open("wb") as out:
        try:
            return subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise SandboxError(f"cannot run {argv[0]}: {err.strerror}") from err


def wait_exit(proc: subprocess.Popen[bytes] | None, seconds: float) -> bool:
    """Whether ``proc`` (None: nothing to wait for) exited within ``seconds``."""
    if proc is None:
        return True
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def kill_qemu(proc: subprocess.Popen[bytes], wait_s: float = 10) -> None:
    """SIGKILL the process group of a still-running ``proc`` (the group is its pid) and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait_s)


def last_line(path: Path) -> str:
    """The last non-empty line of a log (console, qemu's stderr), for one-line errors."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""


def one_line(msg: str) -> str:
    """A multi-line message (libvirt's, qemu's) folded onto one line of at most 300 characters."""
    return " / ".join(ln.strip() for ln in msg.splitlines() if ln.strip())[:300]
