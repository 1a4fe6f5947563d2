"""The layers workload: its probe's output parsed, and its orchestration over scripted sandboxes
(stacks built for real in a temporary state dir, sandboxes faked)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from isobench.drivers.base import LayerStack
from isobench.drivers.bwrap.driver import BwrapDriver
from isobench.drivers.container.driver import ContainerDriver
from isobench.drivers.qemu.driver import QemuDriver
from isobench.errors import WorkloadError
from isobench.layers import LAYERS_SUBDIR
from isobench.testing import FakeDriver, Reply, workload_context
from isobench.workloads.layers import (
    COLD_PHASES,
    LayersParams,
    LayersWorkload,
    merged_entries,
    parse_probe,
    probe_measurements,
)

DATA = Path(__file__).parent / "data"
#: Recorded on this machine: the probe run phase by phase over a depth-1 stack's directory.
RECORDED = (DATA / "layers_probe_d1.txt").read_text()
SMALL = {"per_group": 3, "big_mib": 1, "write_kib": 64, "warm_repetitions": 2, "drop_caches": False}


def test_recorded_probe_output_gives_per_operation_figures() -> None:
    out = parse_probe(RECORDED)
    assert out.dropped_inside is True
    p = LayersParams(big_mib=16, warm_repetitions=2)
    figures = {m.metric: m for m in probe_measurements(out, 1, p, {"stack": "x"})}
    assert figures["layers.stat_bottom_cold"].value == pytest.approx(4872467 / 64 / 1e9)
    assert figures["layers.stat_miss_warm"].value == pytest.approx(599379 / 128 / 1e9)
    assert figures["layers.read_cold"].value == pytest.approx(16777216 / 0.023470972)
    assert figures["layers.read_cold"].unit == "bytes_per_second"
    assert figures["layers.first_write"].value == pytest.approx(0.010792932)
    assert all(m.params["depth"] == 1 for m in figures.values())
    assert len(figures) == 11


def test_a_probe_that_saw_another_stack_is_refused() -> None:
    # A miss that was found: the stack holds a name it should not.
    text = RECORDED.replace("t stat_cold:m 3303878 64 0", "t stat_cold:m 3303878 64 5")
    with pytest.raises(WorkloadError, match="stat_cold:m: saw 5, expected 0"):
        probe_measurements(parse_probe(text), 1, LayersParams(big_mib=16, warm_repetitions=2), {})
    # A listing that lacks some layer's entries.
    with pytest.raises(WorkloadError, match="readdir_cold: saw 200, expected"):
        probe_measurements(parse_probe(RECORDED), 4, LayersParams(big_mib=16, warm_repetitions=2), {})


def test_no_timings_is_an_error() -> None:
    with pytest.raises(WorkloadError, match="no timings"):
        parse_probe("dropped no\nCan't locate Time/HiRes.pm\n")


def _probe_reply(p: LayersParams):  # type: ignore[no-untyped-def]
    """A scripted probe answering each phase with counts that fit the stack it was pointed at."""

    def answer(argv: tuple[str, ...]) -> Reply:
        drop, phase = argv[4], argv[5]
        n = p.per_group
        head = "dropped no\n" if drop == "1" else ""
        lines = {
            "readdir": f"t readdir_cold 1000 1 {ENTRIES[0]}",
            "stat-b": f"t stat_cold:b 3000 {n} {n}",
            "stat-t": f"t stat_cold:t 2000 {n} {n}",
            "stat-m": f"t stat_cold:m 4000 {n} 0",
            "open": f"t open_cold:o 3000 {n} {n}",
            "read": f"t read_cold 1000000 1 {p.big_mib << 20}",
            "warm": f"t stat_warm:b 100 {n * 2} {n * 2}\nt stat_warm:m 50 {n * 2} 0\nt readdir_warm 10 1 {ENTRIES[0]}",
            "write": "t first_write 5000 1 4096\nt later_write 1000 1 4096",
        }
        return Reply(stdout=head + lines[phase] + "\n")

    return answer


ENTRIES = [0]


def _state(tmp_path: Path) -> Path:
    image = tmp_path / "state" / "images" / "default-0123456789abcdef"
    image.mkdir(parents=True)
    (image / ".complete").touch()
    return tmp_path / "state"


def _run(driver: FakeDriver, tmp_path: Path, depths: list[int]) -> list:  # type: ignore[type-arg]
    params = {**SMALL, "depths": depths}
    p = LayersParams(**{**SMALL, "depths": tuple(depths)})
    driver.on(r"^perl -e", _probe_reply(p))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ctx = workload_context(driver, params=params, scratch=scratch)
    ctx = dataclasses.replace(ctx, state_dir=_state(tmp_path))
    out = []
    for depth in depths:
        ENTRIES[0] = merged_entries(depth, p)
        ctx1 = dataclasses.replace(ctx, params={**params, "depths": [depth]})
        out += list(LayersWorkload().run(ctx1))
    return out


def test_containers_run_over_the_stacked_directories(tmp_path: Path) -> None:
    driver = FakeDriver.like(ContainerDriver)
    out = _run(driver, tmp_path, [1, 3])
    stacks = [sb.spec.layers for sb in driver.sandboxes]
    assert [s.depth for s in stacks if s is not None] == [1, 3]
    deep = stacks[1]
    assert isinstance(deep, LayerStack) and len(deep.dirs) == 3 and deep.chain == ()
    # Topmost first: the top layer holds the t* files, the bottom one b*, o*, big and w.
    assert (deep.dirs[0] / LAYERS_SUBDIR / "t000").is_file()
    assert (deep.dirs[-1] / LAYERS_SUBDIR / "big").stat().st_size == 1 << 20
    assert not (deep.dirs[0] / LAYERS_SUBDIR / "b000").exists()
    phases = [c.argv[5] for c in driver.calls]
    assert phases == [*COLD_PHASES, "warm", "write"] * 2
    assert {c.argv[3] for c in driver.calls} == {f"/{LAYERS_SUBDIR}"}
    metrics = {(m.metric, m.params.get("depth")) for m in out}
    for depth in (1, 3):
        for name in (
            "stat_bottom_cold",
            "stat_miss_cold",
            "read_cold",
            "first_write",
            "add_layer",
            "start_to_ready",
        ):
            assert (f"layers.{name}", depth) in metrics
    assert all(
        m.metadata.get("dropped_on_host") is False for m in out if m.metric == "layers.stat_bottom_cold"
    )


def test_guests_run_over_a_qcow2_chain_on_their_data_disk(tmp_path: Path) -> None:
    driver = FakeDriver.like(QemuDriver)
    out = _run(driver, tmp_path, [2])
    (stack,) = [sb.spec.layers for sb in driver.sandboxes]
    assert stack is not None and len(stack.chain) == 2 and all(p.is_file() for p in stack.chain)
    assert {c.argv[3] for c in driver.calls} == {f"/data/{LAYERS_SUBDIR}"}
    add = [m for m in out if m.metric == "layers.add_layer"]
    assert add[0].metadata["what"] == "qemu-img create -b <top>"


def test_drivers_without_layers_say_so(tmp_path: Path) -> None:
    driver = FakeDriver.like(BwrapDriver)
    ctx = dataclasses.replace(workload_context(driver, params=SMALL), state_dir=_state(tmp_path))
    (m,) = LayersWorkload().run(ctx)
    assert (m.metric, m.value) == ("layers.applicable", 0)
    assert "attaches no layer stacks (overlayfs root" in m.metadata["reason"]
    assert driver.sandboxes == []


def test_a_depth_the_driver_refuses_ends_the_ramp_and_says_why(tmp_path: Path) -> None:
    from isobench.errors import UsageError

    class Refusing(FakeDriver):
        def create(self, spec):  # type: ignore[no-untyped-def]
            if spec.layers is not None and spec.layers.depth > 2:
                raise UsageError(
                    "5 overlay layers need 5000 bytes of mount options, over the 4096 mount(2) takes"
                )
            return super().create(spec)

    driver = Refusing.like(ContainerDriver)
    p = LayersParams(**{**SMALL, "depths": (2, 5, 9)})
    ENTRIES[0] = merged_entries(2, p)
    driver.on(r"^perl -e", _probe_reply(p))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ctx = workload_context(driver, params={**SMALL, "depths": [2, 5, 9]}, scratch=scratch)
    out = list(LayersWorkload().run(dataclasses.replace(ctx, state_dir=_state(tmp_path))))
    (reached,) = [m for m in out if m.metric == "layers.depth_reached"]
    assert reached.value == 2 and reached.metadata["refused_at"] == 5
    assert "mount options" in reached.metadata["stopped"]
    assert {m.params.get("depth") for m in out if m.metric == "layers.stat_bottom_cold"} == {2}


def test_a_driver_with_its_own_way_of_adding_a_layer_is_timed_by_it(tmp_path: Path) -> None:
    from isobench.drivers.docker.driver import DockerDriver
    from isobench.drivers.layerstack import LayerAdder

    asked: list[int] = []

    class Committing(FakeDriver):
        def add_layer(self, stack: LayerStack) -> float:
            asked.append(stack.depth)
            return 0.25

    driver = Committing.like(DockerDriver)
    assert isinstance(driver, LayerAdder)
    out = _run(driver, tmp_path, [2])
    (added,) = [m for m in out if m.metric == "layers.add_layer"]
    assert asked == [2] and added.value == 0.25 and "commit" in added.metadata["what"]
