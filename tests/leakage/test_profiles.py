"""Which hardening profiles the leakage workload scores on a driver: asked of its capabilities."""

from collections.abc import Mapping
from typing import Any

from isobench.drivers.container import ContainerDriver
from isobench.drivers.host import HostDriver
from isobench.drivers.qemu import QemuDriver
from isobench.drivers.runc import RuncDriver
from isobench.testing import FakeDriver, workload_context
from isobench.workloads.base import WorkloadContext
from isobench.workloads.leakage import _profiles


def _ctx(driver: Any, options: Mapping[str, Any] | None = None) -> WorkloadContext:
    ctx = workload_context(FakeDriver.like(driver))
    ctx.spec = ctx.spec.__class__(name=ctx.spec.name, run_id=ctx.spec.run_id, options=options or {})
    return ctx


def test_switchable_driver_is_scored_both_ways() -> None:
    assert _profiles(_ctx(ContainerDriver)) == (True, False)


def test_spec_choice_wins() -> None:
    assert _profiles(_ctx(ContainerDriver, {"hardening": False})) == (False,)


def test_driver_without_a_profile_runs_once_unlabelled() -> None:
    for driver in (HostDriver, RuncDriver, QemuDriver):
        assert _profiles(_ctx(driver)) == (None,), driver.name
