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
