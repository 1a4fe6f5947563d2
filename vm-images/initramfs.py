"""A tiny initramfs: busybox, the virtio modules, and /init. Written in Python (newc cpio format) so
the archive is byte-reproducible and needs no cpio tool.

It is left uncompressed on purpose: under TCG the guest decompresses slowly, while qemu loads an
uncompressed archive through fw_cfg DMA in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import UsageError

__all__ = ["CpioEntry", "module_load_order", "write_cpio"]

#: Applets /init calls by name; everything else is called as ``/bin/busybox <applet>``.
_APPLETS = ("sh",)


@dataclass(frozen=True)
class CpioEntry:
    path: str  # without leading slash
    mode: int  # full st_mode (type bits included)
    data: bytes = b""


_DIR = 0o040000
_REG = 0o100000
_LNK = 0o120000


def _header(ino: int, entry: CpioEntry, namesize: int) -> bytes:
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        2 if entry.mode & _DIR == _DIR else 1,
        0,  # mtime: fixed for reproducibility
        len(entry.data),
        0,
        0,
        0,
        0,
        namesize,
        0,
    )
    return b"070701" + b"".join(f"{v:08X}".encode() for v in fields)


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def write_cpio(entries: Iterable[CpioEntry], out: Path) -> None:
    with out.open("wb") as f:
        offset = 0

        def put(b: bytes) -> None:
            nonlocal offset
            f.write(b)
            offset += len(b)

        for ino, entry in enumerate([*entries, CpioEntry("TRAILER!!!", 0)], start=1):
            name = entry.path.encode() + b"\0"
            put(_header(ino if entry.path != "TRAILER!!!" else 0, entry, len(name)))
            put(name)
            put(_pad(offset))
            put(entry.data)
            put(_pad(offset))


def module_load_order(modules_dir: Path, wanted: Sequence[str]) -> list[str]:
    """Module paths (relative to ``modules_dir``) with every dependency before its user."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
        by_name[re.sub(r"\.ko(\..*)?$", "", Path(mod).name).replace("-", "_")] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in deps.get(mod, []):
            visit(dep)
        order.append(mod)

    for name in wanted:
        found = by_name.get(name.replace("-", "_"))
        if found is None:
            builtin = (
                (modules_dir / "modules.builtin").read_text()
                if (modules_dir / "modules.builtin").exists()
                else ""
            )
            if re.search(rf"/{re.escape(name)}\.ko$", builtin, re.M):
                continue  # built into the kernel: nothing to load
            raise UsageError(f"kernel module {name} not found under {modules_dir}")
        visit(found)
    return order


def initramfs_entries(
    busybox: Path, init_script: bytes, modules_dir: Path | None, modules: Sequence[str]
) -> list[CpioEntry]:
    """The archive's entries; ``modules_dir`` None (and no modules) for a kernel with everything
    built in: /modules.order is then empty and /init loads nothing."""
    if modules_dir is None and modules:
        raise UsageError("kernel modules asked for without a module tree")
    order = [] if modules_dir is None else module_load_order(modules_dir, modules)
    if any(m.endswith((".xz", ".zst", ".gz")) for m in order):
        raise UsageError("compressed kernel modules are not supported by the isobench initramfs")
    entries = [
        CpioEntry(d, _DIR | 0o755) for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")
    ]
    entries.append(CpioEntry("bin/busybox", _REG | 0o755, busybox.read_bytes()))
    entries.extend(CpioEntry(f"bin/{a}", _LNK | 0o777, b"busybox") for a in _APPLETS)
    entries.append(CpioEntry("init", _REG | 0o755, init_script))
    seen_dirs: set[str] = set()
    for mod in order:
        parts = Path(mod).parent.parts
        for i in range(1, len(parts) + 1):
            d = "lib/modules/" + "/".join(parts[:i])
            if d not in seen_dirs:
                seen_dirs.add(d)
                entries.append(CpioEntry(d, _DIR | 0o755))
        assert modules_dir is not None  # an order is only ever read from a module tree
        entries.append(CpioEntry(f"lib/modules/{mod}", _REG | 0o644, (modules_dir / mod).read_bytes()))
    entries.append(CpioEntry("modules.order", _REG | 0o644, "".join(f"{m}\n" for m in order).encode()))
    return entries
