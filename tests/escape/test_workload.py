"""The escape workload's orchestration on scripted sandboxes, and its report table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from isobench.drivers.base import Capabilities, DriverKind, ExecModel, RootStorage
from isobench.drivers.container import ContainerDriver
from isobench.drivers.host import HostDriver
from isobench.drivers.qemu import QemuDriver
from isobench.errors import WorkloadError
from isobench.escape import Canaries
from isobench.model import Sample
from isobench.reports.escape_table import escape_evidence, escape_table, primitive_column
from isobench.testing import FakeDriver, Reply, workload_context
from isobench.workloads import escape as escape_workload
from isobench.workloads.escape import EscapeWorkload, state_dir_of

DATA = Path(__file__).parent / "data"
PROBE = b"\x7fELF not really a probe"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Canaries]:
    """No gcc, no canary process: a probe file and the canaries as the host would report them."""
    probe = tmp_path / "probe"
    probe.write_bytes(PROBE)
    monkeypatch.setattr(escape_workload, "ensure_probe", lambda state_dir: probe)
    made: list[Canaries] = []

    @contextlib.contextmanager
    def fake(base: Path, probe: Path, *, lifetime: float = 600.0) -> Iterator[Canaries]:
        (base / "escape-volume").mkdir()
        c = Canaries(
            token="isoesc123456789",
            file=base / "escape-canary" / "canary",
            volume=base / "escape-volume",
            pid=4242,
            handle_type=1,
            handle="00ff",
            dev="254:0",
            offset=8192,
            boot_id="b",
        )
        made.append(c)
        yield c

    monkeypatch.setattr(escape_workload, "planted", fake)
    return made


def _recorded(name: str) -> Reply:
    return Reply(stdout=(DATA / f"{name}.jsonl").read_text())


def test_switchable_driver_is_tried_with_hardening_on_and_off(
    planted: list[Canaries], tmp_path: Path
) -> None:
    driver = FakeDriver.like(ContainerDriver).on(
        r"isobench-escape-probe run", _recorded("container-hardened")
    )
    ctx = workload_context(driver, scratch=tmp_path / "cell")
    (tmp_path / "cell").mkdir()
    ms = list(EscapeWorkload().run(ctx))
    assert [sb.spec.options for sb in driver.sandboxes] == [{"hardening": True}, {"hardening": False}]
    assert [sb.spec.volume for sb in driver.sandboxes] == [c.volume for c in planted]
    call = driver.calls[0]
    assert call.stdin == PROBE  # the probe travels on stdin
    assert (
        "volume=/data" in call.argv and "token=isoesc123456789" in call.argv and "pid_hint=4242" in call.argv
    )
    assert f"work={driver.sandboxes[0].workdir}" in call.argv
    counts = [m for m in ms if m.metric == "escape.open"]
    assert [m.params for m in counts] == [{"hardening": True}, {"hardening": False}]
    assert all(sb.destroyed for sb in driver.sandboxes)


def test_guest_and_host_run_once_unlabelled(planted: list[Canaries], tmp_path: Path) -> None:
    for cls, rec, volume in ((QemuDriver, "qemu", "volume=/data"), (HostDriver, "host", None)):
        driver = FakeDriver.like(cls).on(r"isobench-escape-probe run", _recorded(rec))
        ms = list(EscapeWorkload().run(workload_context(driver)))
        assert len(driver.sandboxes) == 1 and driver.sandboxes[0].spec.options == {}
        count = next(m for m in ms if m.metric == "escape.open")
        assert count.params == {}
        if volume:
            assert volume in driver.calls[0].argv
        else:  # the host sees the volume at its own path
            assert f"volume={planted[-1].volume}" in driver.calls[0].argv
    assert count.metadata["verdicts"]["ptrace"] == "open"


def test_a_driver_without_volumes_gets_none(planted: list[Canaries]) -> None:
    caps = Capabilities(
        kind=DriverKind.CONTAINER,
        root_storage=RootStorage.OVERLAYFS,
        volume=None,
        switchable_hardening=False,
        exec_model=ExecModel.RUNTIME_EXEC,
        order=50,
    )
    driver = FakeDriver.like(caps, name="novol").on(
        r"isobench-escape-probe run", _recorded("container-hardened")
    )
    ms = list(EscapeWorkload().run(workload_context(driver)))
    assert driver.sandboxes[0].spec.volume is None and "volume=" in driver.calls[0].argv
    assert next(m for m in ms if m.metric == "escape.open").metadata["verdicts"]["volume_symlink"] == "n/a"


def test_a_probe_that_prints_nothing_fails_the_cell(planted: list[Canaries]) -> None:
    driver = FakeDriver.like(QemuDriver).on(
        r"isobench-escape-probe", Reply(stderr="sh: exec format error", exit_code=126)
    )
    with pytest.raises(WorkloadError, match="exec format error"):
        list(EscapeWorkload().run(workload_context(driver)))
    assert driver.sandboxes[0].destroyed


def test_state_dir_is_found_above_the_cells_scratch() -> None:
    assert state_dir_of(Path("/srv/st/runs/r1/work/cells/3")) == Path("/srv/st")
    assert state_dir_of(None) == Path("/var/lib/isobench")


def _samples(driver: str, ms: list[Any]) -> list[Sample]:
    return [
        Sample.from_measurement(m, run_id="r", driver=driver, workload="escape", repetition=0) for m in ms
    ]


def test_report_table_has_a_row_per_driver_and_profile(planted: list[Canaries], tmp_path: Path) -> None:
    samples: list[Sample] = []
    for cls, rec in ((QemuDriver, "qemu"), (ContainerDriver, "container-unhardened"), (HostDriver, "host")):
        driver = FakeDriver.like(cls).on(r"isobench-escape-probe run", _recorded(rec))
        samples += _samples(cls.name, list(EscapeWorkload().run(workload_context(driver))))
    samples.append(Sample.failure(run_id="r", driver="runc", workload="escape", repetition=0, error="boom"))
    table = escape_table(samples)
    assert list(table["driver"]) == ["host", "container", "container", "runc", "qemu"]
    assert list(table["profile"]) == ["", "hardening on", "hardening off", "", ""]
    qemu = table.iloc[-1]
    assert qemu[primitive_column("core_pattern")] == "n/a"
    assert qemu[primitive_column("ptrace")] == "blocked"
    assert set(table.iloc[3][[primitive_column(p) for p in ("ptrace", "leaked_fd")]]) == {"error"}
    evidence = escape_evidence(samples)
    assert len(evidence) == 5 * 10
    assert "boom" in evidence[evidence["driver"] == "runc"]["evidence"].iloc[0]
