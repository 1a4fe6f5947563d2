"""A TCG guest under libvirt: its own kernel, so nothing of the host's identity reaches it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from isobench.drivers import vm
from isobench.drivers.base import DriverContext, SandboxSpec
from isobench.leakage import planted_canaries, run_static, score

pytestmark = [pytest.mark.integration, pytest.mark.libvirt, pytest.mark.slow]

STATE = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench"))


def test_guest_does_not_leak_boot_id_nor_host_privileges(tmp_path: Path) -> None:
    run_id = f"tv{uuid.uuid4().hex[:8]}"
    drv = vm.VmDriver(DriverContext(STATE, tmp_path / "work", run_id, {}))
    try:
        spec = SandboxSpec(name=f"isobench-{run_id}-leak", run_id=run_id, memory_mib=512)
        sb = drv.create(spec)
        try:
            with planted_canaries(run_id) as canaries:
                results = run_static(sb, spec, canaries)
        finally:
            sb.destroy()
    finally:
        drv.gc(run_id)
        drv.close()
    v = {r.name: r.verdict for r in results}
    assert not v["boot_id"].leaks
    assert not v["kernel_release"].leaks  # the guest runs Debian's 6.1 kernel, the host another one
    assert not v["uptime"].leaks
    # Root in the guest holds every capability of its own kernel: not a host leak.
    assert "own kernel" in v["capabilities"].evidence
    assert score(results).count == 0, [n for n, x in v.items() if x.leaks]
