"""Host processes with deadlines: a timeout or an interrupt kills the command's whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from isobench import procs
from isobench.errors import CellTimeout, SandboxError
from isobench.procs import run_command


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A killed child not yet reaped by its new parent still answers: wait for the reaping.
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if stat.split(") ")[-1].startswith("Z"):
            return True
        time.sleep(0.05)
    return False


def test_output_and_stdin() -> None:
    res = run_command(["cat"], timeout=30, stdin=b"hello")
    assert (res.exit_code, res.stdout, res.ok) == (0, "hello", True)


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CellTimeout, match="did not finish within"):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=2)
    assert _gone(int(pidfile.read_text()))


def test_timeout_kills_a_descendant_that_left_the_group_and_holds_the_output(tmp_path: Path) -> None:
    # fio's job processes call setsid: a group kill missed one, and reaping waited on the pipes
    # it inherited for as long as it lived (here: a 60 s sleep in a session of its own).
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(CellTimeout, match="did not finish within 3s"):
        run_command(["sh", "-c", f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & wait"], timeout=3)
    assert _gone(int(pidfile.read_text()))
    assert time.monotonic() - start < 30  # not the stray's 60 s


def test_pipes_a_survivor_holds_are_closed_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stray that outlives every kill (uninterruptible I/O) must not hold the reaping: stand one in
    # by a stray psutil is made not to list, so nothing kills it.
    proc = subprocess.Popen(
        ["sh", "-c", "setsid sleep 30 & wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    end = time.monotonic() + 10
    while not (kids := psutil.Process(proc.pid).children()) and time.monotonic() < end:
        time.sleep(0.05)
    (stray,) = kids
    monkeypatch.setattr(procs, "PIPE_GRACE_S", 0.5)
    monkeypatch.setattr(psutil.Process, "children", lambda self, recursive=False: [])
    try:
        procs.stop_all(proc, lambda p: os.killpg(p.pid, signal.SIGKILL))
        assert proc.returncode == -signal.SIGKILL
        assert proc.stdout is not None and proc.stdout.closed
        assert stray.is_running()  # it held the pipes all along
    finally:
        stray.kill()


def test_missing_command_is_a_sandbox_error() -> None:
    with pytest.raises(SandboxError, match="command not found: isobench-no-such-tool"):
        run_command(["isobench-no-such-tool"], timeout=5)


def test_communicate_collects_through_a_drain_and_stops_through_kill_on_its_timeout() -> None:
    # A runtime with its own way of waiting (the container helper's pidfd) and of stopping keeps
    # the common contract: a CellTimeout naming the command, the process stopped first.
    seen: list[str] = []

    def drain(proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float) -> tuple[bytes, bytes]:
        seen.append(f"drain {stdin!r} {timeout}")
        out, err = proc.communicate(input=stdin, timeout=timeout)
        return out.upper(), err

    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert procs.communicate(cat, ["cat"], stdin=b"hi", timeout=9, drain=drain) == (b"HI", b"")
    assert seen == ["drain b'hi' 9"]

    def slow(proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float) -> tuple[bytes, bytes]:
        raise subprocess.TimeoutExpired(proc.args, timeout)

    def kill(proc: subprocess.Popen[bytes]) -> None:
        seen.append("kill")
        proc.kill()
        proc.communicate()

    sleeper = subprocess.Popen(["sleep", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with pytest.raises(CellTimeout, match="sleep 60 did not finish within 1s"):
        procs.communicate(sleeper, ["sleep", "60"], stdin=None, timeout=1, kill=kill, drain=slow)
    assert seen[-1] == "kill" and sleeper.returncode is not None


def test_pinned_stat_reads_fields_after_a_command_name_with_parentheses(tmp_path: Path) -> None:
    pid = os.getpid()
    (tmp_path / str(pid)).mkdir()
    (tmp_path / str(pid) / "stat").write_text(f"{pid} (a) b (c) S 1 2 3\n")
    pinned = procs.pinned_stat(pid, tmp_path)
    assert pinned is not None
    fd, fields = pinned
    os.close(fd)
    assert fields == ["S", "1", "2", "3"]
    assert procs.pinned_stat(pid, tmp_path / "missing") is None  # the stat read failed: fd closed


def test_stat_fields_running_and_cpu_seconds_read_a_fake_proc_tree(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    rest = " ".join(str(i) for i in range(4, 30))  # fields 4..29: utime (14) is 14, stime (15) 15
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text(f"7 (odd ) (name) S {rest}\n")
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "stat").write_text(f"8 (zombie) Z {rest}\n")
    fields = procs.stat_fields(7, tmp_path)
    assert fields is not None and fields[0] == "S" and fields[19] == "22"
    assert procs.cpu_seconds(fields) == (14 + 15) / tick
    assert procs.running(7, tmp_path) and not procs.running(8, tmp_path) and not procs.running(9, tmp_path)
    assert procs.stat_fields(9, tmp_path) is None and procs.split_stat("no command name") == []
    assert procs.cpu_seconds(["S"]) is None


def test_tool_version_is_the_first_line_printed_on_stdout_else_stderr(tmp_path: Path) -> None:
    loud, quiet = tmp_path / "loud", tmp_path / "quiet"
    loud.write_text("#!/bin/sh\necho\necho 'loud 1.2'\necho 'built today'\n")
    quiet.write_text("#!/bin/sh\necho 'quiet 3.4' >&2\n")
    for tool in (loud, quiet):
        tool.chmod(0o755)
    assert procs.tool_version(str(loud)) == "loud 1.2"
    assert procs.tool_version(str(quiet)) == "quiet 3.4"
    assert procs.tool_version(str(tmp_path / "missing")) == ""
