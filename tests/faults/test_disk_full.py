"""The results disk filling up mid-run: one clear error line, a journal of whole records, nothing left."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultrun import run_args
from isobench.results import read_journal
from leftovers import run_ids_in


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs: the journal's header and a few samples fit, a run of 5 does not."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_results_disk_is_one_error_and_an_intact_journal(
    faults_state: Path, small_disk: Path, check_clean: Callable[[set[str]], list[str]]
) -> None:
    argv = run_args(faults_state, small_disk, drivers="host,container")
    argv[argv.index("-n") + 1] = "5"
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("isobench: error:")]
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr + res.stdout
    assert len(errors) == 1 and "No space left on device" in errors[0], res.stderr[-2000:]
    [journal] = small_disk.glob("*/journal.jsonl")
    lines = journal.read_text().splitlines()
    for line in lines:
        json.loads(line)  # every line whole: nothing torn by the failed write
    measured = read_journal(journal)
    assert measured.samples and measured.run["status"] == "interrupted"
    assert check_clean(run_ids_in(faults_state, small_disk)) == []
