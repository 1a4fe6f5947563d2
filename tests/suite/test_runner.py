"""The runner against fake drivers and workloads: failures recorded, deadlines, teardown on every path."""

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from isobench.config import RunConfig
from isobench.drivers.base import Availability, DriverContext, ExecResult, PhaseClock, SandboxSpec
from isobench.errors import WorkloadError
from isobench.model import Measurement, PhaseTiming
from isobench.results import load_results
from isobench.runner import run_matrix
from isobench.runstate import live_runs
from isobench.workloads.base import WorkloadContext


class FakeSandbox:
    def __init__(self, spec: SandboxSpec, log: list[str]) -> None:
        self.spec = spec
        self.log = log
        self.clock = PhaseClock()
        self.destroyed = False
        log.append(f"create {spec.name}")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def phases(self) -> Sequence[PhaseTiming]:
        return self.clock.phases

    @property
    def workdir(self) -> str:
        return "/tmp"

    @property
    def address(self) -> str | None:
        return None

    def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        return ExecResult(tuple(argv), 0, "", "", 0, 1)

    def stats(self) -> Mapping[str, float]:
        return {}

    def destroy(self) -> None:
        if not self.destroyed:
            self.log.append(f"destroy {self.spec.name}")
        self.destroyed = True


class FakeDriver:
    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "test double"

    def __init__(self, ctx: DriverContext, log: list[str], name: str = "fake") -> None:
        self.ctx = ctx
        self.log = log
        self.name = name  # type: ignore[misc]

    def availability(self) -> Availability:
        return Availability(True)

    def metadata(self) -> Mapping[str, Any]:
        return {"accel": "tcg", "fake": True}

    def create(self, spec: SandboxSpec) -> FakeSandbox:
        return FakeSandbox(spec, self.log)

    def gc(self, run_id: str | None = None) -> list[str]:
        return []

    def close(self) -> None:
        self.log.append(f"close {self.name}")


class Steady:
    name: ClassVar[str] = "steady"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox() as sb:
            sb.exec(["true"], timeout=1)
        return [Measurement("steady.value", 1.0, "s")]


class Pair:
    """Names its two sandboxes, as the interference workload does."""

    name: ClassVar[str] = "pair"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox(name=f"{ctx.spec.name}-victim") as v, ctx.sandbox(name=f"{ctx.spec.name}-aggr") as a:
            return [Measurement("pair.names", 1.0, "s", metadata={"v": v.name, "a": a.name})]


class Raises:
    name: ClassVar[str] = "raises"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            raise WorkloadError("fio reported 3 errors")


class Crashes:
    name: ClassVar[str] = "crashes"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        return [Measurement("x", 1 / 0, "s")]


class Hangs:
    name: ClassVar[str] = "hangs"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            time.sleep(30)
        return []


class Leaks:
    """Enters a sandbox and never leaves it: the runner must still destroy it."""

    name: ClassVar[str] = "leaks"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        ctx.sandbox().__enter__()
        return [Measurement("leaks.value", 2.0, "s")]


class Interrupts:
    name: ClassVar[str] = "interrupts"
    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            raise KeyboardInterrupt


def _run(
    tmp_path: Path, workloads: dict[str, Any], drivers: tuple[str, ...] = ("fake",), **cfg: Any
) -> tuple[Any, list[str], Path]:
    log: list[str] = []
    config = RunConfig(state_dir=tmp_path / "state", output=tmp_path / "out", repetitions=2, warmups=1, **cfg)
    ctx = DriverContext(state_dir=config.state_dir, work_dir=tmp_path / "w", run_id="r1")
    drv = {d: FakeDriver(ctx, log, d) for d in drivers}
    run_dir = tmp_path / "out" / "r1"
    run_dir.mkdir(parents=True)
    results, errors = run_matrix(
        config,
        drv,
        workloads,
        run_id="r1",
        run_dir=run_dir,  # type: ignore[arg-type]
        run_info={"run_id": "r1"},
    )
    assert errors == []
    return results, log, run_dir


def _balanced(log: list[str]) -> bool:
    created = {line.split()[1] for line in log if line.startswith("create")}
    destroyed = {line.split()[1] for line in log if line.startswith("destroy")}
    return created == destroyed and len(created) > 0


def test_cells_produce_samples_with_driver_metadata(tmp_path: Path) -> None:
    results, log, run_dir = _run(tmp_path, {"steady": Steady()}, drivers=("a", "b"))
    measured = list(results.measured())
    assert len(measured) == 4  # 2 drivers x 2 repetitions; warmups stored but flagged
    assert sum(s.warmup for s in results.samples) == 2
    assert {s.metadata["accel"] for s in measured} == {"tcg"}
    assert _balanced(log)
    assert load_results(run_dir).samples == results.samples
    assert not (tmp_path / "state" / "runs" / "r1").exists()  # run state removed
    assert log[-2:] == ["close a", "close b"]  # drivers closed once, after every sandbox


def test_named_sandboxes_stay_unique_across_repetitions(tmp_path: Path) -> None:
    results, log, _ = _run(tmp_path, {"pair": Pair()})
    names = [s.metadata[k] for s in results.samples for k in ("v", "a")]
    assert len(names) == len(set(names)) == 6  # 3 rounds x 2 sandboxes
    assert all(
        n.startswith("isobench-r1-fake-victim-") or n.startswith("isobench-r1-fake-aggr-") for n in names
    )
    assert _balanced(log)


def test_failures_become_samples_and_the_run_goes_on(tmp_path: Path) -> None:
    results, log, _ = _run(tmp_path, {"raises": Raises(), "crashes": Crashes(), "steady": Steady()})
    errors = [s.error for s in results.failures()]
    assert "fio reported 3 errors" in errors
    assert any(e and e.startswith("internal error: ZeroDivisionError") for e in errors)
    assert len([s for s in results.measured() if s.workload == "steady"]) == 2
    assert _balanced(log)


def test_cell_deadline_records_timeout_and_tears_down(tmp_path: Path) -> None:
    start = time.monotonic()
    results, log, _ = _run(tmp_path, {"hangs": Hangs()}, timeout=0.3)
    assert time.monotonic() - start < 10
    assert all("deadline" in (s.error or "") for s in results.samples)
    assert _balanced(log)


def test_sandbox_left_open_by_a_workload_is_destroyed(tmp_path: Path) -> None:
    results, log, _ = _run(tmp_path, {"leaks": Leaks()})
    assert len(list(results.measured())) == 2
    assert _balanced(log)


def test_ctrl_c_tears_down_and_keeps_what_was_measured(tmp_path: Path) -> None:
    log: list[str] = []
    config = RunConfig(state_dir=tmp_path / "state", repetitions=1, warmups=0)
    ctx = DriverContext(state_dir=config.state_dir, work_dir=tmp_path / "w", run_id="r2")
    run_dir = tmp_path / "out"
    run_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_matrix(
            config,
            {"fake": FakeDriver(ctx, log)},  # type: ignore[dict-item]
            {"steady": Steady(), "interrupts": Interrupts()},  # type: ignore[dict-item]
            run_id="r2",
            run_dir=run_dir,
            run_info={"run_id": "r2"},
        )
    assert _balanced(log)
    res = load_results(run_dir)
    assert res.run["status"] == "interrupted"
    assert [s.workload for s in res.samples] == ["steady"]
    assert live_runs(config.state_dir) == []
    assert not (config.state_dir / "runs" / "r2").exists()
