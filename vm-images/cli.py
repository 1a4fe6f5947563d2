"""``isobench image build|list|rm``: the click group the main CLI attaches."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from isobench.images.builder import build_image, list_images, prune_images, remove_image
from isobench.images.kernel import KERNEL_NAME, build_micro_kernel, default_kernel_recipe, micro_initrd
from isobench.images.recipe import default_recipe
from isobench.layers import remove_stacks
from isobench.runstate import live_runs

__all__ = ["image_group"]

_STATE = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("/var/lib/isobench"),
    show_default=True,
    help="Where built images live.",
)


@click.group("image")
def image_group() -> None:
    """Build, list and remove the suite's root filesystem / guest image."""


@image_group.command("build")
@_STATE
@click.option("--name", default="default", show_default=True)
@click.option("--suite", default=None, help="Debian suite (default: the host's release).")
@click.option("--disk-size-mib", default=4096, show_default=True, type=int, help="Sparse root disk size.")
@click.option("--force", is_flag=True, help="Rebuild even if an identical build exists.")
@click.option("--keep-old", is_flag=True, help="Keep older builds of NAME (default: remove them).")
@click.option(
    "--micro-kernel/--no-micro-kernel",
    default=True,
    show_default=True,
    help='Also build the micro guest kernel (guest drivers\' kernel = "micro"; minutes, once).',
)
def build_cmd(
    state_dir: Path,
    name: str,
    suite: str | None,
    disk_size_mib: int,
    force: bool,
    keep_old: bool,
    micro_kernel: bool,
) -> None:
    """Build the image and the micro guest kernel (each a no-op when its inputs are unchanged);
    older builds go."""
    logging.getLogger("isobench.images").setLevel(logging.INFO)
    recipe = default_recipe(name=name, suite=suite, disk_size_mib=disk_size_mib)

    def say(msg: str) -> None:
        click.echo(f"[image] {msg}", err=True)

    img = build_image(state_dir, recipe, force=force, progress=say)
    kernel = None
    if micro_kernel:
        kernel = build_micro_kernel(state_dir, default_kernel_recipe(), force=force, progress=say)
        micro_initrd(kernel)
    if not keep_old:
        live = live_runs(state_dir)
        if live:
            say(f"older builds kept: run(s) {', '.join(live)} may be using them")
        else:
            for p in prune_images(state_dir, name, keep=img.digest):
                say(f"removed older build {p.name}")
                for stack in remove_stacks(state_dir, image_digests=[p.name.removeprefix(f"{name}-")]):
                    say(f"removed its layer stack {stack.name}")
            if kernel is not None:
                for p in prune_images(state_dir, KERNEL_NAME, keep=kernel.digest):
                    say(f"removed older build {p.name}")
    click.echo(str(img.root))


@image_group.command("list")
@_STATE
def list_cmd(state_dir: Path) -> None:
    """Show built images."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "digest", "complete", "size (MiB)", "path")
    for info in list_images(state_dir):
        table.add_row(
            info.name,
            info.digest,
            "yes" if info.complete else "no",
            f"{info.size_bytes / (1 << 20):.0f}",
            str(info.root),
        )
    Console().print(table)


@image_group.command("rm")
@_STATE
@click.argument("name")
@click.option("--digest", default=None, help="Only this build (prefix).")
def rm_cmd(state_dir: Path, name: str, digest: str | None) -> None:
    """Remove builds of NAME."""
    for p in remove_image(state_dir, name, digest):
        click.echo(f"removed {p}")
        # The layer stacks built over it (isobench.layers) go with it.
        for stack in remove_stacks(state_dir, image_digests=[p.name.removeprefix(f"{name}-")]):
            click.echo(f"removed {stack}")
