import itertools
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


def test_every_round_holds_every_driver_once_in_a_seeded_order() -> None:
    drivers = ["host", "container", "vm"]
    cells = expand_matrix(drivers, ["cpu"], repetitions=4, warmups=0, seed=7)
    for i in range(4):
        rnd = cells[i * 3 : i * 3 + 3]
        assert sorted(c.driver for c in rnd) == sorted(drivers)
        assert [c.slot for c in rnd] == [0, 1, 2]
    assert cells == expand_matrix(drivers, ["cpu"], repetitions=4, warmups=0, seed=7)  # replayable
    assert cells != expand_matrix(drivers, ["cpu"], repetitions=4, warmups=0, seed=8)


def test_no_driver_systematically_follows_another() -> None:
    """A cyclic rotation made host always follow qemu; random permutations spread the predecessors."""
    drivers = ["host", "container", "vm", "runc", "bwrap", "qemu"]
    cells = expand_matrix(drivers, ["w"], repetitions=600, warmups=0, seed=1)
    follows: Counter[tuple[str, str]] = Counter()
    for prev, cur in itertools.pairwise(cells):
        if prev.round == cur.round:
            follows[(prev.driver, cur.driver)] += 1
    share = {
        d: {p: follows[(p, d)] / sum(follows[(q, d)] for q in drivers) for p in drivers if p != d}
        for d in drivers
    }
    # each of the 5 possible predecessors precedes a driver about a fifth of the time
    assert all(0.12 < v < 0.28 for row in share.values() for v in row.values()), share
    pos: dict[str, list[int]] = {d: [] for d in drivers}
    for c in cells:
        pos[c.driver].append(c.slot)
    means = [sum(p) / len(p) for p in pos.values()]
    assert max(means) - min(means) < 0.4  # mean position 2.5 for everyone


def test_quick_cap_limits_one_workloads_rounds() -> None:
    cells = expand_matrix(
        ["a", "b"], ["cheap", "leakage"], repetitions=3, warmups=1, max_repetitions={"leakage": 1}
    )
    measured = [c for c in cells if not c.warmup]
    assert sum(c.workload == "cheap" for c in measured) == 6
    assert sum(c.workload == "leakage" for c in measured) == 2
    assert sum(c.workload == "leakage" for c in cells if c.warmup) == 2  # one warm-up cell each
    assert sum(c.workload == "cheap" for c in cells if c.warmup) == 2


def test_capped_workloads_warm_up_once_however_many_warmup_rounds() -> None:
    cells = expand_matrix(
        ["a", "b"], ["cheap", "disk"], repetitions=3, warmups=2, max_repetitions={"disk": 3}
    )
    warm = [c for c in cells if c.warmup]
    assert Counter(c.workload for c in warm) == {"cheap": 4, "disk": 2}
    assert {c.round for c in warm if c.workload == "disk"} == {0}
    assert all(c.repetition == 0 for c in warm)


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


def test_explicit_repetitions_override_caps(tmp_path: Path) -> None:
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
    assert sum(c.workload == "network" and c.warmup for c in cells) == 1
    # --quick with -n: the quick cap gives way too
    quick = RunConfig(repetitions=4, repetitions_explicit=True).quickened()
    assert config_caps(quick, ws) == {"network": 3}  # quickened() clamps repetitions to 3
