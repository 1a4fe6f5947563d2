"""Files replaced whole: the old one stays on any error, and no temporary file is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from isobench.atomic import replacing


def test_the_new_file_takes_the_old_ones_place_and_an_error_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text("old")

    def die_halfway() -> None:
        with replacing(path) as f:
            f.write("half")
            raise RuntimeError("the writer died")

    with pytest.raises(RuntimeError):
        die_halfway()
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["doc.json"]
    with replacing(path) as f:
        f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["doc.json"]


def test_exclusive_refuses_an_existing_file_and_make_parent_makes_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "live" / "a.json"
    with pytest.raises(FileNotFoundError), replacing(path, exclusive=True) as f:
        f.write("x")
    with replacing(path, exclusive=True, make_parent=True) as f:
        f.write("first")
    with pytest.raises(FileExistsError), replacing(path, exclusive=True) as f:
        f.write("second")
    assert path.read_text() == "first" and os.listdir(path.parent) == ["a.json"]


def test_only_a_durable_file_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with replacing(tmp_path / "fast", durable=False) as f:
        f.write("x")
    assert synced == []
    with replacing(tmp_path / "durable") as f:
        f.write("x")
    assert len(synced) == 2  # the file, then its directory
