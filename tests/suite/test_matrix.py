from collections import Counter
from pathlib import Path
from typing import Any

from isobench.runner import expand_matrix


def test_matrix_size_and_warmups() -> None:
    cells = expand_matrix(["host", "container", "vm"], ["startup", "cpu"], repetitions=3, warmups=1)
    assert len(cells) == 3 * 2 * 4
    assert sum(c.warmup for c in cells) == 3 * 2
    measured = [c for c in cells if not c.warmup]
    assert Counter((c.driver, c.workload) for c in measured) == {
        (d, w): 3 for d in ("host", "container", "vm") for w in ("startup", "cpu")
    }
    assert sorted({c.repetition for c in measured}) == [0, 1, 2]


def test_rounds_complete_before_the_next_starts() -> None:
    cells = expand_matrix(["a", "b"], ["w1", "w2"], repetitions=3, warmups=0)
    rounds = [c.round for c in cells]
    assert rounds == sorted(rounds)


def test_driver_order_rotates_between_rounds() -> None:
    drivers = ["host", "container", "vm"]
    cells = expand_matrix(drivers, ["cpu"], repetitions=3, warmups=0)
    firsts = [cells[i * 3].driver for i in range(3)]
    # Each driver goes first exactly once across three rounds: drift is spread evenly.
    assert sorted(firsts) == sorted(drivers)
    # Within a round every driver runs once.
    for i in range(3):
        assert sorted(c.driver for c in cells[i * 3 : i * 3 + 3]) == sorted(drivers)


def test_average_position_is_balanced() -> None:
    drivers = ["a", "b", "c", "d"]
    cells = expand_matrix(drivers, ["w"], repetitions=8, warmups=0)
    pos: dict[str, list[int]] = {d: [] for d in drivers}
    for i, c in enumerate(cells):
        pos[c.driver].append(i % 4)
    means = {d: sum(p) / len(p) for d, p in pos.items()}
    assert max(means.values()) - min(means.values()) == 0


def test_quick_cap_limits_one_workloads_rounds() -> None:
    cells = expand_matrix(
        ["a", "b"], ["cheap", "leakage"], repetitions=3, warmups=1, max_repetitions={"leakage": 1}
    )
    measured = [c for c in cells if not c.warmup]
    assert sum(c.workload == "cheap" for c in measured) == 6
    assert sum(c.workload == "leakage" for c in measured) == 2
    assert sum(c.workload == "leakage" for c in cells if c.warmup) == 0  # nor warmed up
    assert sum(c.workload == "cheap" for c in cells if c.warmup) == 2


def test_repetition_caps_combine_max_and_quick() -> None:
    from types import SimpleNamespace

    from isobench.runner import repetition_caps

    ws = {
        "cheap": SimpleNamespace(max_repetitions=None, quick_repetitions=None),
        "disk": SimpleNamespace(max_repetitions=3, quick_repetitions=1),
        "leakage": SimpleNamespace(max_repetitions=1, quick_repetitions=1),
    }
    assert repetition_caps(ws, quick=False) == {"disk": 3, "leakage": 1}  # type: ignore[arg-type]
    assert repetition_caps(ws, quick=True) == {"disk": 1, "leakage": 1}  # type: ignore[arg-type]


def test_explicit_repetitions_override_caps_but_not_the_warmup_skip(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from isobench.config import RunConfig, load_config
    from isobench.runner import config_caps

    ws: Any = {
        "cheap": SimpleNamespace(max_repetitions=None, quick_repetitions=None),
        "network": SimpleNamespace(max_repetitions=3, quick_repetitions=1),
    }
    assert config_caps(RunConfig(repetitions=10), ws) == {"network": 3}
    # `-n 10` (the CLI sets repetitions_explicit) or `[run] repetitions = 10`: ten of everything
    assert config_caps(RunConfig(repetitions=10, repetitions_explicit=True), ws) == {"network": 10}
    toml = tmp_path / "isobench.toml"
    toml.write_text("[run]\nrepetitions = 10\n")
    cfg = load_config(toml)
    assert cfg.repetitions_explicit
    caps = config_caps(cfg, ws)
    assert caps == {"network": 10}
    cells = expand_matrix(["a"], list(ws), repetitions=10, warmups=1, max_repetitions=caps)
    assert sum(c.workload == "network" and not c.warmup for c in cells) == 10
    assert not any(c.workload == "network" and c.warmup for c in cells)
    # --quick with -n: the quick cap gives way too
    quick = RunConfig(repetitions=4, repetitions_explicit=True).quickened()
    assert config_caps(quick, ws) == {"network": 3}  # quickened() clamps repetitions to 3
