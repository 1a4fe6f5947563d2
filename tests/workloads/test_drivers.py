"""Workloads through the reference drivers and the guests, at their smallest sizes.

The container driver runs every workload in test_container.py; here the peers (runc, bwrap) and
the guests (vm under libvirt, qemu direct) run startup, cpu and disk (root storage and a volume), and
docker (a private dockerd the test starts) startup, cpu and overlay, on the suite's built image, the
guests under TCG on a host where KVM does not work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec, get_driver
from isobench.images import find_image
from isobench.workloads.base import WorkloadContext, get_workload

from .conftest import (  # type: ignore[import-not-found]
    SMALL_DISK,
    check_a_stopped_fio_is_killed_and_run_again,
    make_context,
)

STATE_DIR = Path("/var/lib/isobench")

CASES = [
    *(
        pytest.param(d, w, marks=pytest.mark.integration)
        for d in ("runc", "bwrap")
        for w in ("startup", "cpu", "disk")
    ),
    # Docker's own copy-up is overlay2's: the overlay workload through it too.
    *(pytest.param("docker", w, marks=pytest.mark.integration) for w in ("startup", "cpu", "overlay")),
    *(
        pytest.param(d, w, marks=[pytest.mark.integration, pytest.mark.libvirt])
        for d in ("vm", "qemu")
        for w in ("startup", "cpu", "disk")
    ),
]


@pytest.fixture
def context(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkloadContext]:
    driver_name = request.param
    image = find_image(STATE_DIR)  # a missing image fails with "run `isobench image build`"
    run_id = "wd" + uuid.uuid4().hex[:8]
    driver = get_driver(driver_name, DriverContext(STATE_DIR, tmp_path / "work", run_id))
    avail = driver.availability()
    assert avail.ok, avail.reason
    spec = SandboxSpec(name=f"isobench-{run_id}", run_id=run_id, image=image.rootfs, memory_mib=256)
    if driver_name in ("vm", "qemu"):
        spec = SandboxSpec(name=f"isobench-{run_id}", run_id=run_id, memory_mib=256)
    # The cell's scratch dir, as the runner gives it: world-searchable, since libvirt's qemu user
    # must reach a guest's volume image in it (pytest's tmp_path is 0700).
    scratch = Path(tempfile.mkdtemp(prefix="isobench-test-", dir="/var/tmp"))
    scratch.chmod(0o755)
    try:
        yield make_context(driver, spec, quick=True, timeout=300.0, scratch=scratch)
    finally:
        driver.close()  # waits for the vm driver's background teardowns
        left = list((scratch / "volume").iterdir()) if (scratch / "volume").exists() else []
        shutil.rmtree(scratch, ignore_errors=True)
        assert driver.gc(run_id) == [], f"{driver_name} left resources behind"
    # the volume is the workload's, a guest's image in it the sandbox's: the image must be gone
    assert left == [], f"{driver_name} left its volume image: {left}"


@pytest.mark.parametrize(("context", "workload"), CASES, indirect=["context"])
def test_workload_through_driver(context: WorkloadContext, workload: str) -> None:
    if workload == "disk":
        context.params = SMALL_DISK
    ms = list(get_workload(workload).run(context))
    assert ms
    assert all(m.metric.startswith(f"{workload}.") and m.value >= 0 for m in ms)
    names = {m.metric for m in ms}
    if workload == "startup":
        assert {"startup.to_ready", "startup.to_exit", "startup.total", "startup.phase.create"} <= names
        assert all(m.value > 0 for m in ms if m.metric == "startup.total")
    elif workload == "cpu":
        # One vCPU in the spec: the all-vCPU variant gets its own sandbox with every usable CPU.
        usable = len(os.sched_getaffinity(0))
        eps = {m.params["variant"]: m for m in ms if m.metric == "cpu.events_per_second"}
        assert set(eps) == ({"single", "all"} if usable > 1 else {"single"})
        assert all(m.value > 0 for m in eps.values())
        assert eps["single"].metadata["sandbox_vcpus"] == 1
        if usable > 1:
            assert eps["all"].params["threads"] == eps["all"].metadata["sandbox_vcpus"] == usable
    elif workload == "overlay":
        assert {"overlay.noop", "overlay.first_write", "overlay.later_write", "overlay.rename_dir"} <= names
    else:
        assert any(m.metric.endswith(".iops") and m.value > 0 for m in ms)
        # root storage and the volume the cell made: bind mount or the guest's vdb
        assert {m.params["storage"] for m in ms} == {"root", "volume"}
        volume = [m for m in ms if m.params["storage"] == "volume"]
        assert all(m.metadata["directory"] == "/data" and m.metadata["volume"] for m in volume)
        if context.driver.name in ("vm", "qemu"):
            assert {m.metadata["fstype"] for m in volume} == {"ext2/ext3"}  # stat -f names ext4 so


@pytest.mark.integration
@pytest.mark.parametrize("context", ["qemu"], indirect=True)
def test_disk_a_stopped_fio_in_a_guest_is_killed_and_run_again(
    context: WorkloadContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guest's side of a stalled fio: the host's deadline, the agent's kill of fio with the
    job processes it moved to sessions of their own, and a rerun on the guest's disk. A 20 s slack
    (a 35 s deadline) against the ~8 s such a fio takes here under TCG."""
    check_a_stopped_fio_is_killed_and_run_again(context, monkeypatch, slack=20.0, in_guest=True)
