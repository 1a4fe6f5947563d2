"""Fixtures shared by workload tests: recorded tool outputs and a host-driver WorkloadContext."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import Driver, DriverContext, SandboxSpec
from isobench.testing import workload_context
from isobench.workloads.base import WorkloadContext

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data() -> Callable[[str], str]:
    def read(name: str) -> str:
        return (DATA / name).read_text()

    return read


def make_context(driver: Driver, spec: SandboxSpec, **kwargs: Any) -> WorkloadContext:
    """A WorkloadContext whose factory creates through the driver and destroys in finally, like the
    runner does."""
    return workload_context(driver, spec=spec, **kwargs)


@pytest.fixture
def host_ctx(tmp_path: Path) -> Callable[..., WorkloadContext]:
    from isobench.drivers.host import HostDriver

    run_id = "wl" + uuid.uuid4().hex[:8]
    driver = HostDriver(
        DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    )

    def build(**kwargs: Any) -> WorkloadContext:
        spec = SandboxSpec(name=f"isobench-{run_id}-host", run_id=run_id, vcpus=2, memory_mib=512)
        kwargs.setdefault("quick", True)
        kwargs.setdefault("timeout", 300.0)
        return make_context(driver, spec, **kwargs)

    return build
