"""A stack of read-only layers a sandbox is asked to run over (``SandboxSpec.layers``).

The stack is built and cached on the host by ``isobench.layers`` (once per image, depth and
placement recipe); a driver only attaches it, the way its ``capabilities.layer_stack`` says:
overlayfs lower directories (topmost first) above the image, or a qcow2 backing chain under a
per-sandbox overlay as the guest's data disk. A stack carries both spellings when both are built,
so one value serves every driver of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from isobench.drivers.capabilities import LayerStackKind

__all__ = ["MOUNT_DATA_LIMIT", "LayerAdder", "LayerStack", "overlay_lowerdir_fits"]

#: mount(2) copies at most one page of option data: a longer ``lowerdir=`` string is cut, so the
#: kernel would see a different (or broken) stack. The deepest stack a legacy mount can name.
MOUNT_DATA_LIMIT = 4096


@dataclass(frozen=True)
class LayerStack:
    """``depth`` read-only layers; ``dirs`` topmost first (overlayfs), ``chain`` the qcow2 images of
    the backing chain, topmost first (each image's header names the next as its backing file)."""

    depth: int
    digest: str
    dirs: tuple[Path, ...] = ()
    chain: tuple[Path, ...] = ()

    @property
    def chain_top(self) -> Path | None:
        return self.chain[0] if self.chain else None

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"a layer stack has at least one layer, not {self.depth}")
        if self.dirs and len(self.dirs) != self.depth:
            raise ValueError(f"stack {self.digest}: {len(self.dirs)} directories for depth {self.depth}")
        if self.chain and len(self.chain) != self.depth:
            raise ValueError(f"stack {self.digest}: {len(self.chain)} chain images for depth {self.depth}")

    def has(self, kind: LayerStackKind) -> bool:
        """It holds the spelling a driver of ``kind`` attaches."""
        if kind is LayerStackKind.OVERLAY_LOWERS:
            return bool(self.dirs)
        return self.chain_top is not None


@runtime_checkable
class LayerAdder(Protocol):
    """A driver whose own way of adding one more layer over a stack is not a directory or a qcow2
    overlay the host makes (Docker: a commit). Returns the seconds it took; leaves nothing behind."""

    def add_layer(self, stack: LayerStack) -> float: ...


def overlay_lowerdir_fits(options: str) -> bool:
    """An overlay mount's option string fits the page mount(2) copies (with its NUL)."""
    return len(options.encode()) < MOUNT_DATA_LIMIT
