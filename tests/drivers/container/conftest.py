"""Fixtures: a busybox root filesystem (no mmdebstrap needed) and a container driver on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.container import ContainerDriver
from isobench.images.busybox import build_busybox_rootfs


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_busybox_rootfs(tmp_path_factory.mktemp("image") / "rootfs")
    (root / "etc" / "image-file").write_text("from the image\n")
    return root


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the session so the helper is compiled once.
    return tmp_path_factory.mktemp("state")


@pytest.fixture
def ctx(state_dir: Path, tmp_path: Path) -> DriverContext:
    run_id = f"t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return DriverContext(state_dir=state_dir, work_dir=tmp_path / "work", run_id=run_id)


@pytest.fixture
def driver(ctx: DriverContext) -> Iterator[ContainerDriver]:
    drv = ContainerDriver(ctx)
    yield drv
    # Every test must clean up itself; gc here only keeps one failure from poisoning the next test.
    drv.gc(ctx.run_id)


@pytest.fixture
def make_spec(ctx: DriverContext, rootfs: Path):  # type: ignore[no-untyped-def]
    def make(name: str = "box", **kw: object) -> SandboxSpec:
        kw.setdefault("image", rootfs)
        return SandboxSpec(name=name, run_id=ctx.run_id, **kw)  # type: ignore[arg-type]

    return make


def find_leftovers(ctx: DriverContext) -> list[str]:
    """Everything of ctx.run_id still on the host: cgroups, mounts, veths, dirs, records."""
    from isobench.drivers.container import names

    prefix = names.run_prefix(ctx.run_id)
    found: list[str] = []
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        if ctrl.is_dir():
            found += [str(p) for p in ctrl.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    found += [line for line in Path("/proc/mounts").read_text().splitlines() if prefix in line]
    veth = names.veth_run_prefix(ctx.run_id)
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if n.startswith(veth)]
    if ctx.work_dir.exists():
        found += [str(p) for p in ctx.work_dir.iterdir()]
    live = ctx.state_dir / "container" / "live"
    if live.exists():
        found += [str(p) for p in live.iterdir() if p.name.startswith(prefix)]
    # Named network namespaces are never created by this driver; unnamed ones die with the init.
    netns = Path("/run/netns")
    if netns.exists():
        found += [f"netns {n.name}" for n in netns.iterdir() if prefix in n.name]
    return found


@pytest.fixture
def leftovers(ctx: DriverContext):  # type: ignore[no-untyped-def]
    return lambda: find_leftovers(ctx)
