"""Fixtures every test folder may use."""

from __future__ import annotations

from pathlib import Path

import pytest
from isobench.images.busybox import build_busybox_rootfs


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem shared by the session: tests must never write into it (that
    property is itself tested: every driver's writes land in its own upper layer)."""
    return build_busybox_rootfs(tmp_path_factory.mktemp("image") / "rootfs")
