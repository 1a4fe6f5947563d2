"""The docker driver's slot under faults, for real: a runner SIGKILLed while its containers run
leaves its daemon's shims behind, and they must not keep the slot (nor its bridge, mounts and exec
root) from gc; and ``gc --all`` next to a live run clears a killed run's daemon and spares the live
one's, which then finishes its cells."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faultrun import run_args
from isobench.drivers.docker import DockerDriver
from isobench.drivers.docker.daemon import DaemonRecord, _slot_processes, read_record
from isobench.drivers.docker.names import Slot, slot_is_free
from isobench.gc import gc
from leftovers import docker_slots_of, run_ids_in


def _wait_for(
    what: str, cond: Callable[[], object], proc: subprocess.Popen[bytes], timeout: float = 180
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.01)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def _daemon_of(state: Path, out: Path) -> Callable[[], DaemonRecord | None]:
    """The daemon record of the one run writing into ``out``, once its daemon answered."""

    def find() -> DaemonRecord | None:
        for rid in run_ids_in(state, out):
            record = read_record(state / "runs" / rid / "work" / "docker" / "daemon.json")
            if record is not None and record.pid is not None:
                return record
        return None

    return find


def _slot(record: object) -> Slot:
    assert isinstance(record, DaemonRecord)
    return record.slot_paths()


def _samples(out: Path) -> int:
    n = 0
    for journal in out.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            with contextlib.suppress(ValueError):
                n += json.loads(line).get("type") == "sample"
    return n


def _docker_run(
    state: Path, out: Path, log: Path, *, repetitions: int, seed: int = 1
) -> subprocess.Popen[bytes]:
    with log.open("w") as f:
        return subprocess.Popen(
            run_args(state, out, drivers="docker", repetitions=repetitions, seed=seed),
            stdout=f,
            stderr=subprocess.STDOUT,
        )


def _running(pid: int) -> bool:
    """Not exited (a zombie's command line is empty)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def _shims(slot: Slot) -> list[int]:
    return [pid for pid, what in _slot_processes(slot) if what == "containerd shim"]


def _stop_beside_a_shim(proc: subprocess.Popen[bytes], slot: Slot) -> None:
    """Stop the runner (SIGSTOP, the runner alone) at a moment one of its containers runs.

    A container of the start-up workload lives until the runner removes it: a few hundred
    milliseconds. Stopped, the runner removes none, so the shim seen here is there when the daemon
    is killed; a removal it asked for just before it stopped is given a moment to finish, and then
    the shims are looked for again (none left: the runner goes on to its next container)."""
    for _ in range(20):
        _wait_for("a running container (a containerd shim)", lambda: _shims(slot), proc)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        if _shims(slot):
            return
        proc.send_signal(signal.SIGCONT)
    raise AssertionError("no container of the run kept running while its runner was stopped")


def test_a_runner_killed_while_its_containers_run_frees_its_slot_and_gc_clears_it(
    faults_state: Path, tmp_path: Path, check_clean: Callable[..., list[str]]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = _docker_run(faults_state, out, tmp_path / "run.log", repetitions=5)
    try:
        record = _wait_for("a private dockerd", _daemon_of(faults_state, out), proc)
        slot = _slot(record)
        _stop_beside_a_shim(proc, slot)
        # A crash (or the OOM killer) of the daemon and its runner: containerd goes with dockerd
        # (a parent-death signal), its shims do not. (The runner killed alone, the parent-death
        # signal gives dockerd a SIGTERM, whose shutdown usually takes the shims along.)
        assert isinstance(record, DaemonRecord) and record.pid is not None
        os.kill(record.pid, signal.SIGKILL)
    finally:
        proc.kill()  # the runner only, as a crash would (SIGKILL ends a stopped process too)
        proc.wait()
    runs = run_ids_in(faults_state, out)
    slots = docker_slots_of(faults_state, runs)
    deadline = time.monotonic() + 30
    while _running(record.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    shims = _shims(slot)
    print(f"slot {slot.index}: {len(shims)} shim(s) outlived the daemon: {shims}")
    assert shims, "no shim outlived its daemon: the moment this test is about did not happen"
    assert slot_is_free(slot), f"slot {slot.index} is still held once its runner and daemon died"
    report = gc(faults_state)
    assert report.clean, (report.leftovers, report.errors)
    assert check_clean(runs, slots) == []
    assert not slot.exec_root.exists() and not Path("/sys/class/net", slot.bridge).exists()


def test_gc_all_clears_a_killed_run_and_spares_a_live_one(
    faults_state: Path, tmp_path: Path, check_clean: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep is the docker driver's alone: this host is shared with test processes that make
    # runc containers, bwrap roots and guests without registering as runs, which a sweep of those
    # drivers could not tell from leftovers (gc's own sparing of each driver is unit-tested).
    import isobench.gc as gcmod

    monkeypatch.setattr(gcmod, "all_drivers", lambda: {"docker": DockerDriver})
    live_out, dead_out = tmp_path / "live", tmp_path / "dead"
    live_out.mkdir()
    dead_out.mkdir()
    live_log, dead_log = tmp_path / "live.log", tmp_path / "dead.log"
    live = _docker_run(faults_state, live_out, live_log, repetitions=2, seed=3)
    try:
        live_slot = _slot(_wait_for("the live run's dockerd", _daemon_of(faults_state, live_out), live))
        _wait_for("the live run's first sample", lambda: _samples(live_out) > 0, live)
        # Kept live, and still, while the other run is killed and gc sweeps: a stopped runner
        # holds its lock, its registry entry and its daemon (which keeps running).
        live.send_signal(signal.SIGSTOP)
        dead = _docker_run(faults_state, dead_out, dead_log, repetitions=5, seed=4)
        try:
            dead_slot = _slot(_wait_for("the killed run's dockerd", _daemon_of(faults_state, dead_out), dead))
            _wait_for("the killed run's first sample", lambda: _samples(dead_out) > 0, dead)
        finally:
            dead.kill()
            dead.wait()
        dead_runs = run_ids_in(faults_state, dead_out)
        dead_slots = docker_slots_of(faults_state, dead_runs)
        [live_id] = [p.name for p in live_out.iterdir() if p.is_dir()]
        t0 = time.monotonic()
        report = gc(faults_state, sweep_all=True, scratch_root=tmp_path / "vartmp")
        took = time.monotonic() - t0
        print(
            f"gc --all {took:.1f} s: {len(report.removed)} removed; spared {report.spared}; kept {report.kept}"
        )
        assert report.clean, (report.leftovers, report.errors)
        assert check_clean(dead_runs, dead_slots) == []
        assert not dead_slot.exec_root.exists() and not Path("/sys/class/net", dead_slot.bridge).exists()
        assert any(
            line.startswith("spared ")
            and f"live run {live_id} (pid {live.pid})" in line
            and f"docker slot {live_slot.index}" in line
            for line in report.spared
        ), report.spared
        assert not slot_is_free(live_slot) and live_slot.exec_root.is_dir()
    finally:
        live.send_signal(signal.SIGCONT)
    assert live.wait(timeout=300) == 0, live_log.read_text()[-3000:]
    results = json.loads(next(live_out.glob("*/results.json")).read_text())
    failed = [s for s in results["samples"] if s.get("error")]
    assert results["samples"] and not failed, failed[:3]
    assert check_clean({live_id}) == []
