"""A layer stack as a Docker image: the suite's image, then one committed layer per stack layer.

Docker keeps an image's history as read-only layers, each a diff over the one below, stacked by
overlay2 under the container's own layer; so the honest spelling of a stack of D layers is an image
of D commits over the imported base (``docker commit`` over the Engine API: a container of the
previous image, never started, gets the layer's files put in and is committed), not one flattened
import. overlay2 refuses images deeper than 125 layers ("max depth exceeded"), the daemon's limit,
recorded when it bites. The image is tagged ``isobench/layers:<stack digest>`` (the digest covers the
suite image, the depth and the placement), so it is built once per daemon data root; a build that
fails half-way removes the layers it committed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import time
from pathlib import Path

from isobench.drivers.docker.engine import Engine
from isobench.drivers.layerstack import LayerStack
from isobench.errors import IsobenchError

__all__ = ["LAYERS_REPOSITORY", "commit_one_more", "ensure_layered_image", "layer_tar"]

log = logging.getLogger(__name__)

LAYERS_REPOSITORY = "isobench/layers"


def layer_tar(layer: Path) -> bytes:
    """The layer directory's tree as an uncompressed tar, paths relative to its root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(layer.iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


def ensure_layered_image(engine: Engine, base: str, stack: LayerStack) -> tuple[str, float | None]:
    """``isobench/layers:<digest>``: ``base`` with the stack's layers committed on it, bottom first;
    returns the reference and the seconds a build took (None when the daemon had it)."""
    ref = f"{LAYERS_REPOSITORY}:{stack.digest}"
    if engine.image_id(ref) is not None:
        return ref, None
    if not stack.dirs:
        raise IsobenchError(f"layer stack {stack.digest} has no directories to commit")
    started = time.monotonic()
    made: list[str] = []
    current = base
    try:
        for i, layer in enumerate(reversed(stack.dirs)):
            last = i == stack.depth - 1
            current = engine.commit_layer(
                current, layer_tar(layer), LAYERS_REPOSITORY if last else None, stack.digest if last else None
            )
            made.append(current)
    except BaseException:
        for image in reversed(made):
            with contextlib.suppress(Exception):
                engine.remove_image(image)
        raise
    took = time.monotonic() - started
    log.info("committed %d layers over %s as %s in %.1f s", stack.depth, base, ref, took)
    return ref, took


def commit_one_more(engine: Engine, ref: str) -> float:
    """Seconds one more commit over ``ref`` takes (a layer of one 4 KiB file); the image it made is
    removed again."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("isobench-layers/d/extra")
        info.size = 4096
        tar.addfile(info, io.BytesIO(b"l" * 4096))
    data = buf.getvalue()
    started = time.monotonic()
    image = engine.commit_layer(ref, data, None, None)
    took = time.monotonic() - started
    engine.remove_image(image)
    return took
