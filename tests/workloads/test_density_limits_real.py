"""density and limits for real, at tiny sizes: host and container (and the qemu guest, N up to 2)
on the suite's built image; every sandbox must be gone afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec, get_driver
from isobench.images import find_image
from isobench.model import Measurement
from isobench.workloads.base import WorkloadContext, get_workload

from .conftest import make_context  # type: ignore[import-not-found]

STATE_DIR = Path("/var/lib/isobench")
TINY_DENSITY = {"container_steps": [1, 3], "guest_steps": [1, 2], "settle_seconds": 0.2, "idle_seconds": 0.5}
TINY_LIMITS = {"cpu_seconds": 1.0, "io_mib_per_s": 10.0, "io_seconds": 1.0, "neighbour_baseline_rounds": 1}

GUEST = [pytest.mark.integration, pytest.mark.slow]
CASES = [
    pytest.param("host", marks=pytest.mark.integration),
    pytest.param("container", marks=pytest.mark.integration),
    pytest.param("qemu", marks=GUEST),
]


@pytest.fixture
def context(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkloadContext]:
    name = request.param
    image = find_image(STATE_DIR)
    run_id = "dl" + uuid.uuid4().hex[:8]
    driver = get_driver(name, DriverContext(STATE_DIR, tmp_path / "work", run_id))
    assert driver.availability().ok
    guest = name == "qemu"
    spec = SandboxSpec(
        name=f"isobench-{run_id}", run_id=run_id, image=None if guest else image.rootfs, memory_mib=256
    )
    scratch = tmp_path / "scratch"  # the cell's volume goes here, as the runner's does
    scratch.mkdir()
    try:
        yield make_context(driver, spec, quick=True, timeout=400.0, scratch=scratch)
    finally:
        driver.close()
        assert driver.gc(run_id) == [], f"{name} left resources behind"


def _one(ms: list[Measurement], metric: str) -> Measurement:
    found = [m for m in ms if m.metric == metric]
    assert len(found) == 1, metric
    return found[0]


@pytest.mark.parametrize("context", CASES, indirect=True)
def test_density_for_real(context: WorkloadContext) -> None:
    context.params = TINY_DENSITY
    ms = list(get_workload("density").run(context))
    reached = _one(ms, "density.n_reached")
    top = 2 if context.driver.name == "qemu" else 3
    assert reached.value == top, reached.metadata
    seq = {
        m.params["n"]: m.value
        for m in ms
        if m.metric == "density.ready_all" and m.params["start"] == "sequential"
    }
    conc = {
        m.params["n"] for m in ms if m.metric == "density.ready_all" and m.params["start"] == "concurrent"
    }
    assert set(seq) == conc == {1, top}
    assert seq[top] >= seq[1] > 0
    if context.driver.name != "host":
        attributed = [m for m in ms if m.metric == "density.attributable_per_instance"]
        assert attributed and all(m.value > 0 for m in attributed)
        assert [m for m in ms if m.metric == "density.idle_cpu_per_instance"]


@pytest.mark.parametrize("context", CASES, indirect=True)
def test_limits_for_real(context: WorkloadContext) -> None:
    context.params = TINY_LIMITS
    ms = list(get_workload("limits").run(context))
    name = context.driver.name
    mem = _one(ms, "limits.memory.stopped_at")
    forks = _one(ms, "limits.pids.forks")
    assert _one(ms, "limits.cpuset.held").value == 1.0
    if name == "container":
        assert mem.metadata["stopped_by"] == "cgroup OOM kill"
        assert 200 * 2**20 < mem.value <= 256 * 2**20
        assert forks.metadata["enforced"] and forks.value < 128
        half = [m for m in ms if m.metric == "limits.cpu.delivered" and m.params["requested_cpus"] == 0.5]
        assert half and half[0].value <= 0.5 * 1.1
    elif name == "host":
        assert not mem.metadata["enforced"] and mem.value == 512 * 2**20
        assert not forks.metadata["enforced"] and forks.value == 512
    else:
        assert mem.metadata["stopped_by"] == "guest OOM killer"
        assert mem.value < 256 * 2**20
    assert _one(ms, "limits.memory.sandbox_alive").value == 1.0
    # disk bandwidth: 10 MiB/s asked, O_DIRECT on the volume; the host cannot express it
    for direction in ("write", "read"):
        delivered = _one(ms, f"limits.io.{direction}.delivered")
        assert delivered.params["requested_bps"] == 10 * 2**20
        if name == "host":
            assert delivered.metadata["not_expressible"] is True
            assert not [m for m in ms if m.metric == f"limits.io.{direction}.fidelity"]
        else:
            assert 0.5 < _one(ms, f"limits.io.{direction}.fidelity").value < 1.5
    # the neighbour ran its loop during both bombs
    for probe in ("pids", "memory"):
        assert _one(ms, f"limits.{probe}.neighbour_throughput").value > 0
