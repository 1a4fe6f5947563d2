"""Finding this driver's qemu processes by their ``-name`` argument, through a configurable /proc."""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_guests", "guest_name"]


def guest_name(cmdline: bytes) -> str | None:
    """The guest name of a qemu command line (NUL-separated argv), or None if it is not qemu's."""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0")]
    if not Path(argv[0]).name.startswith("qemu-system"):
        return None
    for i, arg in enumerate(argv[:-1]):
        if arg == "-name":
            # "-name guest[,debug-threads=on]"; a literal comma in a name would be doubled, and
            # isobench never puts one there.
            return argv[i + 1].split(",", 1)[0]
    return None


def find_guests(proc_root: Path, prefix: str) -> list[tuple[int, str]]:
    """(pid, name) of every qemu process whose ``-name`` starts with ``prefix``."""
    found: list[tuple[int, str]] = []
    try:
        entries = list(proc_root.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile, or a kernel thread we may not read
        name = guest_name(cmdline.rstrip(b"\0"))
        if name is not None and name.startswith(prefix):
            found.append((int(entry.name), name))
    return sorted(found)
