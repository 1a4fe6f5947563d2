"""Layer stacks: built once per image, depth and placement, found again, never left half-built, and
removed with their image (``isobench image rm``) or by ``isobench gc``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from isobench import layers
from isobench.gc import gc
from isobench.images import Image
from isobench.layers import LAYERS_SUBDIR, Placement, StackKind, ensure_stack, remove_stacks, stack_digest

SMALL = Placement(per_group=2, spread_per_layer=1, big_bytes=1 << 20, write_bytes=64 << 10)


def _image(state: Path, digest: str = "abc") -> Image:
    root = state / "images" / f"default-{digest}"
    root.mkdir(parents=True)
    (root / ".complete").touch()
    return Image("default", digest, root)


def test_a_stack_is_built_once_and_found_again(tmp_path: Path) -> None:
    img = _image(tmp_path)
    first = ensure_stack(tmp_path, img, 3, SMALL)
    marker = first.dirs[0].parent.parent / ".complete"
    built = marker.stat().st_mtime_ns
    again = ensure_stack(tmp_path, img, 3, SMALL)
    assert again == first and marker.stat().st_mtime_ns == built
    assert first.digest == stack_digest("abc", 3, SMALL)
    assert stack_digest("abc", 4, SMALL) != first.digest != stack_digest("abd", 3, SMALL)
    assert stack_digest("abc", 3, Placement()) != first.digest
    merged = sorted(n for d in first.dirs for n in os.listdir(d / LAYERS_SUBDIR))
    assert merged == sorted(
        ["L000-0", "L001-0", "L002-0", "b000", "b001", "o000", "o001", "big", "w", "t000", "t001"]
    )
    assert first.chain == ()


def test_the_chain_holds_each_layer_as_a_snapshot(tmp_path: Path) -> None:
    stack = ensure_stack(tmp_path, _image(tmp_path), 3, SMALL, (StackKind.DIRS, StackKind.CHAIN))
    assert [p.name for p in stack.chain] == ["002.qcow2", "001.qcow2", "000.qcow2"]
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "--backing-chain", str(stack.chain[0])],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert [i.get("backing-filename") for i in info] == ["001.qcow2", "000.qcow2", None]
    # Upper layers hold only what changed: far less than the bottom one, which holds the files.
    sizes = [i["actual-size"] for i in info]
    assert sizes[0] < sizes[2] / 3
    assert not list(stack.chain[0].parent.glob("work.raw"))
    # Read through the whole chain, the filesystem holds every layer's files, as the dirs do.
    flat = tmp_path / "flat.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(stack.chain[0]), str(flat)], check=True)
    listing = subprocess.run(
        ["debugfs", "-R", f"ls /{LAYERS_SUBDIR}", str(flat)], capture_output=True, text=True, check=True
    ).stdout.split()
    in_dirs = {n for d in stack.dirs for n in os.listdir(d / LAYERS_SUBDIR)}
    assert in_dirs <= set(listing)


def test_a_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    img = _image(tmp_path)

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(layers, "_write_layer", broken)
    with pytest.raises(OSError, match="disk full"):
        ensure_stack(tmp_path, img, 2, SMALL)
    left = [p.name for p in (tmp_path / "layers").iterdir() if not p.name.endswith(".lock")]
    assert left == []


def test_stacks_go_with_their_image_and_gc_clears_orphans(tmp_path: Path) -> None:
    kept = ensure_stack(tmp_path, _image(tmp_path, "aaa"), 1, SMALL)
    doomed = ensure_stack(tmp_path, _image(tmp_path, "bbb"), 1, SMALL)
    dead = tmp_path / "layers" / ".partial-0123-999999999"
    dead.mkdir()
    gone = remove_stacks(tmp_path, image_digests=["bbb"])
    assert doomed.dirs[0].parent.parent in gone and dead in gone
    assert kept.dirs[0].is_dir()
    # gc: the image went away behind its back; its stack is an orphan.
    orphan = ensure_stack(tmp_path, Image("default", "ccc", tmp_path / "nowhere"), 1, SMALL)
    report = gc(tmp_path)
    assert any(str(orphan.dirs[0].parent.parent) in r for r in report.removed)
    assert kept.dirs[0].is_dir()


def test_image_rm_removes_the_stacks_built_over_it(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from isobench import cli

    gone = ensure_stack(tmp_path, _image(tmp_path, "aaa"), 1, SMALL)
    other = ensure_stack(tmp_path, _image(tmp_path, "bbb"), 1, SMALL)
    res = CliRunner().invoke(
        cli.main,
        ["image", "rm", "default", "--digest", "aaa", "--state-dir", str(tmp_path)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert not gone.dirs[0].exists() and other.dirs[0].is_dir()
    assert str(gone.dirs[0].parent.parent) in res.output
