"""Host mounts the Python-side drivers make: per-sandbox overlays over the shared image, and the
mount table reader their gc needs.

The image is only ever the read-only lower layer; every write of a sandbox lands in its own upper dir
under the run's work dir. Mounting goes through mount(2) directly (not the ``mount`` binary), so a
``create`` phase times the kernel work rather than a process spawn.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.drivers.layerstack import MOUNT_DATA_LIMIT, overlay_lowerdir_fits
from isobench.errors import SandboxError

__all__ = [
    "MountEntry",
    "OverlayDirs",
    "OverlayRoot",
    "find_mounts",
    "gc_overlay_roots",
    "mount_overlay",
    "overlay_mounts",
    "parse_mountinfo",
    "umount",
]

log = logging.getLogger(__name__)

_MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class OverlayDirs:
    """The directories of one sandbox's overlay, all inside ``base``."""

    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def merged(self) -> Path:
        return self.base / "merged"


def overlay_options(lower: Path | Sequence[Path], dirs: OverlayDirs) -> str:
    """The mount data string; ``lower`` is one layer or several, topmost first. Paths with the
    option separators cannot be expressed, and a string over the page mount(2) copies would be cut:
    refuse both."""
    lowers = [lower] if isinstance(lower, Path) else list(lower)
    for p in (*lowers, dirs.upper, dirs.work):
        if re.search(r"[,:\\]", str(p)):
            raise SandboxError(f"overlay path {p} contains ',', ':' or '\\'; use a path without them")
    data = f"lowerdir={':'.join(map(str, lowers))},upperdir={dirs.upper},workdir={dirs.work}"
    if not overlay_lowerdir_fits(data):
        raise SandboxError(
            f"{len(lowers)} overlay layers need {len(data)} bytes of mount options, over the "
            f"{MOUNT_DATA_LIMIT} mount(2) takes; use fewer layers or shorter paths"
        )
    return data


def mount_overlay(lower: Path | Sequence[Path], dirs: OverlayDirs) -> None:
    """Create upper/work/merged and mount the overlay on ``merged``."""
    data = overlay_options(lower, dirs)
    for d in (dirs.upper, dirs.work, dirs.merged):
        d.mkdir(parents=True, exist_ok=True)
    rc = _libc.mount(b"overlay", os.fsencode(dirs.merged), b"overlay", 0, data.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise SandboxError(
            f"cannot mount overlay on {dirs.merged}: {os.strerror(err)}; "
            "isobench needs root and overlayfs support (modprobe overlay)"
        )


def umount(target: Path) -> None:
    """Unmount ``target``; a busy mount is detached lazily so teardown never blocks. Gone is fine."""
    path = os.fsencode(target)
    if _libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return
    if err == errno.EBUSY and _libc.umount2(path, _MNT_DETACH) == 0:
        return
    raise SandboxError(f"cannot unmount {target}: {os.strerror(ctypes.get_errno() or err)}")


class OverlayRoot:
    """A sandbox's own root: the directory it made for its overlay and the overlay mounted there.

    ``make`` records each step as it succeeds, so ``destroy`` undoes exactly what was made, also
    after a create that failed half-way; it never deletes through a still-mounted overlay.
    """

    def __init__(self, base: Path) -> None:
        self.dirs = OverlayDirs(base)
        self._made = False
        self._mounted = False

    @property
    def mounted(self) -> bool:
        return self._mounted

    def make(self, lower: Path | Sequence[Path], sandbox: str, run_id: str) -> None:
        base = self.dirs.base
        base.parent.mkdir(parents=True, exist_ok=True)
        try:
            base.mkdir()
        except FileExistsError as err:
            raise SandboxError(
                f"sandbox {sandbox} already exists in run {run_id}; use a unique name"
            ) from err
        self._made = True
        mount_overlay(lower, self.dirs)
        self._mounted = True

    def destroy(self) -> list[str]:
        """Unmount, then remove the directory; return what could not be released."""
        errors: list[str] = []
        if self._mounted:
            try:
                umount(self.dirs.merged)
                self._mounted = False
            except SandboxError as err:
                errors.append(str(err))
        if self._made and not self._mounted:
            shutil.rmtree(self.dirs.base, onerror=lambda _f, p, e: _note_rm_error(errors, p, e[1]))
            self._made = False
        return errors


def _note_rm_error(errors: list[str], path: str, err: BaseException) -> None:
    """A path already gone is what removal wants; anything else is a leak to report."""
    if not isinstance(err, FileNotFoundError):
        errors.append(f"rm {path}: {err}")


@dataclass(frozen=True)
class MountEntry:
    mount_point: str
    fs_type: str
    source: str
    #: the superblock options (the field after the source), e.g. a v1 cgroup's controllers
    super_options: str = ""


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Entries of a /proc/<pid>/mountinfo text (fields per proc(5): the fs type follows ``-``)."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 3:
            continue
        opts = fields[sep + 3] if len(fields) > sep + 3 else ""
        entries.append(MountEntry(_unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2]), opts))
    return entries


def overlay_mounts(entries: list[MountEntry], predicate: Callable[[str], bool]) -> Iterator[MountEntry]:
    """Overlay entries whose mount point satisfies ``predicate``, deepest first (safe unmount order)."""
    chosen = [e for e in entries if e.fs_type == "overlay" and predicate(e.mount_point)]
    yield from sorted(chosen, key=lambda e: e.mount_point.count("/"), reverse=True)


def find_mounts(match: Callable[[str], bool], mountinfo: str | None = None) -> list[str]:
    """Mount points one of whose path components ``match`` accepts, deepest first."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    found = {
        e.mount_point for e in parse_mountinfo(mountinfo) if any(match(p) for p in Path(e.mount_point).parts)
    }
    return sorted(found, key=lambda p: -p.count("/"))


def gc_overlay_roots(mountinfo: Path, work_dir: Path, owned: Callable[[str], bool]) -> list[str]:
    """Remove dead sandboxes' :class:`OverlayRoot` s: unmount every overlay at ``<root>/merged`` whose
    root's name ``owned`` accepts (read from the ``mountinfo`` file), then remove those roots under
    ``work_dir``, never one whose overlay is still mounted. Returns what went."""
    try:
        text = mountinfo.read_text()
    except OSError:
        text = ""

    def ours(mount_point: str) -> bool:
        p = Path(mount_point)
        return p.name == "merged" and owned(p.parent.name)

    removed: list[str] = []
    still_mounted: set[str] = set()
    for entry in overlay_mounts(parse_mountinfo(text), ours):
        try:
            umount(Path(entry.mount_point))
        except SandboxError as err:
            log.warning("%s", err)
            still_mounted.add(entry.mount_point)
            continue
        shutil.rmtree(Path(entry.mount_point).parent, ignore_errors=True)
        removed.append(f"overlay {entry.mount_point}")
    if work_dir.is_dir():
        for d in work_dir.iterdir():
            if d.is_dir() and owned(d.name) and str(d / "merged") not in still_mounted:
                with contextlib.suppress(OSError):
                    shutil.rmtree(d)
                    removed.append(f"dir {d}")
    return removed
