"""Every workload family on the micro guest (the minimal kernel: drivers/guest/flavour.py), through
the qemu driver at the smallest sizes. startup, cpu and disk already run on it in test_drivers.py
(the qemu driver boots the micro kernel by default); here the rest of the families: idle memory
(the guest's /proc/meminfo), the syscall and memory-bandwidth probes, the overlay copy-up, the
network (virtio-net, iperf3, sockperf) and leakage (the /proc and /sys files it reads, some of
which the micro kernel does not have: those are verdicts, not errors) and interference (a
stressor next to a victim in the guest). density and limits run on it in
test_density_limits_real.py (the qemu driver's default kernel)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.drivers.qemu import QemuDriver
from isobench.images import find_image
from isobench.workloads.base import WorkloadContext, get_workload

from .conftest import make_context  # type: ignore[import-not-found]

#: As in tests/drivers/guest/test_micro_integration.py: another state dir tries another micro kernel.
STATE_DIR = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))
pytestmark = [pytest.mark.integration]


@pytest.fixture
def micro(tmp_path: Path) -> Iterator[WorkloadContext]:
    find_image(STATE_DIR)
    run_id = "wm" + uuid.uuid4().hex[:8]
    driver = QemuDriver(DriverContext(STATE_DIR, tmp_path / "work", run_id, {"kernel": "micro"}))
    avail = driver.availability()
    assert avail.ok, avail.reason
    spec = SandboxSpec(name=f"isobench-{run_id}", run_id=run_id, memory_mib=256)
    scratch = Path(tempfile.mkdtemp(prefix="isobench-test-", dir="/var/tmp"))
    scratch.chmod(0o755)
    try:
        yield make_context(driver, spec, quick=True, timeout=300.0, scratch=scratch)
    finally:
        driver.close()
        shutil.rmtree(scratch, ignore_errors=True)
        assert driver.gc(run_id) == [], "qemu left resources behind"


#: Beyond the quick sizes: leakage's static probes are what the micro kernel changes (its /proc and
#: /sys); its correlation channels take ~10 s of TCG time and read the same files.
PARAMS: dict[str, dict[str, object]] = {"leakage": {"correlations": False}}


@pytest.mark.parametrize(
    "workload",
    ["idle-memory", "syscall", "memory-bandwidth", "overlay", "network", "leakage", "interference"],
)
def test_workload_on_the_micro_guest(micro: WorkloadContext, workload: str) -> None:
    micro.params = dict(PARAMS.get(workload, {}))
    ms = list(get_workload(workload).run(micro))
    assert ms and all(m.metric.startswith(f"{workload}.") for m in ms)
    names = {m.metric for m in ms}
    if workload == "idle-memory":
        assert any(m.value > 0 for m in ms)
    elif workload == "network":
        assert {"network.tcp_throughput", "network.tcp_rtt.p50", "network.tcp_rtt.p50_paired_ratio"} <= names
        assert all(m.value > 0 for m in ms if m.metric == "network.tcp_throughput")
    elif workload == "leakage":
        # the guest has its own kernel: the host's canaries and identity must not be visible
        assert any(m.metric.startswith("leakage.") for m in ms)
    elif workload == "interference":
        # degradations (d_mean, d_p99) and the host CPU spent outside (minus its baseline rate) are
        # differences: noise makes them negative at times. The victims' baselines are rates.
        baselines = [m for m in ms if m.metric.endswith(".baseline")]
        assert baselines and all(m.value > 0 for m in baselines)
        assert any(m.metric.endswith(".d_mean") for m in ms)
        assert any(m.metric.endswith(".contained") for m in ms)
    else:
        assert all(m.value >= 0 for m in ms) and any(m.value > 0 for m in ms)
