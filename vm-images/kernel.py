"""The micro guest kernel: Linux from Debian's ``linux-source-6.1`` package, ``make tinyconfig``
plus the fragment kept as data in ``micro-kernel.config``, everything built in (no modules), booted
as an uncompressed ``vmlinux`` through its PVH entry (``qemu -kernel vmlinux``), so no firmware
decompresses a bzImage under TCG.

A build lives in ``<state_dir>/images/kernel-micro-<digest>/`` (``vmlinux``, the resolved
``config``, ``kernel.json``) next to the images, so ``isobench image list|rm`` and the staged-build
rules of builder.py cover it; the digest hashes the source package's version, the fragment, the
patch and :data:`KERNEL_RECIPE_VERSION`, so a machine pays the build (6.5 min on 2 quiet cores) once
per change. ``micro-kernel.patch`` (data too, applied with ``patch -p1``) holds the two boot-time
changes no config option gives: a ``lapic_timer_period=`` argument that skips the local APIC timer's
100 ms calibration (the guest drivers pass the period: drivers/guest/flavour.py), and freeing the
kernel's init memory without poisoning it (under TCG 45-60 ms of self-modifying-code slow path).
Its initramfs holds one static program, ``agent/microinit.c`` (what the stock guest's ``init.sh`` does,
without a shell or busybox: under TCG every process started before the agent costs tens of
milliseconds): ``initrd-<digest of that source>.img`` in the kernel's directory, written by
:func:`micro_initrd` on first use (uncompressed, as the stock one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from isobench.errors import UsageError
from isobench.images import Build, images_dir, newest_build
from isobench.images.builder import BuildError, Progress, run_step, staged_build
from isobench.images.initramfs import CpioEntry, write_cpio

log = logging.getLogger(__name__)

__all__ = [
    "KERNEL_NAME",
    "KERNEL_RECIPE_VERSION",
    "SOURCE_PACKAGE",
    "KernelRecipe",
    "MicroKernel",
    "build_micro_kernel",
    "config_fragment",
    "config_hz",
    "default_kernel_recipe",
    "find_micro_kernel",
    "fragment_options",
    "init_compiler",
    "kernel_patch",
    "micro_init_digest",
    "micro_init_source",
    "micro_initrd",
    "missing_options",
]

#: The image name the micro kernel's builds go by (``isobench image rm kernel-micro``).
KERNEL_NAME = "kernel-micro"
#: Bump when the build changes in a way the source version and the fragment do not show.
KERNEL_RECIPE_VERSION = 2
SOURCE_PACKAGE = "linux-source-6.1"
FRAGMENT = "micro-kernel.config"
PATCH = "micro-kernel.patch"


@dataclass(frozen=True)
class KernelRecipe:
    #: The source tarball the package installs (``/usr/src/linux-source-6.1.tar.xz``).
    source: Path
    #: The package version (``dpkg-query``): a new upload is a new kernel.
    source_version: str
    fragment: str
    #: A unified diff applied to the source tree (``patch -p1``); empty: none.
    patch: str = ""

    def digest(self) -> str:
        """16 hex digits of sha256 over the source version, the fragment's options (not its
        comments: rewording one must not cost a rebuild), the patch and the recipe version."""
        inputs = {
            "package": SOURCE_PACKAGE,
            "version": self.source_version,
            "recipe": KERNEL_RECIPE_VERSION,
            "options": sorted(fragment_options(self.fragment).items()),
            "patch": hashlib.sha256(self.patch.encode()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


class MicroKernel(Build):
    """A micro kernel build (``kernel-micro-<digest>``): vmlinux, its config and its initrds."""

    @property
    def vmlinux(self) -> Path:
        """The uncompressed ELF kernel; qemu enters it through its PVH note."""
        return self.root / "vmlinux"

    @property
    def config(self) -> Path:
        return self.root / "config"

    def initrd(self, init_digest: str) -> Path:
        return self.root / f"initrd-{init_digest}.img"


def config_fragment() -> str:
    return resources.files("isobench.images").joinpath(FRAGMENT).read_text()


def kernel_patch() -> str:
    return resources.files("isobench.images").joinpath(PATCH).read_text()


def fragment_options(fragment: str) -> dict[str, str]:
    """``CONFIG_X`` -> value for every option the fragment sets (``is not set`` lines as ``n``)."""
    out: dict[str, str] = {}
    for raw in fragment.splitlines():
        line = raw.strip()
        if m := re.fullmatch(r"(CONFIG_[A-Za-z0-9_]+)=(.*)", line):
            out[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"# (CONFIG_[A-Za-z0-9_]+) is not set", line):
            out[m.group(1)] = "n"
    return out


def missing_options(fragment: str, config: str) -> list[str]:
    """The fragment's options the resolved ``.config`` does not have as asked (a dependency the
    fragment forgot turns an option off silently in ``olddefconfig``)."""
    have = fragment_options(config)
    return [f"{k}={v}" for k, v in fragment_options(fragment).items() if have.get(k, "n") != v]


def _package_version(package: str) -> str:
    try:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def default_kernel_recipe(
    usr_src: Path = Path("/usr/src"), version_of: Callable[[str], str] = _package_version
) -> KernelRecipe:
    source = usr_src / f"{SOURCE_PACKAGE}.tar.xz"
    version = version_of(SOURCE_PACKAGE)
    if not source.is_file() or not version:
        raise UsageError(
            f"the micro guest kernel is built from {source}; run `apt-get install {SOURCE_PACKAGE}`"
            " (scripts/setup.sh installs it)"
        )
    return KernelRecipe(
        source=source, source_version=version, fragment=config_fragment(), patch=kernel_patch()
    )


def find_micro_kernel(state_dir: Path) -> MicroKernel:
    """The newest complete micro kernel build."""
    root = newest_build(state_dir, KERNEL_NAME)
    if root is None:
        raise UsageError(
            f"the micro guest kernel is not built under {images_dir(state_dir)}; run `isobench image build`"
            ' (or set the guest driver\'s kernel = "stock")'
        )
    return MicroKernel.at(root, KERNEL_NAME)


def build_micro_kernel(
    state_dir: Path,
    recipe: KernelRecipe,
    *,
    force: bool = False,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> MicroKernel:
    """Build the micro kernel unless an identical complete build exists (then it is a no-op)."""
    say = progress or (lambda msg: log.info("%s", msg))
    digest = recipe.digest()
    final = images_dir(state_dir) / f"{KERNEL_NAME}-{digest}"
    if (final / ".complete").exists() and not force:
        say(f"micro kernel {KERNEL_NAME}-{digest} is up to date")
        return MicroKernel(KERNEL_NAME, digest, final)
    started = time.monotonic()
    with staged_build(state_dir, KERNEL_NAME, digest, say) as tmp:
        log_file = tmp / "build.log"
        _build_into(tmp, recipe, log_file, say, jobs or os.cpu_count() or 1)
        meta: Mapping[str, object] = {
            "name": KERNEL_NAME,
            "digest": digest,
            "source_package": SOURCE_PACKAGE,
            "source_version": recipe.source_version,
            "vmlinux_bytes": (tmp / "vmlinux").stat().st_size,
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")
    say(f"built {final} in {time.monotonic() - started:.0f}s")
    return MicroKernel(KERNEL_NAME, digest, final)


def _build_into(tmp: Path, recipe: KernelRecipe, log_file: Path, say: Progress, jobs: int) -> None:
    src_root = tmp / "src"
    src_root.mkdir()
    run_step("unpack source", ["tar", "-xf", str(recipe.source), "-C", str(src_root)], log_file, say)
    trees = [p for p in src_root.iterdir() if (p / "Makefile").is_file()]
    if len(trees) != 1:
        raise BuildError(f"{recipe.source} holds no single kernel tree; see {log_file}")
    tree = trees[0]
    if recipe.patch:
        patch = tmp / PATCH
        patch.write_text(recipe.patch)
        run_step("apply the micro patch", ["patch", "-p1", "-d", str(tree), "-i", str(patch)], log_file, say)
        patch.unlink()
    fragment = tmp / FRAGMENT
    fragment.write_text(recipe.fragment)
    make = ["make", "-C", str(tree), "-s"]
    run_step("tinyconfig", [*make, "tinyconfig"], log_file, say)
    # merge_config.sh keeps its temporary files in the current directory: run it in the tree.
    merge = ["scripts/kconfig/merge_config.sh", "-m", ".config", str(fragment)]
    run_step("merge the micro fragment", merge, log_file, say, cwd=tree)
    run_step("olddefconfig", [*make, "olddefconfig"], log_file, say)
    config = (tree / ".config").read_text()
    missing = missing_options(recipe.fragment, config)
    if missing:
        raise BuildError(
            f"the micro kernel config lost {', '.join(missing)} (a dependency the fragment lacks);"
            f" fix vm-images/{FRAGMENT}"
        )
    # Niced: the build takes minutes on a small host, which may be running other things.
    run_step("build vmlinux", ["nice", "-n", "10", *make, f"-j{jobs}", "vmlinux"], log_file, say)
    shutil.copy2(tree / "vmlinux", tmp / "vmlinux")
    (tmp / "vmlinux").chmod(0o644)
    (tmp / "config").write_text(config)
    shutil.rmtree(src_root)
    fragment.unlink()


def micro_init_source() -> bytes:
    return resources.files("isobench.images").joinpath("agent/microinit.c").read_bytes()


def config_hz(config: str) -> int:
    """The kernel's timer tick rate (``CONFIG_HZ``) from its resolved ``.config``."""
    m = re.search(r"^CONFIG_HZ=(\d+)$", config, re.MULTILINE)
    if m is None:
        raise UsageError(
            "the micro kernel's config has no CONFIG_HZ; rebuild it with `isobench image build --force`"
        )
    return int(m.group(1))


#: Compiles C source ``src`` into a static executable ``out``.
CompileInit = Callable[[Path, Path], None]


def init_compiler() -> str:
    """``musl-gcc`` when installed, else ``gcc`` (glibc). The same /init is 34 KB with musl and
    750 KB with glibc, and the kernel copies, unpacks and frees every byte of the initramfs before
    /init runs: under TCG the unpacking alone took 13 ms of the kernel phase with glibc's."""
    return "musl-gcc" if shutil.which("musl-gcc") else "gcc"


def micro_init_digest(compiler: str) -> str:
    """What names the initramfs: the source of /init and the compiler that built it."""
    return hashlib.sha256(micro_init_source() + b"\0" + compiler.encode()).hexdigest()[:16]


def _cc_static(src: Path, out: Path) -> None:
    cc = init_compiler()
    try:
        res = subprocess.run(
            [cc, "-static", "-O2", "-Wall", "-s", "-o", str(out), str(src)],
            check=False,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise UsageError("the micro guest's /init is built with gcc; install gcc and libc6-dev") from None
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
        raise UsageError(
            f"cannot build the micro guest's /init with {cc} ({last}); install gcc and libc6-dev"
        )


def micro_initrd(kernel: MicroKernel, compile_init: CompileInit = _cc_static) -> Path:
    """The micro kernel's initramfs: /init is ``agent/microinit.c`` built static, plus the mount
    points it uses (the kernel has every driver built in: no modules, no busybox). Written once per
    version of that source and compiler (atomically), uncompressed."""
    src = micro_init_source()
    out = kernel.initrd(micro_init_digest(init_compiler()))
    if out.is_file():
        return out
    # per process and thread: guests created in parallel may both find it missing
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        with tempfile.TemporaryDirectory(prefix="isobench-microinit-") as work:
            c_file, init = Path(work) / "microinit.c", Path(work) / "init"
            c_file.write_bytes(src)
            compile_init(c_file, init)
            entries = [CpioEntry(d, stat.S_IFDIR | 0o755) for d in ("dev", "proc", "newroot")]
            entries.append(CpioEntry("init", stat.S_IFREG | 0o755, init.read_bytes()))
            write_cpio(entries, tmp)
        tmp.chmod(0o644)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
