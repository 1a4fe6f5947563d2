"""How each kind of driver attaches a layer stack: overlay lower directories (own runtime, runc) or a
qcow2 chain as the guest's data disk (qemu's command line, libvirt's domain XML)."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.drivers.base import LayerStack, LayerStackKind, SandboxSpec
from isobench.drivers.container.config import check_overlay_fits, config_from_spec
from isobench.drivers.container.driver import ContainerDriver
from isobench.drivers.qemu.command import QemuConfig, qemu_argv
from isobench.drivers.qemu.driver import QemuDriver
from isobench.drivers.runc.driver import RuncDriver
from isobench.drivers.vm.driver import VmDriver
from isobench.errors import SandboxError, UsageError
from isobench.mounts import OverlayDirs, overlay_options


def _layers(tmp_path: Path, depth: int) -> LayerStack:
    dirs = tuple(tmp_path / "stack" / str(i) for i in reversed(range(depth)))
    for d in dirs:
        d.mkdir(parents=True)
    chain = tuple(tmp_path / f"{i:03d}.qcow2" for i in reversed(range(depth)))
    return LayerStack(depth=depth, digest="d", dirs=dirs, chain=chain)


def test_each_driver_says_how_it_stacks_layers() -> None:
    assert ContainerDriver.capabilities.layer_stack is LayerStackKind.OVERLAY_LOWERS
    assert RuncDriver.capabilities.layer_stack is LayerStackKind.OVERLAY_LOWERS
    assert QemuDriver.capabilities.layer_stack is LayerStackKind.QCOW2_CHAIN
    assert VmDriver.capabilities.layer_stack is LayerStackKind.QCOW2_CHAIN
    assert ContainerDriver.capabilities.layers_path("isobench-layers/d") == "/isobench-layers/d"
    assert QemuDriver.capabilities.layers_path("isobench-layers/d") == "/data/isobench-layers/d"
    stack = LayerStack(depth=1, digest="d", dirs=(Path("/l"),))
    assert stack.has(LayerStackKind.OVERLAY_LOWERS) and not stack.has(LayerStackKind.QCOW2_CHAIN)


def test_the_container_stacks_the_layers_between_its_extra_layers_and_the_image(tmp_path: Path) -> None:
    image, extra = tmp_path / "image", tmp_path / "extra"
    image.mkdir()
    extra.mkdir()
    stack = _layers(tmp_path, 3)
    spec = SandboxSpec(name="s", run_id="r", layers=stack, options={"layers": [str(extra)]})
    config = config_from_spec(spec, image, euid=0, egid=0)
    assert config.lowers == (extra, *stack.dirs, image)
    check_overlay_fits(config, spec, tmp_path / "work")


def test_a_stack_too_deep_for_one_page_of_mount_options_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 200)
    stack = _layers(deep, 30)
    spec = SandboxSpec(name="s", run_id="r", layers=stack)
    (tmp_path / "image").mkdir()
    config = config_from_spec(spec, tmp_path / "image", euid=0, egid=0)
    with pytest.raises(
        UsageError, match=r"31 overlay layers need ~\d+ bytes of mount options, over the 4096"
    ):
        check_overlay_fits(config, spec, tmp_path / "work")
    dirs = OverlayDirs(tmp_path / "sb")
    with pytest.raises(SandboxError, match="over the 4096 mount"):
        overlay_options((*stack.dirs, tmp_path / "image"), dirs)


def test_runc_overlay_names_every_layer_topmost_first(tmp_path: Path) -> None:
    dirs = OverlayDirs(Path("/w/sb"))
    data = overlay_options((Path("/l/1"), Path("/l/0"), Path("/img")), dirs)
    assert data == "lowerdir=/l/1:/l/0:/img,upperdir=/w/sb/upper,workdir=/w/sb/work"


def test_qemu_attaches_the_chain_overlay_as_qcow2() -> None:
    cfg = QemuConfig(
        name="g", machine="q35", accel="tcg", memory_mib=256, vcpus=1, kernel=Path("/k"),
        initrd=Path("/i"), cmdline="", data_disk=Path("/g/layers.qcow2"), data_format="qcow2",
    )  # fmt: skip
    drives = [a for a in qemu_argv(cfg) if a.startswith("file=/g/layers.qcow2")]
    assert len(drives) == 1 and ",format=qcow2," in drives[0]


def test_a_guest_takes_a_volume_or_a_layer_stack_not_both(tmp_path: Path) -> None:
    from isobench.drivers.guest.datadisk import check_volume

    check_volume(tmp_path)
    with pytest.raises(UsageError, match=r"its volume .* or its layer stack, not both"):
        check_volume(tmp_path, layers=_layers(tmp_path, 1))
