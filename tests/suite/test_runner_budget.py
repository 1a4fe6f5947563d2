"""The runner's budgeted runs against fake workloads on a fake clock: the first pass, the allocator's
rounds, the cheap figures' share, A/B rounds and the repetition caps."""

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from isobench.budget import AB_JUDGED_N, JUDGED_N
from isobench.config import RunConfig
from isobench.drivers.base import DriverContext
from isobench.model import Measurement
from isobench.reports.budget import budget_summary
from isobench.runner import Progress, Runner, run_matrix
from isobench.workloads.base import WorkloadContext

from .conftest import WorkloadDefaults, balanced, logging_driver  # type: ignore[import-not-found]


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
    progress: Progress | None = None,
    **cfg: Any,
) -> tuple[Any, list[str]]:
    log: list[str] = []
    config = RunConfig(
        state_dir=tmp_path / "state", output=tmp_path / "out", seed=3, **({"warmups": 0} | cfg)
    )
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
            progress=progress,
        )
    )
    assert errors == []
    return results, log


def _n(results: Any, workload: str, driver: str) -> int:
    return len({s.repetition for s in results.measured() if s.workload == workload and s.driver == driver})


class FirstPass(Progress):
    def __init__(self) -> None:
        self.said: list[tuple[float, float]] = []

    def first_pass_done(self, spent: float, left: float) -> None:
        self.said.append((spent, left))


def test_budget_goes_to_the_noisy_cheap_cells_and_is_never_exceeded(tmp_path: Path) -> None:
    clock = FakeClock()
    noisy = Costed("noisy", clock, {"host": 1.0, "box": 2.0}, spread=0.3)
    quiet = Costed("quiet", clock, {"host": 10.0, "box": 20.0}, spread=0.001)
    progress = FirstPass()
    results, log = _run_budget(
        tmp_path, {"noisy": noisy, "quiet": quiet}, clock, budget=300.0, precision=0.05, progress=progress
    )
    assert progress.said == [(99.0, 201.0)]  # told once, as the extra rounds begin
    b = results.run["budget"]
    assert b["spent"] <= 300.0 and clock.now <= 300.0
    assert _n(results, "quiet", "host") == _n(results, "quiet", "box") == 6  # met once judged
    assert _n(results, "noisy", "host") > 6 and _n(results, "noisy", "box") > 6  # bought precision
    units = {(u["driver"], u["workload"]): u for u in b["units"]}
    assert units[("host", "quiet")]["status"] == "met"
    assert all(f["met"] == (f["half_width"] <= 0.05) for u in b["units"] for f in u["figures"])
    assert b["figures_counted"] == 4 and b["figures_met"] >= 2
    assert b["first_pass_s"] == 3 * (1.0 + 2.0 + 10.0 + 20.0)  # then the extra rounds
    assert results.run["order"]["seed"] == 3
    # extra repetitions stay interleaved: spread over rounds, each round holding both drivers
    rounds: dict[int, list[str]] = {}
    for s in results.measured():
        if s.workload == "noisy":
            rounds.setdefault(s.metadata["round"], []).append(s.driver)
    assert len(rounds) >= 5
    reps = [s.repetition for s in results.measured() if s.workload == "noisy" and s.driver == "host"]
    assert sorted(reps) == list(range(len(reps)))  # numbered without gaps or repeats
    assert balanced(log)


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
    assert results.run["budget"]["first_pass_s"] == 6 * 1.0 + 30.0  # all it could run of the pass


def test_the_default_budgets_first_pass_may_run_past_it_and_leaves_no_extra_rounds(tmp_path: Path) -> None:
    """The same matrix and budget as above, with the default budget's grace: the first pass is not
    cut (every cell measured), and nothing is started after it."""
    clock = FakeClock()
    cheap = Costed("cheap", clock, {"host": 1.0, "box": 1.0}, spread=0.3)
    costly = Costed("costly", clock, {"host": 30.0, "box": 30.0}, spread=0.3, max_repetitions=1)
    progress = FirstPass()
    results, _ = _run_budget(
        tmp_path,
        {"costly": costly, "cheap": cheap},
        clock,
        budget=40.0,
        first_pass_grace=40.0,
        progress=progress,
    )
    b = results.run["budget"]
    assert len(costly.seen) == 2  # both one-shot cells, the second past the 40 s
    assert _n(results, "cheap", "host") == _n(results, "cheap", "box") == 3  # no extra round
    assert b["cells_skipped"] == 0 and b["first_pass_grace_s"] == 40.0
    assert b["first_pass_s"] == b["spent"] == 6 * 1.0 + 2 * 30.0
    assert progress.said == [(66.0, -26.0)]
    assert b["stopped"] == "budget spent"


def test_a_first_pass_of_hanging_cells_stops_at_the_end_of_the_grace(tmp_path: Path) -> None:
    """A driver whose every cell runs to its deadline cannot hold a default run for hours: past
    the budget and its grace nothing more is started, and what was not is named."""
    clock = FakeClock()
    hung = {"host": 1.0, "box": 600.0}
    ws = {f"w{i}": Costed(f"w{i}", clock, hung, spread=0.3, max_repetitions=1) for i in range(6)}
    results, _ = _run_budget(tmp_path, ws, clock, budget=1200.0, first_pass_grace=1200.0)
    b = results.run["budget"]
    assert clock.now <= 2400.0 + 600.0  # the last cell started inside the grace may end past it
    assert b["cells_skipped"] >= 1
    unstarted = [u for u in b["units"] if u["n"] == 0]
    assert unstarted and all(u["status"] == "below its minimum n (budget)" for u in unstarted)
    assert sum(u["n"] for u in b["units"] if u["driver"] == "box") <= 4  # 4 x 600 s fill 40 minutes


def test_a_budget_the_user_gave_is_recorded_as_a_hard_cap(tmp_path: Path) -> None:
    clock = FakeClock()
    cheap = Costed("cheap", clock, {"host": 1.0}, spread=0.3)
    results, _ = _run_budget(tmp_path, {"cheap": cheap}, clock, drivers=("host",), budget=40.0)
    assert results.run["budget"]["first_pass_grace_s"] == 0
    assert clock.now <= 40.0


def test_cheap_figures_get_their_need_before_the_costly_one_shot_cells(tmp_path: Path) -> None:
    """A first pass can take a whole budget; a start-up figure that costs milliseconds is not left
    at n=3 for it: before the pass's last round (the costly cells), groups whose whole need costs
    little get it, within CHEAP_SHARE of the budget."""
    clock = FakeClock()
    cheap = Costed("cheap", clock, {"host": 0.05, "box": 0.05}, spread=0.5)  # never meets 5%: to its cap
    costly = Costed("costly", clock, {"host": 400.0, "box": 400.0}, spread=0.3, max_repetitions=1)
    results, _ = _run_budget(tmp_path, {"cheap": cheap, "costly": costly}, clock, budget=1000.0)
    costly_round = {s.metadata["round"] for s in results.measured() if s.workload == "costly"}
    assert len(costly.seen) == 2 and len(costly_round) == 1
    for driver in ("host", "box"):
        rounds = [
            s.metadata["round"] for s in results.measured() if s.workload == "cheap" and s.driver == driver
        ]
        assert len(rounds) == 100  # its cap (ADAPTIVE_MAX_N)
        assert max(rounds) < min(costly_round)  # all of it before the costly cells
    assert results.run["budget"]["stopped"] == "repetition caps or failed cells"


class Counting(Progress):
    """The bar's total and how many cells finished, as the CLI's bar counts them."""

    def __init__(self) -> None:
        self.total = 0
        self.finished = 0

    def start(self, total: int) -> None:
        self.total = total

    def extend(self, more: int) -> None:
        self.total += more

    def cell_skipped(self, cell: Any) -> None:
        self.extend(-1)

    def cell_finished(self, cell: Any, samples: Any) -> None:
        self.finished += 1


@pytest.mark.parametrize("warmups", [0, 2])
@pytest.mark.parametrize("budget", [45.0, 1000.0])
def test_the_progress_total_is_what_ran_when_the_run_ends(
    tmp_path: Path, warmups: int, budget: float
) -> None:
    """A default run's bar ended at 424/534: the first pass counted every unit at the largest
    minimum n (a one-shot cell three times), and a unit the cheap rounds had served twice."""
    clock = FakeClock()
    cheap = Costed("cheap", clock, {"host": 0.05, "box": 0.05}, spread=0.5)
    costly = Costed("costly", clock, {"host": 10.0, "box": 10.0}, spread=0.3, max_repetitions=1)
    progress = Counting()
    _run_budget(
        tmp_path,
        {"cheap": cheap, "costly": costly},
        clock,
        budget=budget,
        warmups=warmups,
        progress=progress,
    )
    assert progress.finished > 0
    assert progress.total == progress.finished


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


def test_max_n_bounds_what_a_budget_buys(tmp_path: Path) -> None:
    # A figure that never meets its target grows to the cap, whatever budget is left.
    clock = FakeClock()
    noisy = Costed("noisy", clock, {"host": 1.0}, spread=0.5)
    results, _ = _run_budget(tmp_path, {"noisy": noisy}, clock, drivers=("host",), budget=1000.0, max_n=12)
    assert _n(results, "noisy", "host") == 12
    assert results.run["budget"]["limits"]["noisy"] == {"min_n": 3, "max_n": 12}
    assert clock.now < 1000.0


def test_a_first_use_warmup_workload_gets_one_unrecorded_cell_per_driver_first(tmp_path: Path) -> None:
    def run(primed: bool, **cfg: Any) -> Any:
        clock = FakeClock()
        start = Costed("start", clock, {"host": 1.0, "box": 2.0}, spread=0.3)
        start.first_use_warmup = primed
        other = Costed("other", clock, {"host": 1.0, "box": 1.0}, spread=0.3)
        out = tmp_path / f"{primed}-{len(cfg)}"
        return _run_budget(out, {"start": start, "other": other}, clock, budget=60.0, **cfg)[0]

    results = run(True)
    warm = [s for s in results.samples if s.warmup]
    assert sorted((s.workload, s.driver) for s in warm) == [("start", "box"), ("start", "host")]
    # before anything measured, and not counted: the measured repetitions still start at 0
    first_measured = min(i for i, s in enumerate(results.samples) if not s.warmup)
    assert all(results.samples.index(s) < first_measured for s in warm)
    assert min(s.repetition for s in results.measured() if s.workload == "start") == 0
    # the seed orders the measured first pass as it does without the warm-up round
    plain = run(False)
    n = 3 * 4  # the first pass: 3 rounds of 2 workloads x 2 drivers
    order = [(s.workload, s.driver) for s in results.measured()][:n]
    assert order == [(s.workload, s.driver) for s in plain.measured()][:n]
    assert not any(s.warmup for s in plain.samples)
    # warm-ups the user asked for (none here) are the user's: no first-use round then
    assert not any(s.warmup for s in run(True, warmups_explicit=True).samples)
