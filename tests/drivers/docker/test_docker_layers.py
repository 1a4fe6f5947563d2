"""A layer stack as a Docker image: one commit per layer over the imported base, bottom first, built
once per daemon, and never left half-built."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from isobench.drivers.base import LayerStack
from isobench.drivers.docker.layers import LAYERS_REPOSITORY, ensure_layered_image, layer_tar
from isobench.errors import SandboxError

from .conftest import FakeEngine


def _stack(tmp_path: Path, depth: int) -> LayerStack:
    dirs = []
    for i in reversed(range(depth)):
        d = tmp_path / str(i) / "isobench-layers" / "d"
        d.mkdir(parents=True)
        (d / f"L{i}").write_bytes(b"l" * (i + 1))
        dirs.append(tmp_path / str(i))
    return LayerStack(depth=depth, digest="feed", dirs=tuple(dirs))


def test_a_layer_is_its_tree_relative_to_the_root(tmp_path: Path) -> None:
    stack = _stack(tmp_path, 1)
    with tarfile.open(fileobj=io.BytesIO(layer_tar(stack.dirs[0]))) as tar:
        names = tar.getnames()
    assert names == ["isobench-layers", "isobench-layers/d", "isobench-layers/d/L0"]


def test_one_commit_per_layer_bottom_first_then_found_again(tmp_path: Path) -> None:
    engine = FakeEngine()
    ref, took = ensure_layered_image(engine, "isobench/rootfs:x", _stack(tmp_path, 3))
    assert ref == f"{LAYERS_REPOSITORY}:feed" and took is not None
    bases = [c[0] for c in engine.commits]
    assert bases[0] == "isobench/rootfs:x" and bases[1:] == [
        engine.images[k] for k in list(engine.images)[:2]
    ]
    assert [c[2] for c in engine.commits] == [None, None, "feed"]
    assert ensure_layered_image(engine, "isobench/rootfs:x", _stack(tmp_path / "again", 3)) == (ref, None)
    assert len(engine.commits) == 3


def test_a_failed_build_removes_the_layers_it_committed(tmp_path: Path) -> None:
    engine = FakeEngine()
    stack = _stack(tmp_path, 3)
    calls = {"n": 0}
    real = engine.commit_layer

    def flaky(image: str, tar: bytes, repository: str | None, tag: str | None) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            raise SandboxError("docker: max depth exceeded")
        return real(image, tar, repository, tag)

    engine.commit_layer = flaky  # type: ignore[method-assign]
    with pytest.raises(SandboxError, match="max depth"):
        ensure_layered_image(engine, "base", stack)
    assert engine.images == {}


def test_one_more_layer_is_a_commit_that_is_removed_again(tmp_path: Path) -> None:
    from isobench.drivers.docker.layers import commit_one_more

    engine = FakeEngine()
    ref, _ = ensure_layered_image(engine, "base", _stack(tmp_path, 2))
    before = dict(engine.images)
    assert commit_one_more(engine, ref) >= 0
    assert engine.commits[-1][0] == ref and engine.commits[-1][2] is None
    assert engine.images == before
