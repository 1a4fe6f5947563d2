"""libvirtd dying mid-run: the vm cells after it are failure samples, the run exits 1, and gc
leaves nothing.

The host's libvirtd is shared with every other run on this machine, so the test does not kill it:
the vm driver talks to libvirtd through a socket forwarder this test starts
(``qemu+unix:///system?socket=...``), and SIGKILLing the forwarder cuts every connection of the
run at once, which is what the client sees when libvirtd dies. The guests stay with the real
libvirtd, as they do when libvirtd dies (qemu outlives it), and gc finds them there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultrun import run_args
from isobench.results import read_journal
from leftovers import run_ids_in

LIBVIRT_SOCK = Path("/run/libvirt/libvirt-sock")


@pytest.fixture
def libvirtd_stand_in(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    if not LIBVIRT_SOCK.exists():
        pytest.fail(f"{LIBVIRT_SOCK} is missing: start libvirtd (scripts/setup.sh deps does)")
    listen = tmp_path / "libvirt-sock"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "sockproxy.py"), str(listen), str(LIBVIRT_SOCK)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    try:
        yield proc, listen
    finally:
        proc.kill()
        proc.wait()


def _vm_sample_in(out: Path) -> bool:
    for journal in out.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            if '"driver": "vm"' in line and '"type": "sample"' in line:
                return True
    return False


def test_libvirtd_killed_mid_run(
    faults_state: Path,
    tmp_path: Path,
    output: Path,
    libvirtd_stand_in: tuple[subprocess.Popen[bytes], Path],
    check_clean: Callable[[set[str]], list[str]],
) -> None:
    proxy, listen = libvirtd_stand_in
    config = tmp_path / "isobench.toml"
    config.write_text(f'[drivers.vm]\nuri = "qemu+unix:///system?socket={listen}"\n')
    argv = run_args(faults_state, output, drivers="host,vm")
    argv[argv.index("-n") + 1] = "3"
    run = subprocess.Popen([*argv, "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    # Kill "libvirtd" once the first vm cell is measured: later cells are mid-boot or not started.
    while not _vm_sample_in(output) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proxy.kill()
    proxy.wait()
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
    runs = run_ids_in(faults_state, output)
    gc = subprocess.run(
        [sys.executable, "-m", "isobench.cli", "gc", "--state-dir", str(faults_state)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert check_clean(runs) == []
