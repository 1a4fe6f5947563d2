"""Building, listing and removing images.

A build runs in ``<state_dir>/images/.tmp-<name>-<digest>-<pid>/`` and becomes visible only by an
atomic rename to ``<name>-<digest>/`` after its ``.complete`` marker is written, so a crash or
Ctrl-C leaves at most a ``.tmp-*`` directory that the next build removes. The mirror is never named
here: the host's own apt source files are handed to mmdebstrap, which pastes an existing file given
as a mirror into the image's sources (so the image follows whatever mirror the host uses).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from isobench.errors import IsobenchError, UsageError
from isobench.images import Image, ImageMissing, images_dir
from isobench.images.initramfs import initramfs_entries, write_cpio
from isobench.images.recipe import PATH_EXCLUDES, Recipe, agent_source, init_script
from isobench.workloads.overlay import DIR_ENTRIES, FIXTURE_DIRS, FIXTURES, FIXTURES_DIR

log = logging.getLogger(__name__)

__all__ = [
    "BuildError",
    "ImageInfo",
    "build_image",
    "host_apt_sources",
    "list_images",
    "remove_image",
    "remove_interrupted_builds",
    "run_step",
    "staged_build",
]

AGENT_PATH = "usr/local/sbin/isobench-agent"

Progress = Callable[[str], None]


class BuildError(IsobenchError):
    """An image build step failed; the message names the step and the log to read."""


@dataclass(frozen=True)
class ImageInfo:
    name: str
    digest: str
    root: Path
    complete: bool
    size_bytes: int
    built_at: float | None


def host_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[Path]:
    """The host's active apt source files (one-line ``.list`` or deb822 ``.sources``)."""
    found: list[Path] = []
    main = etc_apt / "sources.list"
    if main.exists() and any(
        line.strip() and not line.lstrip().startswith("#") for line in main.read_text().splitlines()
    ):
        found.append(main)
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        found.extend(sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources")))
    if not found:
        raise UsageError(f"no apt sources configured under {etc_apt}; configure apt, then rebuild")
    return found


def run_step(
    step: str, argv: Sequence[str], log_file: Path, progress: Progress, cwd: Path | None = None
) -> None:
    progress(f"{step}: {' '.join(argv[:3])}{' ...' if len(argv) > 3 else ''}")
    with log_file.open("ab") as lf:
        lf.write(f"\n$ {' '.join(argv)}\n".encode())
        lf.flush()
        try:
            proc = subprocess.run(list(argv), stdout=lf, stderr=subprocess.STDOUT, check=False, cwd=cwd)
        except FileNotFoundError as err:
            raise BuildError(f"image build step {step!r} needs {argv[0]}, which is not installed") from err
    if proc.returncode != 0:
        raise BuildError(f"image build step {step!r} failed (exit {proc.returncode}); see {log_file}")


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def remove_interrupted_builds(state_dir: Path, name: str = "") -> list[Path]:
    """Remove the ``.tmp-<name>*`` directories of builds whose process is gone (every name when
    ``name`` is empty): what a build killed outright leaves (a micro kernel's is a source tree)."""
    gone: list[Path] = []
    base = images_dir(state_dir)
    if not base.is_dir():
        return gone
    for stale in sorted(base.glob(f".tmp-{name}*")):
        pid = stale.name.rsplit("-", 1)[-1]
        if stale.is_dir() and not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(stale, ignore_errors=True)
            gone.append(stale)
    return gone


@contextlib.contextmanager
def staged_build(state_dir: Path, name: str, digest: str, say: Progress) -> Iterator[Path]:
    """A fresh ``<images>/.tmp-<name>-<digest>-<pid>/`` for the body to fill. When the body returns,
    its ``.complete`` marker is written and it becomes ``<name>-<digest>/`` by a rename (an older
    build of that digest, under --force, is replaced only then); on every other path it is removed.
    Interrupted builds of ``name`` (their pid gone) are removed first."""
    base = images_dir(state_dir)
    base.mkdir(parents=True, exist_ok=True)
    # The state dir must be traversable by libvirt's unprivileged qemu user.
    for d in (state_dir, base):
        d.chmod(0o755)
    for stale in remove_interrupted_builds(state_dir, name):
        say(f"removed interrupted build {stale.name}")
    final = base / f"{name}-{digest}"
    tmp = base / f".tmp-{name}-{digest}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tmp.chmod(0o755)
    try:
        yield tmp
        (tmp / ".complete").write_text(f"{digest}\n")
        if final.exists():  # --force: replace the old build in one step after the new one is whole
            old = base / f".tmp-{name}-old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        kept = base / f".failed-{name}-{digest}.log"
        with contextlib.suppress(OSError):
            (tmp / "build.log").replace(kept)
            say(f"build log kept at {kept}")
        say(f"build failed; removing {tmp}")
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_image(
    state_dir: Path,
    recipe: Recipe,
    *,
    force: bool = False,
    progress: Progress | None = None,
    etc_apt: Path = Path("/etc/apt"),
) -> Image:
    """Build ``recipe`` unless an identical complete build exists (then it is a no-op)."""
    say = progress or (lambda msg: log.info("%s", msg))
    digest = recipe.digest()
    base = images_dir(state_dir)
    final = base / f"{recipe.name}-{digest}"
    if (final / ".complete").exists() and not force:
        say(f"image {recipe.name}-{digest} is up to date")
        return Image(recipe.name, digest, final)
    started = time.monotonic()
    with staged_build(state_dir, recipe.name, digest, say) as tmp:
        log_file = tmp / "build.log"
        _build_into(tmp, recipe, log_file, say, etc_apt)
        img = Image(recipe.name, digest, tmp)
        meta = {
            "name": recipe.name,
            "digest": digest,
            "suite": recipe.suite,
            "packages": list(recipe.packages),
            "kernel_version": recipe.kernel_version,
            "disk_size_mib": recipe.disk_size_mib,
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
            "package_versions": _package_versions(img.rootfs),
        }
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    say(f"built {final} in {time.monotonic() - started:.0f}s")
    return Image(recipe.name, digest, final)


def write_overlay_fixtures(rootfs: Path) -> None:
    """The lower-layer files the overlay workload copies up, deletes and renames (its FIXTURES):
    written with real bytes, since copy-up skips holes and a sparse file would measure nothing."""
    base = rootfs / FIXTURES_DIR.lstrip("/")
    base.mkdir(parents=True, exist_ok=True)
    chunk = b"i" * (1 << 20)
    for name, size in FIXTURES.items():
        with (base / name).open("wb") as f:
            for off in range(0, size, len(chunk)):
                f.write(chunk[: min(len(chunk), size - off)])
    for d in FIXTURE_DIRS:
        (base / d).mkdir(exist_ok=True)
        for i in range(DIR_ENTRIES):
            (base / d / f"f{i:03d}").write_bytes(bytes(4096))


def _build_into(tmp: Path, recipe: Recipe, log_file: Path, say: Progress, etc_apt: Path) -> None:
    img = Image(recipe.name, "tmp", tmp)
    # 1. The agent, static, so it runs in the guest and in containers without the rootfs' libc.
    src = tmp / "agent.c"
    src.write_bytes(agent_source())
    agent = tmp / "isobench-agent"
    run_step("compile agent", ["gcc", "-static", "-O2", "-Wall", "-o", str(agent), str(src)], log_file, say)
    src.unlink()
    # 2. The root filesystem from Debian packages.
    cmd = [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        *(f"--dpkgopt=path-exclude={p}" for p in PATH_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        recipe.suite,
        str(img.rootfs),
        *(str(p) for p in host_apt_sources(etc_apt)),
    ]
    run_step("debootstrap rootfs", cmd, log_file, say)
    dest = img.rootfs / AGENT_PATH
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(agent, dest)
    dest.chmod(0o755)
    (img.rootfs / "var/tmp/isobench").mkdir(parents=True, exist_ok=True)
    write_overlay_fixtures(img.rootfs)
    # Apt lists and caches are not part of the image's workload content.
    for junk in ("var/lib/apt/lists", "var/cache/apt"):
        p = img.rootfs / junk
        if p.is_dir():
            for child in p.iterdir():
                if child.is_file():
                    child.unlink()
    # 3. Kernel and initramfs. Busybox comes from the rootfs so it is the image's own binary.
    say(f"kernel {recipe.kernel_version} and initramfs")
    shutil.copy2(recipe.kernel, img.kernel)
    img.kernel.chmod(0o644)
    busybox = img.rootfs / "bin/busybox"
    if not busybox.exists():
        raise BuildError(
            f"the rootfs has no /bin/busybox; keep busybox-static in the recipe (see {log_file})"
        )
    write_cpio(initramfs_entries(busybox, init_script(), recipe.modules_dir, recipe.modules), img.initrd)
    img.initrd.chmod(0o644)
    # 4. The raw ext4 root disk. Sparse, so its nominal size is free space for workloads, not bytes.
    used = _dir_size(img.rootfs)
    size_mib = max(recipe.disk_size_mib, used // (1 << 20) * 2 + 256)
    with img.disk.open("wb") as f:
        f.truncate(size_mib << 20)
    run_step(
        "root disk",
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "isobench-root",
            "-U",
            "clear",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
            "-d",
            str(img.rootfs),
            str(img.disk),
        ],
        log_file,
        say,
    )
    # Read-only for everyone: guests get a per-guest qcow2 overlay, never this file.
    img.disk.chmod(0o444)


def _package_versions(rootfs: Path) -> dict[str, str]:
    status = rootfs / "var/lib/dpkg/status"
    versions: dict[str, str] = {}
    if not status.exists():
        return versions
    pkg = ""
    for line in status.read_text(errors="replace").splitlines():
        if line.startswith("Package: "):
            pkg = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and pkg:
            versions[pkg] = line.split(": ", 1)[1]
    return dict(sorted(versions.items()))


def list_images(state_dir: Path) -> list[ImageInfo]:
    base = images_dir(state_dir)
    out: list[ImageInfo] = []
    if not base.is_dir():
        return out
    for p in sorted(base.iterdir()):
        if p.name.startswith(".") or not p.is_dir() or "-" not in p.name:
            continue
        name, digest = p.name.rsplit("-", 1)
        marker = p / ".complete"
        out.append(
            ImageInfo(
                name=name,
                digest=digest,
                root=p,
                complete=marker.exists(),
                size_bytes=_dir_size(p),
                built_at=marker.stat().st_mtime if marker.exists() else None,
            )
        )
    return out


def _discard(root: Path) -> None:
    """Remove one build. Rename first so a concurrent find_image never sees a half-deleted tree."""
    doomed = root.with_name(f".tmp-{root.name}-rm-{os.getpid()}")
    root.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_image(state_dir: Path, name: str, digest: str | None = None) -> list[Path]:
    """Remove every build of ``name`` (or only ``digest``); raise ImageMissing if none matched."""
    gone: list[Path] = []
    for info in list_images(state_dir):
        if info.name == name and (digest is None or info.digest.startswith(digest)):
            _discard(info.root)
            gone.append(info.root)
    if not gone:
        raise ImageMissing(
            f"no image {name!r}{f' with digest {digest}' if digest else ''}; see `isobench image list`"
        )
    return gone


def prune_images(state_dir: Path, name: str, keep: str) -> list[Path]:
    """Remove every build of ``name`` but ``keep`` (a digest). The caller makes sure no run is
    using one: a guest's overlay has its image's disk as backing file."""
    base = images_dir(state_dir)
    gone: list[Path] = []
    if not base.is_dir():
        return gone
    for p in sorted(base.glob(f"{name}-*")):
        if not p.is_dir() or p.name == f"{name}-{keep}" or p.name.rsplit("-", 1)[0] != name:
            continue
        _discard(p)
        gone.append(p)
    return gone
