"""A guest's volume: a raw ext4 disk image in the volume directory, attached as a second virtio-blk
disk (``vdb``) and mounted at ``/data`` by the initramfs.

A container bind-mounts a host directory; a guest cannot (the cloud kernel has no 9p, and virtiofs
needs a daemon per guest), so its volume is a file on that directory's filesystem, which is what a
VM's persistent disk is. The image is formatted on the host with its inode tables and journal
written out (no lazy init): otherwise the guest's ext4lazyinit thread would be writing during the
first benchmark. The image belongs to the sandbox: it is removed on destroy, and lives under the
run's work directory when the runner made the volume, so ``isobench gc`` clears it after a crash.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from isobench.drivers.base import PhaseClock, SandboxSpec
from isobench.drivers.layerstack import LayerStack
from isobench.errors import SandboxError, UsageError
from isobench.procs import run_command

__all__ = [
    "CMDLINE_FLAG",
    "DEFAULT_SIZE_MIB",
    "LAYERS_DESCRIPTION",
    "MIN_SIZE_MIB",
    "VOLUME_DESCRIPTION",
    "check_volume",
    "make_data_disk",
    "make_guest_data_disk",
    "make_layers_disk",
    "untraversable_parent",
]

#: On the kernel command line: the initramfs waits for /dev/vdb and mounts it at /data.
CMDLINE_FLAG = "isobench.data=vdb"
DEFAULT_SIZE_MIB = 1024
MIN_SIZE_MIB = 64
VOLUME_DESCRIPTION = (
    "raw ext4 image file in the volume directory, virtio-blk (vdb) at /data, cache=none, io=native"
)


def make_data_disk(volume: Path, leaf: str, size_mib: int = DEFAULT_SIZE_MIB) -> Path:
    """Create ``<volume>/isobench-<leaf>.data.img``: sparse, ``size_mib``, ext4. Nothing is left
    behind on failure."""
    check_volume(volume)
    if size_mib < MIN_SIZE_MIB:
        raise UsageError(f"data disk size must be >= {MIN_SIZE_MIB} MiB, got {size_mib}")
    path = volume.resolve() / f"isobench-{leaf}.data.img"
    try:
        with path.open("xb") as f:
            f.truncate(size_mib << 20)
    except FileExistsError:
        raise SandboxError(f"{path} already exists: a dead run left it; run `isobench gc`") from None
    except OSError as err:
        raise SandboxError(f"cannot create the guest's data disk {path}: {err.strerror}") from err
    try:
        res = run_command(
            [
                "mkfs.ext4", "-q", "-F", "-m", "0", "-L", "isobench-data",
                "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", str(path),
            ],
            timeout=120,
        )  # fmt: skip
        if not res.ok:
            raise SandboxError(f"mkfs.ext4 failed on {path}: {res.stderr.strip()[-300:]}")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


LAYERS_DESCRIPTION = (
    "qcow2 backing chain of the stack's layers under a per-guest qcow2 overlay, virtio-blk (vdb) at /data"
)
#: The per-guest overlay over a layer stack's chain, in the guest's own directory.
LAYERS_DISK = "layers.qcow2"


def make_layers_disk(stack: LayerStack, path: Path, *, spec_name: str, qemu_img: str = "qemu-img") -> Path:
    """The guest's data disk over ``stack``: a new qcow2 overlay at ``path`` whose backing is the
    stack's top image, so the guest writes here and never into the cached chain (a VM's running
    state over its snapshots). The caller removes ``path``."""
    if stack.chain_top is None:
        raise UsageError(f"sandbox {spec_name}: the layer stack {stack.digest} has no qcow2 chain; build it")
    res = run_command(
        [qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(stack.chain_top.resolve()), str(path)],
        timeout=120,
    )  # fmt: skip
    if not res.ok:
        raise SandboxError(
            f"qemu-img create over the layer chain {stack.chain_top}: {res.stderr.strip()[-300:]}"
        )
    return path


def check_volume(volume: Path, *, layers: LayerStack | None = None) -> None:
    """Refuse a volume that is no directory, or one next to a layer stack (a guest has one data
    disk), before a guest makes anything."""
    if layers is not None:
        raise UsageError(f"a guest's data disk is its volume {volume} or its layer stack, not both")
    if not volume.is_dir():
        raise UsageError(f"volume {volume} is not a directory; create it first")


def untraversable_parent(directory: Path) -> Path | None:
    """``directory`` or the first directory above it that others cannot search (no o+x), or None.
    libvirt's qemu runs as its own user and libvirt chowns only the image, not the directories."""
    resolved = directory.resolve()
    for d in (resolved, *resolved.parents):
        try:
            if not d.stat().st_mode & 0o001:
                return d
        except OSError:
            return d
    return None


def make_guest_data_disk(
    spec: SandboxSpec,
    clock: PhaseClock,
    *,
    leaf: str,
    layers_path: Path,
    size_mib: int,
    qemu_img: str = "qemu-img",
) -> Path | None:
    """The guest's second disk when its spec asks for one, timed as the ``data_disk`` phase: the
    volume's image (:func:`make_data_disk`, named by ``leaf``) or an overlay over its layer stack
    at ``layers_path`` (:func:`check_volume` refused both). The caller removes it."""
    if spec.layers is not None:
        with clock.phase("data_disk"):
            return make_layers_disk(spec.layers, layers_path, spec_name=spec.name, qemu_img=qemu_img)
    if spec.volume is not None:
        with clock.phase("data_disk"):
            return make_data_disk(spec.volume, leaf, size_mib)
    return None
