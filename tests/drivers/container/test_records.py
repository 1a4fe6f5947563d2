"""Container records (format version 2) and the gc of one record, on a fake host tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.container import ContainerDriver
from isobench.drivers.container.collect import collect
from isobench.drivers.container.state import (
    RECORD_VERSION,
    Record,
    load_records,
    planned_cgroup_paths,
    record_processes,
    records_dir,
)
from isobench.errors import GcIncomplete
from isobench.hostsys.fake import FakeIp, fake_host
from isobench.hostsys.links import Links


def test_planned_paths_name_the_parent_in_every_hierarchy(tmp_path: Path) -> None:
    host = fake_host(tmp_path, "v1", v1=("memory", "cpu,cpuacct", "pids"))
    paths = planned_cgroup_paths(host, "/outer/inner/", "isobench-r1-ctr-a-0")
    cg = tmp_path / "sys/fs/cgroup"
    assert paths == tuple(
        str(cg / h / "outer/inner/isobench-r1-ctr-a-0") for h in ("memory", "cpu,cpuacct", "pids", "systemd")
    )  # the named hierarchy too: other runtimes make cgroups there, so gc looks there
    unified = fake_host(tmp_path / "u", "unified")
    assert planned_cgroup_paths(unified, "", "x") == (str(tmp_path / "u/sys/fs/cgroup/x"),)
    # joined as text, the same as pathlib joins them, whatever slashes the parent has
    for parent in ("", "/", "a", "/a/b/", "a//b"):
        expected = (str(Path("/") / parent.strip("/") / "x"),)
        assert planned_cgroup_paths(unified, parent, "x", [Path("/")]) == expected, parent


def test_records_are_versioned_and_version_1_still_loads(tmp_path: Path) -> None:
    rec = Record("isobench-r1-ctr-a-0", "r1", 1, "5", "/w/a", cgroup_paths=("/sys/fs/cgroup/memory/p/a",))
    path = rec.write(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["version"] == RECORD_VERSION == 2 and doc["cgroup_paths"] == ["/sys/fs/cgroup/memory/p/a"]
    old = {"ident": "isobench-r0-ctr-b-1", "run_id": "r0", "owner_pid": 1, "owner_start": "", "dir": "/w/b"}
    (records_dir(tmp_path) / "old.json").write_text(json.dumps({**old, "cgroup": "isobench-r0-ctr-b-1"}))
    loaded = {r.ident: r for _, r in load_records(tmp_path)}
    assert loaded[rec.ident] == rec
    assert loaded["isobench-r0-ctr-b-1"].version == 1 and loaded["isobench-r0-ctr-b-1"].cgroup_paths == ()
    assert not list(records_dir(tmp_path).glob("*.tmp")) and not list(records_dir(tmp_path).glob(".*"))


def _dead_record(tmp_path: Path, host_root: Path, parent: str) -> tuple[Record, Path]:
    host = fake_host(host_root, "v1", v1=("memory", "pids"))
    ident = "isobench-r1-ctr-a-0"
    paths = planned_cgroup_paths(host, parent, ident)
    for p in paths:
        Path(p).mkdir(parents=True)
    base = tmp_path / "work" / ident
    (base / "upper").mkdir(parents=True)
    # owner pid 1 with a start time it never had: a dead runner
    rec = Record(ident, "r1", 1, "never", str(base), cgroup=ident, cgroup_paths=paths)
    return rec, rec.write(tmp_path / "state")


def test_gc_removes_a_cgroup_made_under_a_parent(tmp_path: Path) -> None:
    # The bug this replaced: the record held only the name, and gc looked for it at the root.
    rec, path = _dead_record(tmp_path, tmp_path / "host", "isobench-parent/nested")
    host = fake_host(tmp_path / "host", "v1", v1=("memory", "pids"))
    removed, left = collect(rec, path, host, Links(FakeIp()), lambda _n: [])
    assert left == []
    assert all(not Path(p).exists() for p in rec.cgroup_paths)
    assert (tmp_path / "host/sys/fs/cgroup/memory/isobench-parent/nested").is_dir()  # the parent is not ours
    assert not Path(rec.dir).exists() and not path.exists()
    assert {f"cgroup {p}" for p in rec.cgroup_paths} <= set(removed)


def test_a_failed_removal_keeps_the_record_and_says_what_is_left(tmp_path: Path) -> None:
    rec, path = _dead_record(tmp_path, tmp_path / "host", "p")
    host = fake_host(tmp_path / "host", "v1", v1=("memory", "pids"))
    stuck = Path(rec.cgroup_paths[0])
    (stuck / "child-file").write_text("x")  # a plain directory with a file: rmdir fails (ENOTEMPTY)
    _, left = collect(rec, path, host, Links(FakeIp()), lambda _n: [])
    assert f"{rec.ident}: cgroup {stuck}" in left
    assert left[-1] == f"{rec.ident}: record kept at {path}"
    assert path.exists()
    driver = ContainerDriver(DriverContext(tmp_path / "state", tmp_path / "work", "gc", host=host))
    with pytest.raises(GcIncomplete) as err:
        driver.gc("r1")
    assert f"{rec.ident}: cgroup {stuck}" in err.value.leftovers
    (stuck / "child-file").unlink()
    driver.gc("r1")
    assert not path.exists() and not stuck.exists()


def test_record_processes_finds_the_helper_and_its_session_without_a_pid(tmp_path: Path) -> None:
    base = tmp_path / "isobench-r1-ctr-a-0"
    (base / "upper").mkdir(parents=True)
    # A stand-in for the helper: a session leader whose command line names the container's dir,
    # with a child in its session (the container's init before it is ready).
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    helper = subprocess.Popen([sys.executable, "-c", script, f"--upper={base}/upper"], start_new_session=True)
    try:
        rec = Record("isobench-r1-ctr-a-0", "r1", 1, "never", str(base))
        deadline = time.monotonic() + 10
        while len(found := record_processes(rec)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert helper.pid in found and len(found) == 2
        assert all(os.getsid(p) == helper.pid for p in found)
    finally:
        os.killpg(helper.pid, 9)
        helper.wait()


def test_a_record_is_replaced_whole_without_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No fsync (the argument is in write_record's docstring): a start must not force a journal commit.
    def no_fsync(fd: int) -> None:
        raise AssertionError("a record write must not fsync")

    monkeypatch.setattr(os, "fsync", no_fsync)
    rec = Record(ident="isobench-r1-ctr-a-0", run_id="r1", owner_pid=1, owner_start="2", dir="/w/a")
    path = rec.write(tmp_path)  # makes the records dir on first use
    assert path.parent == records_dir(tmp_path)
    later = Record(**{**rec.__dict__, "init_pid": 42, "init_start": "7"})
    assert later.write(tmp_path) == path
    assert [r for _, r in load_records(tmp_path)] == [later]
    assert os.listdir(path.parent) == [path.name]  # no temporary file left beside it


def test_an_exclusive_record_write_claims_the_name(tmp_path: Path) -> None:
    rec = Record(ident="isobench-r1-ctr-a-0", run_id="r1", owner_pid=1, owner_start="2", dir="/w/a")
    path = rec.write(tmp_path, exclusive=True)
    other = Record(**{**rec.__dict__, "owner_pid": 3})
    with pytest.raises(FileExistsError):
        other.write(tmp_path, exclusive=True)  # another runner process wanting the same name
    assert [r for _, r in load_records(tmp_path)] == [rec]
    assert os.listdir(path.parent) == [path.name]
