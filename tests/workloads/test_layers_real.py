"""The layers workload for real at depths 1 and 4: the own container runtime over overlayfs lower
directories, and a qemu guest over a qcow2 chain as its data disk. The probe checks inside that it
saw the stack it was given (every layer's names in the merged listing, no miss found, the whole file
read), so a finished run is a correct stack; every sandbox must be gone afterwards."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec, get_driver
from isobench.images import images_dir
from isobench.layers import remove_stacks
from isobench.workloads.base import WorkloadContext, get_workload

from .conftest import make_context  # type: ignore[import-not-found]

STATE_DIR = Path("/var/lib/isobench")
SMALL = {"depths": [1, 4], "per_group": 16, "big_mib": 2, "write_kib": 256, "warm_repetitions": 2}
CASES = [
    pytest.param("container", marks=pytest.mark.integration),
    pytest.param("qemu", marks=[pytest.mark.integration, pytest.mark.slow]),
]


@pytest.fixture
def context(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkloadContext]:
    name = request.param
    run_id = "ly" + uuid.uuid4().hex[:8]
    driver = get_driver(name, DriverContext(STATE_DIR, tmp_path / "work", run_id))
    assert driver.availability().ok
    # The stacks are built in a state dir of the test's own, over the suite's built image.
    state = tmp_path / "state"
    state.mkdir()
    images_dir(state).symlink_to(images_dir(STATE_DIR))
    state.chmod(0o755)
    tmp_path.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spec = SandboxSpec(name=f"isobench-{run_id}", run_id=run_id, memory_mib=256)
    ctx = make_context(driver, spec, quick=True, timeout=400.0, scratch=scratch, params=SMALL)
    try:
        yield dataclasses.replace(ctx, state_dir=state)
    finally:
        driver.close()
        assert driver.gc(run_id) == [], f"{name} left resources behind"
        assert len(remove_stacks(state, image_digests=None, keep_images=())) == 2


@pytest.mark.parametrize("context", CASES, indirect=True)
def test_layers_for_real(context: WorkloadContext) -> None:
    ms = list(get_workload("layers").run(context))
    by = {(m.metric, m.params.get("depth")): m for m in ms}
    for depth in (1, 4):
        for metric in (
            "stat_bottom_cold", "stat_top_cold", "stat_miss_cold", "open_bottom_cold", "stat_bottom_warm",
            "readdir_cold", "read_cold", "first_write", "later_write", "add_layer", "start_to_ready",
        ):  # fmt: skip
            assert by[(f"layers.{metric}", depth)].value > 0, (metric, depth)
    cold = by[("layers.stat_bottom_cold", 4)].metadata
    assert cold["dropped_on_host"] is True
    # A guest drops its own caches too; a container may not (read-only /proc/sys).
    assert cold["dropped_inside"] is context.driver.capabilities.guest
