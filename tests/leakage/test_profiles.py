"""Which hardening profiles the leakage workload scores on a driver."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from isobench.drivers.base import SandboxSpec
from isobench.workloads.base import WorkloadContext
from isobench.workloads.leakage import _profiles


class _Driver:
    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = meta

    def metadata(self) -> Mapping[str, Any]:
        return self.meta


def _ctx(meta: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> WorkloadContext:
    spec = SandboxSpec(name="isobench-t", run_id="t", image=Path("/nonexistent"), options=options or {})
    return WorkloadContext(driver=_Driver(meta), spec=spec, sandbox=lambda **kw: None)  # type: ignore[arg-type,return-value]


def test_switchable_driver_is_scored_both_ways() -> None:
    assert _profiles(_ctx({"hardening": "caps, seccomp"})) == (True, False)


def test_spec_choice_wins() -> None:
    assert _profiles(_ctx({"hardening": "x"}, {"hardening": False})) == (False,)


def test_driver_without_a_profile_runs_once_unlabelled() -> None:
    assert _profiles(_ctx({"isolation": "vm"})) == (None,)
