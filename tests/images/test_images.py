from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from isobench.errors import UsageError
from isobench.images import ImageMissing, find_image
from isobench.images.builder import host_apt_sources, list_images, remove_image
from isobench.images.initramfs import CpioEntry, module_load_order, write_cpio
from isobench.images.recipe import Recipe, read_host_suite


def _fake_modules(tmp_path: Path) -> Path:
    mods = tmp_path / "6.1.0-test-cloud-amd64"
    (mods / "kernel/drivers/virtio").mkdir(parents=True)
    (mods / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
    )
    (mods / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return mods


def test_module_order_puts_dependencies_first(tmp_path: Path) -> None:
    mods = _fake_modules(tmp_path)
    order = module_load_order(mods, ["virtio_pci", "virtio_blk", "ext4"])
    names = [Path(m).stem for m in order]
    assert names == ["virtio", "virtio_ring", "virtio_pci", "virtio_blk"]


def test_unknown_module_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nosuch"):
        module_load_order(_fake_modules(tmp_path), ["nosuch"])


def test_cpio_is_readable_by_cpio_tool(tmp_path: Path) -> None:
    out = tmp_path / "x.cpio"
    write_cpio(
        [
            CpioEntry("bin", 0o040755),
            CpioEntry("bin/a", 0o100755, b"hello"),
            CpioEntry("bin/sh", 0o120777, b"a"),
        ],
        out,
    )
    listing = subprocess.run(["cpio", "-it"], stdin=out.open("rb"), capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["bin", "bin/a", "bin/sh"]
    assert out.read_bytes() == out.read_bytes()  # and reproducible:
    out2 = tmp_path / "y.cpio"
    write_cpio(
        [
            CpioEntry("bin", 0o040755),
            CpioEntry("bin/a", 0o100755, b"hello"),
            CpioEntry("bin/sh", 0o120777, b"a"),
        ],
        out2,
    )
    assert out.read_bytes() == out2.read_bytes()


def test_digest_changes_with_inputs_only(tmp_path: Path) -> None:
    mods = _fake_modules(tmp_path)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k1")
    a = Recipe("default", "bookworm", kernel, mods)
    assert a.digest() == Recipe("default", "bookworm", kernel, mods).digest()
    assert a.digest() != Recipe("default", "trixie", kernel, mods).digest()
    assert a.digest() != Recipe("default", "bookworm", kernel, mods, packages=("fio",)).digest()


def test_kernel_file_content_is_in_the_digest(tmp_path: Path) -> None:
    mods = _fake_modules(tmp_path)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k1")
    d1 = Recipe("default", "bookworm", kernel, mods).digest()
    kernel.write_bytes(b"k2")
    assert Recipe("default", "bookworm", kernel, mods).digest() != d1


def test_host_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("# only comments\n")
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text("Types: deb\n")
    (d / "other.list.disabled").write_text("deb x y z\n")
    assert host_apt_sources(tmp_path) == [d / "debian.sources"]
    (d / "debian.sources").unlink()
    with pytest.raises(UsageError, match="no apt sources"):
        host_apt_sources(tmp_path)


def test_read_host_suite(tmp_path: Path) -> None:
    f = tmp_path / "os-release"
    f.write_text('NAME="Debian"\nVERSION_CODENAME=bookworm\n')
    assert read_host_suite(f) == "bookworm"
    f.write_text("NAME=x\n")
    with pytest.raises(UsageError):
        read_host_suite(f)


def test_list_find_and_remove(tmp_path: Path) -> None:
    base = tmp_path / "images"
    (base / "default-aaaa").mkdir(parents=True)
    (base / "default-aaaa" / ".complete").write_text("aaaa\n")
    (base / "default-bbbb").mkdir()  # incomplete: invisible to find_image
    (base / ".tmp-default-cccc-1").mkdir()
    infos = {i.digest: i.complete for i in list_images(tmp_path)}
    assert infos == {"aaaa": True, "bbbb": False}
    assert find_image(tmp_path).digest == "aaaa"
    remove_image(tmp_path, "default", "aaaa")
    with pytest.raises(ImageMissing, match="isobench image build"):
        find_image(tmp_path)
    with pytest.raises(ImageMissing):
        remove_image(tmp_path, "nosuch")


def test_prune_keeps_the_new_build_and_other_names(tmp_path: Path) -> None:
    from isobench.images.builder import prune_images

    base = tmp_path / "images"
    for d in ("default-aaaa", "default-bbbb", "default-cccc", "other-dddd", "default-x-eeee"):
        (base / d).mkdir(parents=True)
        (base / d / ".complete").write_text("x\n")
    gone = prune_images(tmp_path, "default", keep="bbbb")
    assert sorted(p.name for p in gone) == ["default-aaaa", "default-cccc"]
    # another image whose name merely starts with "default-" is not a build of "default"
    assert sorted(p.name for p in base.iterdir()) == ["default-bbbb", "default-x-eeee", "other-dddd"]


def test_image_rootfs_checks_and_resolves(tmp_path: Path) -> None:
    from isobench.errors import UsageError
    from isobench.images import image_rootfs

    (tmp_path / "root").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "root")
    assert image_rootfs(tmp_path / "link", tmp_path) == (tmp_path / "root").resolve()
    with pytest.raises(UsageError, match="is not a directory; run `isobench image build`"):
        image_rootfs(tmp_path / "missing", tmp_path)
    with pytest.raises(UsageError, match="isobench image build"):
        image_rootfs(None, tmp_path / "empty-state")  # no default image built there
