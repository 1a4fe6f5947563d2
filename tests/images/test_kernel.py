"""The micro guest kernel's recipe, its config checks, its initramfs and the staged build, without
building a kernel (that is set-up's job: `isobench image build`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.errors import UsageError
from isobench.gc import gc
from isobench.images.builder import (
    BuildError,
    list_images,
    remove_image,
    remove_interrupted_builds,
    staged_build,
)
from isobench.images.kernel import (
    KERNEL_NAME,
    KernelRecipe,
    MicroKernel,
    config_fragment,
    config_hz,
    default_kernel_recipe,
    find_micro_kernel,
    fragment_options,
    init_compiler,
    kernel_patch,
    micro_init_digest,
    micro_init_source,
    micro_initrd,
    missing_options,
)


def test_the_fragment_has_what_the_agent_and_the_workloads_need() -> None:
    opts = fragment_options(config_fragment())
    needed = {
        # PVH entry (qemu -kernel vmlinux), both virtio transports
        "CONFIG_PVH",
        "CONFIG_VIRTIO_PCI",
        "CONFIG_VIRTIO_MMIO",
        # root and data disk, the agent's virtio-serial port, the NIC
        "CONFIG_VIRTIO_BLK",
        "CONFIG_EXT4_FS",
        "CONFIG_VIRTIO_CONSOLE",
        "CONFIG_VIRTIO_NET",
        "CONFIG_INET",
        # what the agent mounts and the initramfs uses
        "CONFIG_DEVTMPFS",
        "CONFIG_TMPFS",
        "CONFIG_UNIX98_PTYS",
        "CONFIG_BLK_DEV_INITRD",
        # the workload tools: fio's libaio and io_uring engines, stress-ng's and sysbench's timers
        "CONFIG_AIO",
        "CONFIG_IO_URING",
        "CONFIG_POSIX_TIMERS",
        "CONFIG_FUTEX",
    }
    assert {k for k, v in opts.items() if v == "y"} >= needed
    assert "CONFIG_MODULES" not in opts  # tinyconfig has none, and the micro initramfs loads none


def test_fragment_options_and_what_olddefconfig_dropped() -> None:
    fragment = '# a comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x"\n'
    assert fragment_options(fragment) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x"'}
    resolved = 'CONFIG_A=y\nCONFIG_C="x"\n'
    assert missing_options(fragment, resolved) == []
    # an option whose dependency the fragment lacks is silently off after olddefconfig: caught
    assert missing_options(fragment, "# CONFIG_A is not set\nCONFIG_B=y\n") == [
        "CONFIG_A=y",
        "CONFIG_B=n",
        'CONFIG_C="x"',
    ]


def test_digest_follows_the_source_version_and_the_fragment_only(tmp_path: Path) -> None:
    r = KernelRecipe(source=tmp_path / "a.tar.xz", source_version="6.1.1-1", fragment="CONFIG_A=y\n")
    assert r.digest() == KernelRecipe(tmp_path / "elsewhere.tar.xz", "6.1.1-1", "CONFIG_A=y\n").digest()
    assert r.digest() != KernelRecipe(r.source, "6.1.1-2", r.fragment).digest()
    assert r.digest() != KernelRecipe(r.source, r.source_version, "CONFIG_A=y\nCONFIG_B=y\n").digest()
    # a comment is no input
    assert r.digest() == KernelRecipe(r.source, r.source_version, "# why\nCONFIG_A=y\n").digest()
    # the patch is
    assert r.digest() != KernelRecipe(r.source, r.source_version, r.fragment, patch="--- a/x\n").digest()
    assert len(r.digest()) == 16


def test_recipe_needs_the_source_package(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"apt-get install linux-source-6\.1"):
        default_kernel_recipe(tmp_path, version_of=lambda _p: "6.1.1-1")
    (tmp_path / "linux-source-6.1.tar.xz").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"linux-source-6\.1"):
        default_kernel_recipe(tmp_path, version_of=lambda _p: "")  # the tarball without its package
    r = default_kernel_recipe(tmp_path, version_of=lambda _p: "6.1.1-1")
    assert (r.source_version, r.fragment, r.patch) == ("6.1.1-1", config_fragment(), kernel_patch())


def test_the_patch_is_what_the_micro_guest_relies_on() -> None:
    """Its two changes, to the files they belong in (the build applies it with patch -p1)."""
    patch = kernel_patch()
    files = re.findall(r"^\+\+\+ b/(\S+)$", patch, re.MULTILINE)
    assert files == ["arch/x86/kernel/apic/apic.c", "arch/x86/mm/init.c"]
    assert 'early_param("lapic_timer_period"' in patch
    assert "free_reserved_area((void *)begin, (void *)end, -1, what);" in patch


def test_config_hz() -> None:
    assert config_hz("CONFIG_HZ_250=y\nCONFIG_HZ=250\n") == 250
    with pytest.raises(UsageError, match="CONFIG_HZ"):
        config_hz("CONFIG_HZ_250=y\n")


def _kernel(state: Path, digest: str = "k1") -> MicroKernel:
    root = state / "images" / f"{KERNEL_NAME}-{digest}"
    root.mkdir(parents=True)
    (root / "vmlinux").write_bytes(b"\x7fELF")
    (root / ".complete").write_text(digest)
    return MicroKernel(KERNEL_NAME, digest, root)


def test_find_the_micro_kernel_and_remove_it_like_an_image(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="isobench image build"):
        find_micro_kernel(tmp_path)
    k = _kernel(tmp_path)
    assert find_micro_kernel(tmp_path) == k
    assert [i.name for i in list_images(tmp_path)] == [KERNEL_NAME]
    remove_image(tmp_path, KERNEL_NAME)
    assert not k.root.exists()


def _fake_gcc(compiled: list[bytes]) -> Callable[[Path, Path], None]:
    def cc(src: Path, out: Path) -> None:
        compiled.append(src.read_bytes())
        out.write_bytes(b"\x7fELF init")

    return cc


def test_the_micro_initramfs_is_one_static_init_named_after_its_source(tmp_path: Path) -> None:
    k = _kernel(tmp_path)
    compiled: list[bytes] = []
    out = micro_initrd(k, _fake_gcc(compiled))
    assert compiled == [micro_init_source()]
    assert out == k.root / f"initrd-{micro_init_digest(init_compiler())}.img"
    # named after the compiler too: musl's /init is not glibc's
    assert micro_init_digest("musl-gcc") != micro_init_digest("gcc")
    listing = subprocess.run(["cpio", "-itv"], stdin=out.open("rb"), capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    assert sorted(line.split()[-1] for line in lines) == ["dev", "init", "newroot", "proc"]
    assert any(line.startswith("-rwxr-xr-x") and line.endswith(" init") for line in lines)
    stamp = out.stat().st_mtime_ns
    assert micro_initrd(k, _fake_gcc(compiled)) == out and out.stat().st_mtime_ns == stamp
    assert len(compiled) == 1  # built once per version of the source
    assert [p.name for p in k.root.iterdir() if p.name.startswith(".initrd")] == []


def test_a_failing_init_build_leaves_no_initramfs(tmp_path: Path) -> None:
    k = _kernel(tmp_path)

    def broken(_src: Path, _out: Path) -> None:
        raise UsageError("cannot build the micro guest's /init (error); install gcc and libc6-dev")

    with pytest.raises(UsageError, match="install gcc"):
        micro_initrd(k, broken)
    assert sorted(p.name for p in k.root.iterdir()) == [".complete", "vmlinux"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (set-up installs it)")
def test_the_micro_init_compiles_static_and_warning_free(tmp_path: Path) -> None:
    """With the compiler micro_initrd picks here (musl-gcc when installed, else glibc's gcc)."""
    src = tmp_path / "microinit.c"
    src.write_bytes(micro_init_source())
    out = tmp_path / "init"
    res = subprocess.run(
        [init_compiler(), "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(src)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert b"isobench-agent" in out.read_bytes()


def test_a_failed_staged_build_leaves_no_directory_and_keeps_its_log(tmp_path: Path) -> None:
    said: list[str] = []

    def failing_build() -> None:
        with staged_build(tmp_path, KERNEL_NAME, "d1", said.append) as tmp:
            (tmp / "build.log").write_text("make: *** error\n")
            raise BuildError("build vmlinux failed")

    with pytest.raises(BuildError):
        failing_build()
    base = tmp_path / "images"
    assert [p.name for p in base.iterdir()] == [f".failed-{KERNEL_NAME}-d1.log"]
    assert any("build log kept" in s for s in said)
    with staged_build(tmp_path, KERNEL_NAME, "d2", said.append) as tmp:
        (tmp / "vmlinux").write_bytes(b"\x7fELF")
    assert find_micro_kernel(tmp_path).digest == "d2"


def test_gc_removes_builds_killed_outright_and_spares_running_ones(tmp_path: Path) -> None:
    base = tmp_path / "images"
    dead = base / f".tmp-{KERNEL_NAME}-d1-999999999"  # no such pid
    running = base / f".tmp-{KERNEL_NAME}-d2-{os.getpid()}"
    for d in (dead, running):
        (d / "src").mkdir(parents=True)
    assert gc(tmp_path).removed == [f"image build: {dead}"]
    assert running.is_dir() and not dead.exists()
    assert remove_interrupted_builds(tmp_path / "nowhere") == []


def test_guests_created_at_once_build_one_good_initramfs(tmp_path: Path) -> None:
    import threading

    k = _kernel(tmp_path)
    go = threading.Barrier(4)

    def slow_cc(_src: Path, out: Path) -> None:
        go.wait()  # every thread is past the "is it built?" check before any writes
        out.write_bytes(b"\x7fELF init" * 1000)

    got: list[Path] = []
    threads = [threading.Thread(target=lambda: got.append(micro_initrd(k, slow_cc))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got) == 4
    listing = subprocess.run(["cpio", "-it"], stdin=got[0].open("rb"), capture_output=True, check=True)
    assert sorted(listing.stdout.decode().split()) == ["dev", "init", "newroot", "proc"]
    assert [p.name for p in k.root.iterdir() if p.name.startswith(".")] == [".complete"]
