"""libvirtd dying mid-run: the vm cells after it are failure samples, the run exits 1, and gc
leaves nothing.

The libvirtd killed is a real one, private to this test (``private_libvirt.py``: the same daemon
in its own mount namespace, with tmpfs over its state directories and its sockets where only this
test looks), so the host's libvirtd, which other runs share, is never touched. The run and its gc
use it through ``qemu+unix:///system?socket=...`` from inside that namespace, as they would on a
host where it were the only libvirtd. SIGKILL is a real daemon death: every client connection is
cut at once, the guests' qemu processes outlive it, and a restarted libvirtd adopts them (as an init
system's restart would) before ``isobench gc`` removes them through it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultrun import ISOBENCH, run_args
from isobench.results import read_journal
from leftovers import Scope, leftovers, run_ids_in
from private_libvirt import PrivateLibvirt


@pytest.fixture
def private_libvirt(tmp_path: Path, faults_state: Path, output: Path) -> Iterator[PrivateLibvirt]:
    lv = PrivateLibvirt(tmp_path / "libvirt")
    try:
        lv.start()
        yield lv
    finally:
        # A failing test's runs are collected through the private daemon before it goes.
        runs = run_ids_in(faults_state, output)
        if (
            lv.holder is not None
            and runs
            and leftovers(Scope(faults_state, frozenset(runs), libvirt_uri=lv.uri))
        ):
            if lv.libvirtd is None or lv.libvirtd.poll() is not None:
                with contextlib.suppress(RuntimeError):
                    lv.start_libvirtd()  # the test failed between the kill and the restart
            with_gc = _gc(lv, faults_state, tmp_path / "isobench.toml")
            print(f"finalizer gc: exit {with_gc.returncode}")
        forced = lv.stop()
        if forced:
            print("private libvirt: forced " + "; ".join(forced))


def _vm_sample_in(out: Path) -> bool:
    for journal in out.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            if '"driver": "vm"' in line and '"type": "sample"' in line:
                return True
    return False


def _gc(lv: PrivateLibvirt, state: Path, config: Path) -> subprocess.CompletedProcess[str]:
    argv = lv.enter([*ISOBENCH, "gc", "--state-dir", str(state), "--config", str(config)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_libvirtd_killed_mid_run(
    faults_state: Path, tmp_path: Path, output: Path, private_libvirt: PrivateLibvirt
) -> None:
    lv = private_libvirt
    config = tmp_path / "isobench.toml"
    config.write_text(f'[drivers.vm]\nuri = "{lv.uri}"\n')
    argv = run_args(faults_state, output, drivers="host,vm")
    # Five vm cells, so vm cells are still to come after the kill wherever it lands: a guest
    # already booting may reach ready without libvirtd (the agent's socket is not libvirt's), and
    # with three cells the kill could land on the last one, leaving no cell to fail (seen in CI:
    # exit 1 from the teardown, no failure sample).
    argv[argv.index("-n") + 1] = "5"
    run = subprocess.Popen(
        lv.enter([*argv, "--config", str(config)]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    # Kill libvirtd once the first vm cell is measured and the next guest is running (libvirt
    # is done launching it, the guest is still booting): a cell mid-boot, a guest whose qemu
    # outlives the daemon, cells not started yet.
    while not _vm_sample_in(output) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    measured = set(lv.guests())
    while not lv.running_guests() - measured and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    lv.kill_libvirtd()
    orphans = set(lv.guests()) - measured
    out, _ = run.communicate(timeout=600)
    text = out.decode(errors="replace")
    assert run.returncode == 1, text[-3000:]
    assert "Traceback" not in text
    [journal] = output.glob("*/journal.jsonl")
    for line in journal.read_text().splitlines():
        json.loads(line)
    samples = read_journal(journal).samples
    assert any(s.driver == "vm" and s.error is None for s in samples), "no vm cell measured before the kill"
    assert any(s.driver == "vm" and s.error is not None for s in samples), text[-3000:]
    # A real daemon death: libvirtd is gone, the guest it was booting is not.
    assert lv.libvirtd is not None and lv.libvirtd.returncode == -9
    assert orphans and orphans <= set(lv.guests()), (orphans, lv.guests())
    lv.start_libvirtd()
    runs = run_ids_in(faults_state, output)
    gc = _gc(lv, faults_state, config)
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert leftovers(Scope(faults_state, frozenset(runs), libvirt_uri=lv.uri)) == []
    assert lv.guests() == {}
