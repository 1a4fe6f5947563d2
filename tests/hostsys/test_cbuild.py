"""Building small C programs: cached by source and flags, static with a fallback where allowed,
failures in the program's own error type, old builds pruned only after a week unused.

A fake ``gcc`` on PATH records its arguments and writes the output, so no compiler runs here."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from isobench.errors import DriverUnavailable, WorkloadError
from isobench.hostsys.cbuild import PRUNE_AFTER_S, CProgram, ensure_built, prune

#: Fails (with a linker-like last line) when asked for -static and FAIL_STATIC is set, or always
#: when FAIL_ALL is set; else writes the output file and logs its arguments.
FAKE_GCC = """#!/bin/sh
echo "$@" >> "$GCC_LOG"
case " $* " in *" -static "*) [ -n "$FAIL_STATIC" ] && { echo "ld: cannot find -lc" >&2; exit 1; } ;; esac
[ -n "$FAIL_ALL" ] && { echo "x.c:1: error: oops" >&2; exit 1; }
while [ $# -gt 0 ]; do [ "$1" = "-o" ] && { echo built > "$2"; chmod +x "$2"; }; shift; done
"""


@pytest.fixture
def gcc_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "gcc").write_text(FAKE_GCC)
    (bindir / "gcc").chmod(0o755)
    log = tmp_path / "gcc.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("GCC_LOG", str(log))
    return log


def program(tmp_path: Path, *, static_only: bool = True, text: str = "int main(void){return 0;}") -> CProgram:
    src = tmp_path / "p.c"
    src.write_text(text)
    return CProgram("isobench-p", src, ("-O2",), "the p probe", WorkloadError, static_only=static_only)


def test_built_once_and_cached_by_source_and_flags(tmp_path: Path, gcc_log: Path) -> None:
    prog = program(tmp_path)
    built = ensure_built(prog, tmp_path / "state")
    assert built == tmp_path / "state" / "bin" / f"isobench-p-{prog.key()}" and built.is_file()
    assert ensure_built(prog, tmp_path / "state") == built
    assert gcc_log.read_text().splitlines() == [
        f"-O2 -static -o {built.parent}/.{built.name}.{os.getpid()}.tmp {prog.source}"
    ]
    other_flags = CProgram(prog.name, prog.source, ("-O1",), prog.what, prog.error)
    keys = {prog.key(), other_flags.key()}
    edited = program(tmp_path, text="int main(void){return 1;}")
    assert len(keys | {edited.key()}) == 3
    # the older build stays: it was used just now, and another checkout may still run it
    assert ensure_built(edited, tmp_path / "state") != built and built.exists()


def test_static_falls_back_to_dynamic_only_where_allowed(
    tmp_path: Path, gcc_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_STATIC", "1")
    with pytest.raises(WorkloadError, match=r"cannot build the p probe \(ld: cannot find -lc\); install gcc"):
        ensure_built(program(tmp_path), tmp_path / "state")
    assert not list((tmp_path / "state" / "bin").glob(".*.tmp"))
    built = ensure_built(program(tmp_path, static_only=False), tmp_path / "state")
    assert [("-static" in line) for line in gcc_log.read_text().splitlines()] == [True, True, False]
    assert built.is_file()


def test_a_compile_error_is_the_programs_error(
    tmp_path: Path, gcc_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_ALL", "1")
    prog = CProgram("isobench-q", program(tmp_path).source, (), "the q helper", DriverUnavailable)
    with pytest.raises(DriverUnavailable, match=r"cannot build the q helper \(x.c:1: error: oops\)"):
        ensure_built(prog, tmp_path / "state")


def test_an_unwritable_bin_dir_is_the_programs_error(tmp_path: Path, gcc_log: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(WorkloadError, match="cannot build the p probe in"):
        ensure_built(program(tmp_path), not_a_dir)


def test_no_gcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(WorkloadError, match="the p probe needs gcc to build"):
        ensure_built(program(tmp_path), tmp_path / "state")


def test_builds_of_other_sources_are_pruned_only_when_unused_for_a_week(tmp_path: Path) -> None:
    # Two checkouts of different versions on one host share the bin dir: a fresh build of one must
    # not delete the other's build while it is in use.
    keep, recent, stale = (tmp_path / f"isobench-p-{n}" for n in ("keep", "recent", "stale"))
    another = tmp_path / "isobench-other-stale"
    for path in (keep, recent, stale, another):
        path.write_bytes(b"x")
    now = 1_000_000_000.0
    os.utime(recent, (now - 60, now - 60))
    for old in (stale, another):
        os.utime(old, (now - PRUNE_AFTER_S - 1, now - PRUNE_AFTER_S - 1))
    prune(tmp_path, "isobench-p", keep=keep, now=now)
    assert keep.exists() and recent.exists() and not stale.exists()
    assert another.exists()  # another program's builds are its own to prune


def test_musl_first_where_preferred_and_installed(
    tmp_path: Path, gcc_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # musl-gcc (a fake like gcc) is tried first, static, with the kernel's headers after musl's;
    # its key differs from the gcc build's, so installing musl rebuilds instead of reusing that.
    bindir = tmp_path / "fakebin"
    gcc_only = CProgram(
        "isobench-m", program(tmp_path).source, ("-O2",), "the m helper", DriverUnavailable, False
    )
    gcc_key = gcc_only.key()
    (bindir / "musl-gcc").write_text(FAKE_GCC)
    (bindir / "musl-gcc").chmod(0o755)
    prog = CProgram(
        "isobench-m", gcc_only.source, ("-O2",), "the m helper", DriverUnavailable, False, prefer_musl=True
    )
    assert gcc_only.key() == gcc_key and prog.key() != gcc_key
    ensure_built(prog, tmp_path / "state")
    (line,) = gcc_log.read_text().splitlines()
    assert line.startswith("-O2 -static -idirafter /usr/include -idirafter /usr/include/")
    # a failed musl build falls back to gcc, static first
    monkeypatch.setenv("FAIL_ALL", "1")
    (bindir / "gcc").write_text(FAKE_GCC.replace('[ -n "$FAIL_ALL" ]', "false"))
    edited = prog.source.with_name("e.c")
    edited.write_text("int main(void){return 2;}")
    built = ensure_built(replace(prog, source=edited), tmp_path / "state")
    assert built.is_file()
    assert [("-idirafter" in ln, "-static" in ln) for ln in gcc_log.read_text().splitlines()[1:]] == [
        (True, True),
        (False, True),
    ]
