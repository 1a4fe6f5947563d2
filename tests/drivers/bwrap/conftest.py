"""Fixtures for the bwrap driver tests: a busybox root filesystem and a driver over a tmp work dir."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.bwrap.driver import BwrapDriver

BUSYBOX = Path("/bin/busybox")


def build_busybox_rootfs(root: Path) -> Path:
    """A minimal image: static busybox with its applet links, plus the dirs runtimes mount onto."""
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":  # a self-link would clobber the binary
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "image-marker").write_text("pristine\n")
    return root


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture
def run_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bwrap_driver(tmp_path: Path, run_id: str) -> Iterator[BwrapDriver]:
    ctx = DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    driver = BwrapDriver(ctx)
    yield driver
    # Whatever a failing test left behind must not outlive it.
    driver.gc(run_id)
