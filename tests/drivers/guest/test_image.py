"""The guest's root-disk overlay: made by qemu-img once per image, copied for every guest after."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from isobench.drivers.guest.image import make_overlay
from isobench.errors import SandboxError
from isobench.images import Image
from isobench.testing import fake_tool


def _image(state: Path) -> Image:
    img = Image("default", "img1", state / "images/default-img1")
    img.root.mkdir(parents=True)
    img.disk.write_bytes(bytes(4096))
    return img


def _fake_qemu_img(tmp_path: Path, calls: Path) -> str:
    """A qemu-img that records its argv and writes its arguments as the "overlay"."""
    return fake_tool(
        tmp_path / "qemu-img", f'echo "$@" >> {calls}\nfor a; do out=$a; done\necho "qcow2 $*" > "$out"'
    )


def test_qemu_img_runs_once_per_image_and_every_guest_gets_a_copy(tmp_path: Path) -> None:
    img = _image(tmp_path)
    calls = tmp_path / "calls"
    qemu_img = _fake_qemu_img(tmp_path, calls)
    templates = tmp_path / "state/guest"
    for guest in ("g1", "g2", "g3"):
        (tmp_path / guest).mkdir()
        make_overlay(img, Path("root.qcow2"), qemu_img=qemu_img, cwd=tmp_path / guest, template_dir=templates)
    assert len(calls.read_text().splitlines()) == 1
    first = (tmp_path / "g1/root.qcow2").read_text()
    assert f"-b {img.disk}" in first and "-F raw" in first
    assert (tmp_path / "g3/root.qcow2").read_text() == first
    (template,) = templates.iterdir()  # named after the image (and the qemu-img binary), no leftovers
    assert template.name.startswith("overlay-default-img1-") and template.read_text() == first
    # without a template dir (or for another image) qemu-img runs again
    make_overlay(img, tmp_path / "g4.qcow2", qemu_img=qemu_img)
    assert len(calls.read_text().splitlines()) == 2


def test_a_failing_qemu_img_leaves_no_template(tmp_path: Path) -> None:
    img = _image(tmp_path)
    tool = fake_tool(tmp_path / "qemu-img", "echo 'no space left' >&2; exit 1")
    templates = tmp_path / "guest"
    with pytest.raises(SandboxError, match="no space left"):
        make_overlay(img, tmp_path / "root.qcow2", qemu_img=tool, template_dir=templates)
    assert list(templates.iterdir()) == []


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (set-up installs it)")
def test_a_copied_overlay_is_a_qcow2_over_the_image(tmp_path: Path) -> None:
    img = _image(tmp_path)
    make_overlay(img, tmp_path / "a.qcow2", template_dir=tmp_path / "t")
    make_overlay(img, tmp_path / "b.qcow2", template_dir=tmp_path / "t")
    info = subprocess.run(
        ["qemu-img", "info", str(tmp_path / "b.qcow2")], check=False, capture_output=True, text=True
    )
    assert info.returncode == 0 and "file format: qcow2" in info.stdout
    assert f"backing file: {img.disk}" in info.stdout
