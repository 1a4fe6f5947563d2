"""The suite's image: one root filesystem for both worlds.

The same tree is the container driver's overlay lower layer and, packed as an ext4 disk, the guest's
root; so containers and VMs run byte-identical workload binaries. Built images live in
``<state_dir>/images/<name>-<digest>/`` where the digest hashes the recipe's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

from isobench.errors import UsageError

__all__ = ["Build", "Image", "ImageMissing", "find_image", "image_rootfs", "newest_build"]


class ImageMissing(UsageError):
    """No built image of that name; the message says how to build it."""


@dataclass(frozen=True)
class Build:
    """One content-addressed build, ``<state_dir>/images/<name>-<digest>/``: an image or a kernel."""

    name: str
    digest: str
    root: Path

    @classmethod
    def at(cls, root: Path, name: str) -> Self:
        """The build in directory ``root`` (``<name>-<digest>``)."""
        return cls(name, root.name.removeprefix(f"{name}-"), root)


class Image(Build):
    """A root filesystem, as a directory tree (containers) and as an ext4 disk with a kernel (guests)."""

    @property
    def rootfs(self) -> Path:
        """Directory tree: the container lower layer (never written to)."""
        return self.root / "rootfs"

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    @property
    def disk(self) -> Path:
        """Raw ext4 image of ``rootfs``: the guest's read-only root disk."""
        return self.root / "rootfs.ext4"


def images_dir(state_dir: Path) -> Path:
    return state_dir / "images"


def newest_build(state_dir: Path, name: str) -> Path | None:
    """The newest complete ``<name>-<digest>`` build directory (its ``.complete`` marker exists)."""
    candidates = sorted(
        (p for p in images_dir(state_dir).glob(f"{name}-*") if (p / ".complete").exists()),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    return candidates[0] if candidates else None


def find_image(state_dir: Path, name: str = "default") -> Image:
    """The newest complete build of ``name``. A build is complete once its ``.complete`` marker exists."""
    root = newest_build(state_dir, name)
    if root is None:
        raise ImageMissing(
            f"image {name!r} is not built under {images_dir(state_dir)}; run `isobench image build`"
        )
    return Image.at(root, name)


def image_rootfs(image: Path | None, state_dir: Path) -> Path:
    """The root filesystem a container-style sandbox runs on: ``image`` (a spec's rootfs dir) or the
    default image's, checked to be a directory and resolved (overlay options want real paths)."""
    root = image if image is not None else find_image(state_dir).rootfs
    if not root.is_dir():
        raise UsageError(f"image root {root} is not a directory; run `isobench image build`")
    return root.resolve()
