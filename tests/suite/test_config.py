from pathlib import Path

import pytest
from isobench.config import RunConfig, load_config
from isobench.errors import ConfigError


def test_defaults_without_file() -> None:
    assert load_config(None) == RunConfig()


def test_full_config(tmp_path: Path) -> None:
    p = tmp_path / "isobench.toml"
    p.write_text(
        '[run]\ndrivers = ["host"]\nrepetitions = 7\ntimeout = 30\noutput = "out"\n'
        "[sandbox]\nvcpus = 2\nmemory_mib = 1024\ncpuset = [0, 1]\n"
        '[drivers.vm]\naccel = "tcg"\n[workloads.cpu]\nthreads = 2\n'
    )
    c = load_config(p)
    assert c.drivers == ("host",)
    assert c.repetitions == 7 and c.timeout == 30
    assert c.output == Path("out")
    assert (c.vcpus, c.memory_mib, c.cpuset) == (2, 1024, (0, 1))
    assert c.driver_options == {"vm": {"accel": "tcg"}}
    assert c.workload_params == {"cpu": {"threads": 2}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run\n", "not valid TOML"),
        ("[runs]\n", "unknown table"),
        ("[run]\nrepetition = 3\n", "unknown key run.repetition"),
        ('[run]\nrepetitions = "3"\n', "wrong type"),
        ("[run]\nrepetitions = 0\n", "repetitions must be >= 1"),
        ("[run]\nquick = 1\n", "wrong type"),
        ("[sandbox]\ncpuset = [-1]\n", "cpuset"),
        ("[sandbox]\nmemory_mib = 8\n", "memory_mib"),
        ("[drivers]\nvm = 3\n", "must be tables"),
    ],
)
def test_malformed_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_quick_shrinks_repetitions() -> None:
    q = RunConfig(repetitions=10, warmups=2).quickened()
    assert q.quick and q.repetitions == 3 and q.warmups == 0


def test_budget_and_precision_from_the_file(tmp_path: Path) -> None:
    p = tmp_path / "isobench.toml"
    p.write_text('[run]\nbudget = "20m"\nprecision = "3%"\nseed = 5\nsizes = "full"\nwarmups = 1\n')
    c = load_config(p)
    assert (c.budget, c.precision, c.seed, c.sizes) == (1200.0, 0.03, 5, "full")
    assert c.with_default_budget().warmups == 1  # chosen warm-ups stay
    p.write_text("[run]\nbudget = 90\nprecision = 0.02\n")
    assert (load_config(p).budget, load_config(p).precision) == (90.0, 0.02)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[run]\nbudget = "a while"\n', "run.budget 'a while' is not a duration"),
        ('[run]\nprecision = "lots"\n', "precision 'lots' is not a percentage"),
        ('[run]\nsizes = "big"\n', "sizes must be one of auto, full, quick"),
    ],
)
def test_bad_budget_settings(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


def test_default_run_is_budgeted_and_fixed_counts_are_not() -> None:
    assert RunConfig().with_default_budget().budget == 1200.0
    assert RunConfig().with_default_budget().first_pass_grace == 1200.0  # its first pass may run to 40 min
    assert RunConfig(budget=1200.0).with_default_budget().first_pass_grace == 0  # a given one is a cap
    assert RunConfig(repetitions=5, repetitions_explicit=True).with_default_budget().budget is None
    assert RunConfig().quickened().with_default_budget().budget is None
    with pytest.raises(ConfigError, match="exclude each other"):
        RunConfig(budget=60.0, repetitions_explicit=True).with_default_budget()


def test_a_variant_file_merges_into_the_base(tmp_path: Path) -> None:
    from isobench.config import load_variant

    base = RunConfig(driver_options={"container": {"cpus": 1.0, "hardening": True}}, cpuset=(0,))
    p = tmp_path / "b.toml"
    p.write_text("[drivers.container]\ncpus = 0.9\n[sandbox]\nmemory_mib = 256\n")
    v = load_variant(p, base)
    assert v.driver_options == {"container": {"cpus": 0.9, "hardening": True}}
    assert (v.memory_mib, v.cpuset) == (256, (0,))
