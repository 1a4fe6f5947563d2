"""Layer stacks: D read-only layers over the same files, as directories and as a qcow2 chain.

What the ``layers`` workload runs over. Every layer holds ``isobench-layers/d/`` (so that directory
is merged from all layers, and a lookup in it walks every layer); its files are placed by a
:class:`Placement`: in the bottom layer (``b*`` for stat, ``o*`` for open, ``big`` for a cold read,
``w`` for the first write), in the top one (``t*``), and spread across (``L<i>-*`` in layer i).

* ``dirs/<i>`` (0 = bottom): the layers as directories, for overlayfs lower layers (the container
  runtimes, and Docker's image layers made from them).
* ``chain/<i>.qcow2``: the same history as a qcow2 backing chain, as a VM's snapshots keep it. An
  ext4 filesystem is made with the bottom layer's files; each later layer's files are written into
  it offline (debugfs), and that layer's image holds exactly the clusters that changed: an empty
  overlay over the new state is rebased (qemu-img's safe mode) onto the previous layer, which copies
  in the clusters where the two differ. Backing files are named relative to the chain's folder.

A stack is cached under ``<state_dir>/layers/<digest>/`` where the digest covers the image's digest,
the depth, the placement and this builder's version, so it is built once and found again. A build
goes into a ``.partial-*`` folder owned by the building process and is renamed into place only when
complete; every failure path removes it, and :func:`remove_stacks` (``isobench image rm``,
``isobench gc``) removes stacks of images that are gone and partial builds of dead processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.layerstack import LayerStack
from isobench.errors import IsobenchError
from isobench.images import Image
from isobench.procs import run_command

__all__ = [
    "BUILDER_VERSION",
    "LAYERS_SUBDIR",
    "Placement",
    "StackKind",
    "ensure_stack",
    "layer_files",
    "remove_stacks",
    "stack_digest",
    "stacks_dir",
]

log = logging.getLogger(__name__)

#: Bump when what a stack holds changes: old stacks then miss the cache and are rebuilt.
BUILDER_VERSION = 1
#: The stack's tree inside every layer (and so inside a sandbox's root, or its data disk).
LAYERS_SUBDIR = "isobench-layers/d"
_FILL = b"l"
_TIMEOUT_S = 600.0


class StackBuildError(IsobenchError):
    """A stack could not be built; the message names the step."""


@dataclass(frozen=True)
class Placement:
    """Where the measured files sit in a stack, and how big they are."""

    #: Files per group (bottom stat, bottom open, top stat; the misses are as many names).
    per_group: int = 64
    #: Files each layer adds to the merged directory.
    spread_per_layer: int = 4
    small_bytes: int = 4096
    #: The bottom-layer file read cold.
    big_bytes: int = 16 << 20
    #: The bottom-layer file written first (copy-up copies all of it; qcow2 one cluster).
    write_bytes: int = 1 << 20

    def recipe(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class StackKind:
    DIRS = "dirs"
    CHAIN = "chain"


def stacks_dir(state_dir: Path) -> Path:
    return state_dir / "layers"


def stack_digest(image_digest: str, depth: int, placement: Placement) -> str:
    text = json.dumps(
        {"image": image_digest, "depth": depth, "placement": placement.recipe(), "v": BUILDER_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layer_files(index: int, depth: int, placement: Placement) -> dict[str, int]:
    """The files layer ``index`` (0 = bottom) adds to ``LAYERS_SUBDIR``, by name and size."""
    p = placement
    files = {f"L{index:03d}-{j}": p.small_bytes for j in range(p.spread_per_layer)}
    if index == 0:
        files |= {f"b{j:03d}": p.small_bytes for j in range(p.per_group)}
        files |= {f"o{j:03d}": p.small_bytes for j in range(p.per_group)}
        files |= {"big": p.big_bytes, "w": p.write_bytes}
    if index == depth - 1:
        files |= {f"t{j:03d}": p.small_bytes for j in range(p.per_group)}
    return files


def _write_layer(root: Path, index: int, depth: int, placement: Placement) -> None:
    target = root / LAYERS_SUBDIR
    target.mkdir(parents=True)
    for name, size in layer_files(index, depth, placement).items():
        with (target / name).open("wb") as f:
            chunk = _FILL * min(size, 1 << 20)
            left = size
            while left > 0:
                left -= f.write(chunk[:left])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _partial(parent: Path, leaf: str) -> Iterator[Path]:
    """A build folder owned by this process: removed on every path unless the body renamed it."""
    tmp = parent / f".partial-{leaf}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    res = run_command(argv, timeout=_TIMEOUT_S, cwd=cwd)
    if not res.ok:
        tail = (res.stderr.strip() or res.stdout.strip())[-300:]
        raise StackBuildError(f"{what}: {argv[0]} failed (exit {res.exit_code}): {tail}")


def _build_dirs(root: Path, depth: int, placement: Placement) -> list[float]:
    seconds = []
    for i in range(depth):
        t0 = time.monotonic()
        _write_layer(root / "dirs" / str(i), i, depth, placement)
        seconds.append(time.monotonic() - t0)
    return seconds


def _fs_mib(placement: Placement) -> int:
    return 64 + 2 * ((placement.big_bytes + placement.write_bytes) >> 20)


def _debugfs_script(layer_dir: Path, index: int, depth: int, placement: Placement) -> str:
    lines = [f"cd /{LAYERS_SUBDIR}"]
    for name in layer_files(index, depth, placement):
        lines.append(f"write {layer_dir / LAYERS_SUBDIR / name} {name}")
    return "\n".join(lines) + "\n"


def _build_chain(stack: Path, chain: Path, depth: int, placement: Placement, qemu_img: str) -> list[float]:
    work = chain / "work.raw"
    with work.open("xb") as f:
        f.truncate(_fs_mib(placement) << 20)
    seconds = []
    for i in range(depth):
        t0 = time.monotonic()
        layer_dir = stack / "dirs" / str(i)
        name = f"{i:03d}.qcow2"
        if i == 0:
            _run(
                ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "isobench-layers", "-d", str(layer_dir),
                 "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", str(work)],
                "the bottom layer's filesystem",
            )  # fmt: skip
            _run([qemu_img, "convert", "-f", "raw", "-O", "qcow2", work.name, name], "layer 0", chain)
        else:
            script = chain / "debugfs.cmd"
            script.write_text(_debugfs_script(layer_dir, i, depth, placement))
            _run(["debugfs", "-w", "-f", str(script), str(work)], f"writing layer {i} into the filesystem")
            # Over the filesystem as it is now, then onto the previous layer: the rebase copies in
            # exactly the clusters where the two differ, which is what a snapshot of this state keeps.
            _run(
                [qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", work.name, name],
                f"layer {i}",
                chain,
            )
            prev = f"{i - 1:03d}.qcow2"
            _run(
                [qemu_img, "rebase", "-f", "qcow2", "-F", "qcow2", "-b", prev, name],
                f"layer {i} rebase",
                chain,
            )
        seconds.append(time.monotonic() - t0)
    work.unlink()
    (chain / "debugfs.cmd").unlink(missing_ok=True)
    for image in chain.glob("*.qcow2"):
        image.chmod(0o444)
    return seconds


def _stack_value(root: Path, digest: str, depth: int) -> LayerStack:
    chain = tuple(root / "chain" / f"{i:03d}.qcow2" for i in reversed(range(depth)))
    return LayerStack(
        depth=depth,
        digest=digest,
        dirs=tuple(root / "dirs" / str(i) for i in reversed(range(depth))),
        chain=chain if (root / "chain" / ".complete").exists() else (),
    )


def ensure_stack(
    state_dir: Path,
    image: Image,
    depth: int,
    placement: Placement,
    kinds: Collection[str] = (StackKind.DIRS,),
    *,
    qemu_img: str = "qemu-img",
) -> LayerStack:
    """The cached stack of ``depth`` layers over ``image`` with ``placement``, built first if it is
    missing (or lacks one of ``kinds``). Concurrent builders of the same stack wait for each other."""
    if depth < 1:
        raise StackBuildError(f"a layer stack needs depth >= 1, not {depth}")
    base = stacks_dir(state_dir)
    digest = stack_digest(image.digest, depth, placement)
    root = base / digest
    with _locked(base / f"{digest}.lock"):
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            with _partial(base, digest) as tmp:
                seconds = _build_dirs(tmp, depth, placement)
                manifest = {
                    "image": image.name,
                    "image_digest": image.digest,
                    "depth": depth,
                    "placement": placement.recipe(),
                    "builder_version": BUILDER_VERSION,
                    "dirs_build_seconds": seconds,
                }
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
                (tmp / ".complete").touch()
                os.rename(tmp, root)
            log.info("built layer stack %s (depth %d)", digest, depth)
        if StackKind.CHAIN in kinds and not (root / "chain" / ".complete").exists():
            shutil.rmtree(root / "chain", ignore_errors=True)
            with _partial(root, "chain") as tmp:
                seconds = _build_chain(root, tmp, depth, placement, qemu_img)
                (tmp / "build_seconds.json").write_text(json.dumps(seconds))
                (tmp / ".complete").touch()
                os.rename(tmp, root / "chain")
            log.info("built qcow2 chain of stack %s (depth %d)", digest, depth)
    return _stack_value(root, digest, depth)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_partial(path: Path) -> bool:
    pid = path.name.rsplit("-", 1)[-1]
    return path.name.startswith(".partial-") and pid.isdigit() and not _pid_alive(int(pid))


def remove_stacks(
    state_dir: Path, *, image_digests: Collection[str] | None = None, keep_images: Collection[str] = ()
) -> list[Path]:
    """Remove stacks: those over one of ``image_digests`` (``isobench image rm``), or, when None, those
    over any image whose digest is not in ``keep_images`` (``isobench gc``: the images that still
    exist); and partial builds whose builder died. Returns what went."""
    base = stacks_dir(state_dir)
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".partial-"):
            if _dead_partial(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        if not entry.is_dir():
            continue
        for inner in entry.glob(".partial-*"):
            if _dead_partial(inner):
                shutil.rmtree(inner, ignore_errors=True)
                removed.append(inner)
        try:
            owner = json.loads((entry / "manifest.json").read_text()).get("image_digest", "")
        except (OSError, ValueError):
            owner = ""  # no manifest: an incomplete or foreign folder, removed as orphaned
        doomed = owner in image_digests if image_digests is not None else owner not in keep_images
        if doomed:
            with _locked(base / f"{entry.name}.lock"):
                shutil.rmtree(entry, ignore_errors=True)
            (base / f"{entry.name}.lock").unlink(missing_ok=True)
            removed.append(entry)
    return removed
