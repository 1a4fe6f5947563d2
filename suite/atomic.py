"""Files replaced whole: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["fsync_dir", "replacing"]


@contextlib.contextmanager
def replacing(
    path: Path,
    *,
    durable: bool = True,
    exclusive: bool = False,
    make_parent: bool = False,
    newline: str | None = None,
) -> Iterator[TextIO]:
    """A new text file (a temporary one beside ``path``) that takes ``path``'s place when the block
    ends without an error; on any error it is removed and ``path`` is left as it was.

    ``durable``: the file and then its directory are fsync'd, so the new file survives a crash of
    the kernel too (without it, only the death of the writing process). ``exclusive``: the file is
    linked at ``path`` instead of renamed over it, which fails (FileExistsError) when ``path``
    exists. ``make_parent``: a missing directory is made first (looked for only on failure, so a
    writer whose directory exists pays nothing for it).
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except FileNotFoundError:
        if not make_parent:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a file created, renamed or removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
