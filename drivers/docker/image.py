"""The suite's root filesystem as a Docker image: the same tree every other driver runs, imported
once per digest (``docker import`` of a tar stream of the tree, over the Engine API).

The tag is the image build's digest (``<images>/<name>-<digest>/rootfs``), so a daemon that already
holds it is not asked again, and a rebuilt image (new digest) is imported anew. A tree that is not
a built image (tests pass their own) is tagged with a hash of its path and its root's mtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from isobench.drivers.docker.engine import Engine
from isobench.errors import SandboxError

__all__ = ["REPOSITORY", "ensure_image", "image_tag", "tar_stream"]

log = logging.getLogger(__name__)

REPOSITORY = "isobench/rootfs"
_CHUNK = 1 << 20


def image_tag(rootfs: Path) -> str:
    """The tag for ``rootfs``: its image build's digest when it is one, else a hash of the tree's place."""
    meta = rootfs.parent / "image.json"
    try:
        doc = json.loads(meta.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("digest"), str) and rootfs.name == "rootfs":
            return f"{doc.get('name', 'image')}-{doc['digest']}"
    except (OSError, ValueError):
        pass
    try:
        mtime = rootfs.stat().st_mtime_ns
    except OSError as err:
        raise SandboxError(f"image root {rootfs} cannot be read: {err.strerror}") from err
    return "tree-" + hashlib.sha256(f"{rootfs.resolve()}:{mtime}".encode()).hexdigest()[:16]


def tar_stream(rootfs: Path, proc: list[subprocess.Popen[bytes]]) -> Iterator[bytes]:
    """The tree as a tar stream, from GNU tar (hard links, devices, xattrs and numeric owners kept).
    The started process is appended to ``proc`` so the caller can reap it, also on failure."""
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.append(tar)
    assert tar.stdout is not None
    while chunk := tar.stdout.read(_CHUNK):
        yield chunk


def ensure_image(engine: Engine, rootfs: Path) -> tuple[str, float | None]:
    """``REPOSITORY:<tag>`` of ``rootfs`` in the daemon, imported unless it is there; returns the
    reference and the seconds an import took (None when none was needed)."""
    tag = image_tag(rootfs)
    ref = f"{REPOSITORY}:{tag}"
    if engine.image_id(ref) is not None:
        return ref, None
    log.info("importing %s into docker as %s", rootfs, ref)
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    tar_error = ""
    try:
        engine.import_tar(tar_stream(rootfs, procs), REPOSITORY, tag)
    except SandboxError:
        raise
    except Exception as err:
        raise SandboxError(f"docker import of {rootfs} failed: {err}") from err
    finally:
        for tar in procs:
            # Closing our end ends a tar the import stopped reading (SIGPIPE); a finished one exited.
            if tar.stdout is not None:
                tar.stdout.close()
            try:
                _, err_text = tar.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                tar.kill()
                _, err_text = tar.communicate()
            if tar.returncode != 0:
                tar_error = err_text.decode(errors="replace").strip()[-300:] or f"exit {tar.returncode}"
    if tar_error:
        # A tar that failed half-way gave Docker a short tree: never leave that tagged for reuse.
        engine.remove_image(ref)
        raise SandboxError(f"docker import of {rootfs}: tar failed: {tar_error}")
    if engine.image_id(ref) is None:
        raise SandboxError(f"docker import of {rootfs} reported success but {ref} is not there")
    return ref, time.monotonic() - started
