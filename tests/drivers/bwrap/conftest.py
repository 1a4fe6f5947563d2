"""Fixtures for the bwrap driver tests: a busybox root filesystem and a driver over a tmp work dir."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext
from isobench.drivers.bwrap.driver import BwrapDriver


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
