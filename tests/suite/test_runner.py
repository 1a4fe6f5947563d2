"""The runner against fake drivers and workloads: failures recorded, deadlines, teardown on every path."""

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from isobench.budget import AB_JUDGED_N, JUDGED_N, budget_summary
from isobench.config import RunConfig
from isobench.drivers.base import DriverContext, LayerStack, SandboxSpec
from isobench.errors import UsageError, WorkloadError
from isobench.model import Measurement
from isobench.results import load_results
from isobench.runner import Runner, run_matrix
from isobench.runstate import live_runs
from isobench.testing import FakeDriver
from isobench.workloads.base import WorkloadContext


def logging_driver(ctx: DriverContext, log: list[str], name: str = "fake") -> FakeDriver:
    """A driver whose sandboxes run anything (exit 0, no output) and log their life cycle in ``log``."""
    return FakeDriver.like(
        FakeDriver.capabilities,
        name=name,
        ctx=ctx,
        script=[("", "")],
        metadata={"accel": "tcg", "fake": True},
        events=log,
    )


class WorkloadDefaults:
    """The Workload protocol's class attributes at their defaults: each test workload below states
    only its name and what it does."""

    description: ClassVar[str] = ""
    tools: ClassVar[tuple[str, ...]] = ()
    max_repetitions: ClassVar[int | None] = None
    quick_repetitions: ClassVar[int | None] = None


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


def _run(
    tmp_path: Path, workloads: dict[str, Any], drivers: tuple[str, ...] = ("fake",), **cfg: Any
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
        )
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
            Runner(
                config,
                {"fake": logging_driver(ctx, log)},
                {"steady": Steady(), "interrupts": Interrupts()},  # type: ignore[dict-item]
                run_id="r2",
                run_dir=run_dir,
                run_info={"run_id": "r2"},
            )
        )
    assert _balanced(log)
    res = load_results(run_dir)
    assert res.run["status"] == "interrupted"
    assert [s.workload for s in res.samples] == ["steady"]
    assert live_runs(config.state_dir) == []
    assert not (config.state_dir / "runs" / "r2").exists()


class FakeClock:
    """Time that moves only when a fake workload says its cell took so long."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Costed(WorkloadDefaults):
    """A workload whose cells take ``cost[driver]`` fake seconds and give values with a set spread."""

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        cost: Mapping[str, float],
        spread: float,
        max_repetitions: int | None = None,
        counted: tuple[str, ...] = ("*",),
    ) -> None:
        import random

        self.name = name
        self.clock = clock
        self.cost = cost
        self.spread = spread
        self.max_repetitions = max_repetitions
        self.precision_figures = counted
        self.rng = random.Random(name)
        self.seen: list[tuple[str, Any]] = []
        self.slow_every_third = False

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            slow = self.slow_every_third and len(self.seen) % 3 == 1
            self.clock.now += self.cost[ctx.driver.name] * (30 if slow else 1)
        self.seen.append((ctx.driver.name, dict(ctx.params)))
        scale = float(ctx.params.get("scale", 1.0))
        value = scale * (1.0 + self.rng.uniform(-self.spread, self.spread))
        return [Measurement(f"{self.name}.value", value, "s")]


def _run_budget(
    tmp_path: Path,
    workloads: dict[str, Any],
    clock: FakeClock,
    drivers: tuple[str, ...] = ("host", "box"),
    variants: Mapping[str, RunConfig] | None = None,
    **cfg: Any,
) -> tuple[Any, list[str]]:
    log: list[str] = []
    config = RunConfig(state_dir=tmp_path / "state", output=tmp_path / "out", warmups=0, seed=3, **cfg)
    ctx = DriverContext(state_dir=config.state_dir, work_dir=tmp_path / "w", run_id="rb")
    run_dir = tmp_path / "out" / "rb"
    run_dir.mkdir(parents=True)
    results, errors = run_matrix(
        Runner(
            config,
            {d: logging_driver(ctx, log, d) for d in drivers},
            workloads,
            run_id="rb",
            run_dir=run_dir,
            run_info={"run_id": "rb"},
            variants=variants,
            clock=clock,
        )
    )
    assert errors == []
    return results, log


def _n(results: Any, workload: str, driver: str) -> int:
    return len({s.repetition for s in results.measured() if s.workload == workload and s.driver == driver})


def test_budget_goes_to_the_noisy_cheap_cells_and_is_never_exceeded(tmp_path: Path) -> None:
    clock = FakeClock()
    noisy = Costed("noisy", clock, {"host": 1.0, "box": 2.0}, spread=0.3)
    quiet = Costed("quiet", clock, {"host": 10.0, "box": 20.0}, spread=0.001)
    results, log = _run_budget(
        tmp_path, {"noisy": noisy, "quiet": quiet}, clock, budget=300.0, precision=0.05
    )
    b = results.run["budget"]
    assert b["spent"] <= 300.0 and clock.now <= 300.0
    assert _n(results, "quiet", "host") == _n(results, "quiet", "box") == 6  # met once judged
    assert _n(results, "noisy", "host") > 6 and _n(results, "noisy", "box") > 6  # bought precision
    units = {(u["driver"], u["workload"]): u for u in b["units"]}
    assert units[("host", "quiet")]["status"] == "met"
    assert all(f["met"] == (f["half_width"] <= 0.05) for u in b["units"] for f in u["figures"])
    assert b["figures_counted"] == 4 and b["figures_met"] >= 2
    assert results.run["order"]["seed"] == 3
    # extra repetitions stay interleaved: spread over rounds, each round holding both drivers
    rounds: dict[int, list[str]] = {}
    for s in results.measured():
        if s.workload == "noisy":
            rounds.setdefault(s.metadata["round"], []).append(s.driver)
    assert len(rounds) >= 5
    reps = [s.repetition for s in results.measured() if s.workload == "noisy" and s.driver == "host"]
    assert sorted(reps) == list(range(len(reps)))  # numbered without gaps or repeats
    assert _balanced(log)


def test_a_cell_that_cannot_finish_inside_the_budget_is_not_started(tmp_path: Path) -> None:
    clock = FakeClock()
    big = Costed("big", clock, {"host": 10.0, "box": 10.0}, spread=0.2)
    results, _ = _run_budget(tmp_path, {"big": big}, clock, budget=35.0)
    b = results.run["budget"]
    assert clock.now <= 35.0  # three 10 s cells ran; a fourth would have ended at 40 s
    assert len(big.seen) == 3
    assert b["cells_skipped"] >= 3
    assert {u["status"] for u in b["units"]} <= {"below its minimum n (budget)", "below target", "met"}
    assert b["stopped"] == "budget spent"


def test_capped_workloads_start_at_their_quick_cap_and_grow_to_their_cap(tmp_path: Path) -> None:
    clock = FakeClock()
    capped = Costed("capped", clock, {"host": 1.0}, spread=0.3, max_repetitions=3)
    capped.quick_repetitions = 1  # type: ignore[misc]
    uncounted = Costed("verdicts", clock, {"host": 1.0}, spread=0.3, counted=())
    results, _ = _run_budget(
        tmp_path, {"capped": capped, "verdicts": uncounted}, clock, drivers=("host",), budget=1000.0
    )
    assert _n(results, "capped", "host") == 3  # grew from 1 to its cap of 3, no further (not judged)
    assert _n(results, "verdicts", "host") == 3  # its minimum: nothing to sharpen
    statuses = {u["workload"]: u["status"] for u in results.run["budget"]["units"]}
    assert statuses["verdicts"] == "no counted figures"
    assert results.run["budget"]["limits"]["capped"] == {"min_n": 1, "max_n": 3}


def test_a_budget_too_small_for_the_first_pass_cuts_costly_one_shot_cells_not_cheap_repeats(
    tmp_path: Path,
) -> None:
    """The first pass ends with the one-shot cells: a cheap figure gets its minimum n (and an
    interval) before a costly cell that runs once anyway."""
    clock = FakeClock()
    cheap = Costed("cheap", clock, {"host": 1.0, "box": 1.0}, spread=0.3)
    costly = Costed("costly", clock, {"host": 30.0, "box": 30.0}, spread=0.3, max_repetitions=1)
    results, _ = _run_budget(tmp_path, {"costly": costly, "cheap": cheap}, clock, budget=40.0)
    assert _n(results, "cheap", "host") >= 3 and _n(results, "cheap", "box") >= 3
    assert len(costly.seen) == 1  # 6 x 1 s + 30 s; the second 30 s cell would end past 40 s
    cheap_rounds = sorted(s.metadata["round"] for s in results.measured() if s.workload == "cheap")
    assert cheap_rounds[:6] == [0, 0, 1, 1, 2, 2]
    rounds = {s.metadata["round"] for s in results.measured() if s.workload == "costly"}
    assert rounds == {2}  # the last round of the first pass
    assert results.run["budget"]["stopped"] == "budget spent"


def _ab_variants(tmp_path: Path) -> dict[str, RunConfig]:
    """A: the defaults; B: workload ``w`` at twice its scale."""
    state = tmp_path / "state"
    return {
        "A": RunConfig(state_dir=state),
        "B": RunConfig(state_dir=state, workload_params={"w": {"scale": 2.0}}),
    }


def test_ab_runs_both_configurations_interleaved_with_labels(tmp_path: Path) -> None:
    clock = FakeClock()
    w = Costed("w", clock, {"host": 1.0, "box": 1.0}, spread=0.01)
    results, _ = _run_budget(
        tmp_path, {"w": w}, clock, variants=_ab_variants(tmp_path), repetitions=3, repetitions_explicit=True
    )
    assert results.run["ab"]["labels"] == ["A", "B"]
    assert results.run["ab"]["configs"]["B"]["workloads"] == {"w": {"scale": 2.0}}
    by_label: dict[str, list[float]] = {"A": [], "B": []}
    per_round: dict[int, list[tuple[str, str]]] = {}
    for s in results.measured():
        by_label[s.params["ab"]].append(float(s.value or 0))
        per_round.setdefault(s.metadata["round"], []).append((s.driver, s.params["ab"]))
    assert len(by_label["A"]) == len(by_label["B"]) == 6  # 2 drivers x 3 rounds, host in both
    assert min(by_label["B"]) > 1.5 > max(by_label["A"])  # each side measured with its own config
    # every round holds both configurations of every driver
    assert all(
        sorted(r) == [("box", "A"), ("box", "B"), ("host", "A"), ("host", "B")] for r in per_round.values()
    )
    slots = [[s.metadata["slot"] for s in results.measured() if s.metadata["round"] == r] for r in per_round]
    assert all(sorted(sl) == [0, 1, 2, 3] for sl in slots)


def test_a_budgeted_ab_run_gives_every_group_enough_rounds_for_its_paired_test(tmp_path: Path) -> None:
    # Quiet figures meet a 5% target at n=6, where a run of one configuration stops them; an A/B
    # run's gate is the signed-rank test over rounds, which cannot judge at 6 (p >= 0.031).
    clock = FakeClock()
    w = Costed("w", clock, {"host": 1.0, "box": 1.0}, spread=0.001)
    results, _ = _run_budget(tmp_path, {"w": w}, clock, variants=_ab_variants(tmp_path), budget=1000.0)
    for driver in ("host", "box"):
        for label in ("A", "B"):
            n = len(
                {s.repetition for s in results.measured() if s.driver == driver and s.params["ab"] == label}
            )
            assert n == AB_JUDGED_N
    plain_clock = FakeClock()
    plain = Costed("w", plain_clock, {"host": 1.0, "box": 1.0}, spread=0.001)
    single, _ = _run_budget(tmp_path / "single", {"w": plain}, plain_clock, budget=1000.0)
    assert _n(single, "w", "host") == JUDGED_N  # met once judged: one configuration stops at 6


class Drifting(WorkloadDefaults):
    """Each cell costs 1 fake second; its value is a level shared by every cell of the same round
    (the machine drifting +-40% between rounds) times the configuration's ``scale``."""

    name: ClassVar[str] = "w"
    precision_figures: ClassVar[tuple[str, ...]] = ("*",)

    def __init__(self, clock: FakeClock, cells_per_round: int) -> None:
        import random

        rng = random.Random(11)
        self.levels = [rng.uniform(0.6, 1.4) for _ in range(1000)]
        self.clock = clock
        self.cells_per_round = cells_per_round
        self.calls = 0

    def run(self, ctx: WorkloadContext) -> Iterable[Measurement]:
        with ctx.sandbox():
            self.clock.now += 1.0
        level = self.levels[self.calls // self.cells_per_round]
        self.calls += 1
        return [Measurement("w.value", level * float(ctx.params.get("scale", 1.0)), "s")]


def test_an_ab_run_spends_its_rounds_on_the_change_not_on_the_sides(tmp_path: Path) -> None:
    # The sides drift +-40% from round to round, which a run of one configuration cannot average
    # down within its cap; B/A is the same in every round, so an A/B run knows the change at once.
    clock = FakeClock()
    ab, _ = _run_budget(
        tmp_path,
        {"w": Drifting(clock, 2)},
        clock,
        drivers=("host",),
        variants=_ab_variants(tmp_path),
        budget=1000.0,
    )
    b = ab.run["budget"]
    assert {_n(ab, "w", "host")} == {AB_JUDGED_N}
    assert b["stopped"] == "every counted figure met the target"
    assert b["limits"]["w"] == {"min_n": 3, "max_n": 400}  # an A/B run's default cap
    (change,) = b["changes"]
    assert change["label"] == "B" and change["against"] == "A" and change["met"]
    assert change["change"] == pytest.approx(1.0) and change["n"] == AB_JUDGED_N  # B is twice A
    assert all(not f["met"] for u in b["units"] for f in u["figures"])  # the sides are not known
    assert (
        budget_summary(ab.run)[1]
        == "A/B: 1 of 1 changes known to ±5% (95% interval of the change, paired by round)"
    )
    single_clock = FakeClock()
    single, _ = _run_budget(
        tmp_path / "single", {"w": Drifting(single_clock, 1)}, single_clock, drivers=("host",), budget=1000.0
    )
    assert _n(single, "w", "host") == 100  # a plain run's default cap
    assert single.run["budget"]["stopped"] == "repetition caps or failed cells"


def test_an_ab_change_that_stays_noisy_gets_rounds_up_to_the_cap_and_is_named(tmp_path: Path) -> None:
    clock = FakeClock()
    w = Costed("w", clock, {"host": 1.0}, spread=0.3)
    ab, _ = _run_budget(
        tmp_path, {"w": w}, clock, drivers=("host",), variants=_ab_variants(tmp_path), budget=1000.0, max_n=30
    )
    assert _n(ab, "w", "host") == 30
    (change,) = ab.run["budget"]["changes"]
    assert not change["met"] and change["half_width"] > 0.05 and change["n"] == 30
    lines = budget_summary(ab.run)
    assert lines[1].startswith("A/B: 0 of 1 changes known to ±5%")
    assert lines[2] == f"  w on host, B/A: n=30: worst w.value ±{change['half_width']:.1%}"


def test_the_repetition_cap_is_larger_for_an_ab_run_unless_set() -> None:
    assert RunConfig().cap() == 100 and RunConfig().cap(ab=True) == 400
    assert RunConfig(max_n=50).cap() == RunConfig(max_n=50).cap(ab=True) == 50


def test_a_round_whose_cells_no_longer_fit_ends_the_run(tmp_path: Path) -> None:
    """Typical cost says one more fits, the slowest seen says it does not: stop, do not spin."""
    clock = FakeClock()
    w = Costed("w", clock, {"host": 1.0}, spread=0.3)
    w.slow_every_third = True  # costs 1, 30, 1, 1, 30, ...
    results, _ = _run_budget(tmp_path, {"w": w}, clock, drivers=("host",), budget=70.0)
    # 1 + 30 + 1 (first pass) + 1 + 30; then the median (1 s) fits the 7 s left, the slowest not
    assert len(w.seen) == 5 and clock.now == 63.0
    assert results.run["budget"]["stopped"] == "budget spent"


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


def test_max_n_bounds_what_a_budget_buys(tmp_path: Path) -> None:
    # A figure that never meets its target grows to the cap, whatever budget is left.
    clock = FakeClock()
    noisy = Costed("noisy", clock, {"host": 1.0}, spread=0.5)
    results, _ = _run_budget(tmp_path, {"noisy": noisy}, clock, drivers=("host",), budget=1000.0, max_n=12)
    assert _n(results, "noisy", "host") == 12
    assert results.run["budget"]["limits"]["noisy"] == {"min_n": 3, "max_n": 12}
    assert clock.now < 1000.0
