"""Every workload at its quick size through the container driver on the suite's built image."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.images import ImageMissing, find_image
from isobench.workloads.base import WorkloadContext, get_workload

from .conftest import (  # type: ignore[import-not-found]
    check_a_stopped_fio_is_killed_and_run_again,
    make_context,
)

pytestmark = pytest.mark.integration

STATE_DIR = Path("/var/lib/isobench")
ALL = ["startup", "idle-memory", "cpu", "memory-bandwidth", "disk", "syscall", "network", "overlay"]


@pytest.fixture
def container_ctx(tmp_path: Path) -> Iterator[WorkloadContext]:
    from isobench.drivers.container import ContainerDriver

    try:
        image = find_image(STATE_DIR)
    except ImageMissing as err:
        pytest.fail(f"{err} (container workload tests need the suite image)")
    run_id = "wl" + uuid.uuid4().hex[:8]
    dctx = DriverContext(state_dir=tmp_path / "state", work_dir=tmp_path / "work", run_id=run_id)
    driver = ContainerDriver(dctx)
    spec = SandboxSpec(name="wl", run_id=run_id, image=image.rootfs, vcpus=2, memory_mib=512)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        yield make_context(driver, spec, quick=True, timeout=300.0, scratch=scratch)
    finally:
        assert driver.gc(run_id) == [], "container resources left behind"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_workload_in_container(name: str, container_ctx: WorkloadContext) -> None:
    if name == "disk":
        container_ctx.params = {"size_mib": 8, "runtime": "300ms", "ramp_time": "100ms"}
    ms = list(get_workload(name).run(container_ctx))
    assert ms and all(m.metric.startswith(f"{name}.") and m.value >= 0 for m in ms)
    if name == "disk":
        # the overlay upper layer and the bind-mounted volume the cell made
        assert {m.params["storage"] for m in ms} == {"root", "volume"}
    if name == "overlay":
        first = {m.params["file"]: m.value for m in ms if m.metric == "overlay.first_write"}
        later = {m.params["file"]: m.value for m in ms if m.metric == "overlay.later_write"}
        # Copy-up of 16 MiB costs more than rewriting the copied-up file.
        assert first["file-16m"] > later["file-16m"]
    if name == "idle-memory":
        assert any(m.metric == "idle-memory.host_view" and m.value > 0 for m in ms)


def test_disk_a_stopped_fio_in_a_container_is_killed_and_run_again(
    container_ctx: WorkloadContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # through the helper's exec into the container's namespaces: its job process leaves fio's session
    check_a_stopped_fio_is_killed_and_run_again(container_ctx, monkeypatch)
