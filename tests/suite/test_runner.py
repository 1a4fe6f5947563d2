"""The runner against fake drivers and workloads: failures recorded, deadlines, teardown on every path."""

import json
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from isobench.config import RunConfig
from isobench.drivers.base import DriverContext, LayerStack, SandboxSpec
from isobench.errors import UsageError, WorkloadError
from isobench.hostsys import HostProbe
from isobench.model import Measurement
from isobench.results import load_results
from isobench.runner import Runner, run_matrix
from isobench.runstate import live_runs
from isobench.workloads.base import WorkloadContext

from .conftest import WorkloadDefaults, balanced, logging_driver  # type: ignore[import-not-found]


class Steady(WorkloadDefaults):
    name: ClassVar[str] = "steady"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox() as sb:
            sb.exec(["true"], timeout=1)
        return [Measurement("steady.value", 1.0, "s")]


class Pair(WorkloadDefaults):
    """Names its two sandboxes, as the interference workload does."""

    name: ClassVar[str] = "pair"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox(name=f"{ctx.spec.name}-victim") as v, ctx.sandbox(name=f"{ctx.spec.name}-aggr") as a:
            return [Measurement("pair.names", 1.0, "s", metadata={"v": v.name, "a": a.name})]


class Raises(WorkloadDefaults):
    name: ClassVar[str] = "raises"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            raise WorkloadError("fio reported 3 errors")


class Crashes(WorkloadDefaults):
    name: ClassVar[str] = "crashes"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        return [Measurement("x", 1 / 0, "s")]


class Hangs(WorkloadDefaults):
    name: ClassVar[str] = "hangs"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            time.sleep(30)
        return []


class Leaks(WorkloadDefaults):
    """Enters a sandbox and never leaves it: the runner must still destroy it."""

    name: ClassVar[str] = "leaks"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        ctx.sandbox().__enter__()
        return [Measurement("leaks.value", 2.0, "s")]


class Interrupts(WorkloadDefaults):
    name: ClassVar[str] = "interrupts"

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            raise KeyboardInterrupt


class Stolen(WorkloadDefaults):
    """Advances a fake host's /proc/stat by 200 jiffies, 30 of them stolen, while it runs."""

    name: ClassVar[str] = "stolen"

    def __init__(self, stat: Path) -> None:
        self.stat = stat

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        f = [int(x) for x in self.stat.read_text().split()[1:]]
        f[0], f[7] = f[0] + 170, f[7] + 30
        self.stat.write_text("cpu  " + " ".join(map(str, f)) + "\n")
        # a figure whose own window the workload measured keeps that reading
        return [
            Measurement("stolen.value", 1.0, "s"),
            Measurement("stolen.own", 1.0, "s", metadata={"host_steal": 0.5}),
        ]


def _run(
    tmp_path: Path,
    workloads: dict[str, Any],
    drivers: tuple[str, ...] = ("fake",),
    host: HostProbe | None = None,
    **cfg: Any,
) -> tuple[Any, list[str], Path]:
    log: list[str] = []
    config = RunConfig(state_dir=tmp_path / "state", output=tmp_path / "out", repetitions=2, warmups=1, **cfg)
    ctx = DriverContext(state_dir=config.state_dir, work_dir=tmp_path / "w", run_id="r1")
    drv = {d: logging_driver(ctx, log, d) for d in drivers}
    run_dir = tmp_path / "out" / "r1"
    run_dir.mkdir(parents=True)
    results, errors = run_matrix(
        Runner(
            config,
            drv,
            workloads,
            run_id="r1",
            run_dir=run_dir,  # type: ignore[arg-type]
            run_info={"run_id": "r1"},
            host=host,
        )
    )
    assert errors == []
    return results, log, run_dir


def test_every_cell_records_the_hosts_steal_share(tmp_path: Path) -> None:
    (tmp_path / "host/proc").mkdir(parents=True)
    stat = tmp_path / "host/proc/stat"
    stat.write_text("cpu  1000 0 0 9000 0 0 0 0 0 0\n")
    results, _, _ = _run(
        tmp_path, {"stolen": Stolen(stat), "steady": Steady()}, host=HostProbe(root=tmp_path / "host")
    )
    by = {s.metric.split(".")[0]: s.metadata for s in results.measured() if s.metric != "stolen.own"}
    assert by["stolen"]["host_steal"] == 0.15  # 30 of 200 jiffies
    assert {s.metadata["host_steal"] for s in results.measured() if s.metric == "stolen.own"} == {0.5}
    # a cell in which the host's CPU time advanced less than a CPU-second has no reading
    assert "host_steal" not in by["steady"]


def test_cells_produce_samples_with_driver_metadata(tmp_path: Path) -> None:
    results, log, run_dir = _run(tmp_path, {"steady": Steady()}, drivers=("a", "b"))
    measured = list(results.measured())
    assert len(measured) == 4  # 2 drivers x 2 repetitions; warmups stored but flagged
    assert sum(s.warmup for s in results.samples) == 2
    assert {s.metadata["accel"] for s in measured} == {"tcg"}
    assert balanced(log)
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
    assert balanced(log)


def test_failures_become_samples_and_the_run_goes_on(tmp_path: Path) -> None:
    results, log, _ = _run(tmp_path, {"raises": Raises(), "crashes": Crashes(), "steady": Steady()})
    errors = [s.error for s in results.failures()]
    assert "fio reported 3 errors" in errors
    assert any(e and e.startswith("internal error: ZeroDivisionError") for e in errors)
    assert len([s for s in results.measured() if s.workload == "steady"]) == 2
    assert balanced(log)


def test_cell_deadline_records_timeout_and_tears_down(tmp_path: Path) -> None:
    start = time.monotonic()
    results, log, _ = _run(tmp_path, {"hangs": Hangs()}, timeout=0.3)
    assert time.monotonic() - start < 10
    assert all("deadline" in (s.error or "") for s in results.samples)
    assert balanced(log)


def test_sandbox_left_open_by_a_workload_is_destroyed(tmp_path: Path) -> None:
    results, log, _ = _run(tmp_path, {"leaks": Leaks()})
    assert len(list(results.measured())) == 2
    assert balanced(log)


def test_ctrl_c_tears_down_and_keeps_what_was_measured(tmp_path: Path) -> None:
    log: list[str] = []
    config = RunConfig(state_dir=tmp_path / "state", repetitions=1, warmups=0)
    ctx = DriverContext(state_dir=config.state_dir, work_dir=tmp_path / "w", run_id="r2")
    run_dir = tmp_path / "out"
    run_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_matrix(
            Runner(
                config,
                {"fake": logging_driver(ctx, log)},
                {"steady": Steady(), "interrupts": Interrupts()},  # type: ignore[dict-item]
                run_id="r2",
                run_dir=run_dir,
                run_info={"run_id": "r2"},
            )
        )
    assert balanced(log)
    res = load_results(run_dir)
    assert res.run["status"] == "interrupted"
    assert [s.workload for s in res.samples] == ["steady"]
    assert live_runs(config.state_dir) == []
    assert not (config.state_dir / "runs" / "r2").exists()


class AsksSpec(WorkloadDefaults):
    """Asks its sandbox for one spec field (``fields``) that the fake driver cannot express."""

    name: ClassVar[str] = "asks"

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox(**self.fields):
            return [Measurement("asks.value", 1.0, "s")]


@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        # FakeDriver's capabilities have no io_throttle (as host and bwrap)
        ({"io_bps": 1 << 20}, "cannot limit disk bandwidth"),
        ({"cpu_quota": 0.5}, "cannot express a CPU quota"),
        ({"layers": LayerStack(depth=1, digest="d", dirs=(Path("/l/0"),))}, "cannot stack these layers"),
    ],
    ids=["io_bps", "cpu_quota", "layers"],
)
def test_a_spec_the_driver_cannot_express_is_refused_before_create(
    tmp_path: Path, fields: dict[str, Any], refusal: str
) -> None:
    results, log, _ = _run(tmp_path, {"asks": AsksSpec(**fields)})
    assert results.samples and all(refusal in (s.error or "") for s in results.samples)
    assert not [line for line in log if line.startswith("create")]


def test_io_bps_is_validated() -> None:
    with pytest.raises(UsageError, match="io_bps must be >= 4096"):
        SandboxSpec(name="s", run_id="r", io_bps=100)


def test_cpu_quota_is_validated() -> None:
    with pytest.raises(UsageError, match="cpu_quota must be in"):
        SandboxSpec(name="s", run_id="r", vcpus=1, cpu_quota=1.5)
    with pytest.raises(UsageError, match="cpu_quota must be in"):
        SandboxSpec(name="s", run_id="r", vcpus=1, cpu_quota=0.0)
    assert SandboxSpec(name="s", run_id="r", vcpus=2, cpu_quota=1.5).cpu_quota == 1.5


class Neighbour(WorkloadDefaults):
    """A workload during whose second cell another isobench run registers on the (fake) host."""

    name: ClassVar[str] = "neighbour"

    def __init__(self, root: Path, pid: int) -> None:
        self.root, self.pid, self.calls = root, pid, 0

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        self.calls += 1
        if self.calls == 2:
            from isobench.liveruns import DEFAULT_REGISTRY, LiveRun, start_time

            registry = self.root / DEFAULT_REGISTRY.relative_to("/")
            registry.mkdir(parents=True)
            (self.root / "proc" / str(self.pid)).mkdir(parents=True)
            (self.root / "proc" / str(self.pid) / "stat").write_text(
                Path(f"/proc/{self.pid}/stat").read_text()
            )
            other = LiveRun("other-run", self.pid, start_time(self.pid) or "", "/elsewhere")
            (registry / f"other-run.{self.pid}.abcd1234").write_text(json.dumps(other.__dict__))
        return [Measurement("neighbour.value", 1.0, "s")]


def test_cells_that_met_another_run_on_the_host_say_so(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "proc").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])  # the other run's runner, alive throughout
    try:
        results, _, _ = _run(tmp_path, {"neighbour": Neighbour(root, other.pid)}, host=HostProbe(root=root))
    finally:
        other.kill()
        other.wait()
    cells = [s.metadata.get("concurrent_runs") for s in results.samples]
    # the warm-up cell ran alone; the run registered during the first measured one, which met it
    assert cells == [None, ["other-run"], ["other-run"]]
    assert results.run["concurrent_runs"] == {"other-run": 2}
