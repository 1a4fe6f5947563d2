"""Every workload's parameters are checked completely when the config is loaded: types, ranges and
the values an enum allows. A bad value is one line and exit 2 before anything runs."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from isobench import cli
from isobench.errors import UsageError
from isobench.workloads._common import Params, resolve_params
from isobench.workloads.base import all_workloads, check_fit, check_params

#: One bad value per workload (and per kind of check), with the line the user reads.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("cpu", {"events": 0}, "workload cpu: parameter events must be > 0, got 0"),
    ("cpu", {"max_prime": True}, "workload cpu: parameter max_prime must be int, got True"),
    ("density", {"container_steps": [5, 1]}, "workload density: container_steps must be increasing"),
    ("density", {"memory_fraction": 1.5}, "workload density: parameter memory_fraction must be in (0, 1]"),
    ("density", {"ksm": 1}, "workload density: parameter ksm must be bool, got 1"),
    ("disk", {"size_mib": 0}, "workload disk: parameter size_mib must be > 0, got 0"),
    (
        "disk",
        {"iodepths": ["deep"]},
        "workload disk: parameter iodepths must be a list of int, got ('deep',)",
    ),
    ("disk", {"iodepths": []}, "workload disk: parameter iodepths must not be empty"),
    ("disk", {"patterns": ["rand_read", "zigzag"]}, "disk.patterns: unknown zigzag; known: seq_read"),
    ("disk", {"ioengine": "warp"}, "disk.ioengine must be one of libaio"),
    ("disk", {"runtime": "five"}, "workload disk: parameter runtime must be a fio duration"),
    ("disk", {"runtime": "0s"}, "parameter runtime must be a fio duration like 5s or 500ms (> 0), got '0s'"),
    ("disk", {"ramp_time": "1 s"}, "workload disk: parameter ramp_time must be a fio duration"),
    ("escape", {"probe_timeout": 0}, "workload escape: parameter probe_timeout must be > 0, got 0"),
    ("idle-memory", {"settle_seconds": -1}, "workload idle-memory: parameter settle_seconds must be >= 0"),
    ("interference", {"duration": 0}, "workload interference: parameter duration must be > 0, got 0.0"),
    ("interference", {"victims": ["cpu", "gpu"]}, "interference.victims: unknown gpu; known: cpu"),
    ("layers", {"depths": [1, 0]}, "workload layers: parameter depths must be > 0, got (1, 0)"),
    ("layers", {"depths": [1, 501]}, "workload layers: depths go up to 500 (overlayfs' lower-layer limit)"),
    ("leakage", {"correlations": 1}, "workload leakage: parameter correlations must be bool, got 1"),
    ("limits", {"cpu_quotas": []}, "workload limits: parameter cpu_quotas must not be empty"),
    ("limits", {"cpuset": [-1]}, "workload limits: parameter cpuset must be >= 0, got (-1,)"),
    ("limits", {"memory_cap_factor": 1}, "workload limits: memory_cap_factor must be > 1"),
    ("memory-bandwidth", {"operations": ["copy"]}, "memory-bandwidth.operations: unknown copy; known: read"),
    ("memory-bandwidth", {"block_mib": -64}, "workload memory-bandwidth: parameter block_mib must be > 0"),
    ("network", {"message_size": 0}, "workload network: parameter message_size must be > 0, got 0"),
    ("network", {"placement": "anywhere"}, "network.placement must be one of cross-cpu, same-cpu, free"),
    ("overlay", {"files": ["file-4k", "whiteout-file"]}, "overlay.files: unknown whiteout-file; known:"),
    ("overlay", {"fixtures_dir": "fixtures"}, "parameter fixtures_dir must be an absolute path"),
    ("startup", {"command": []}, "workload startup: parameter command must not be empty"),
    ("startup", {"command": "true"}, "workload startup: parameter command must be a list of str, got 'true'"),
    ("syscall", {"fork_exec_chunk": 0}, "workload syscall: parameter fork_exec_chunk must be > 0"),
    ("syscall", {"exec_path": "true"}, "workload syscall: parameter exec_path must be an absolute path"),
]


def test_every_workload_is_covered_by_a_bad_value() -> None:
    assert {name for name, _, _ in BAD} == set(all_workloads())


@pytest.mark.parametrize(("workload", "given", "message"), BAD)
def test_bad_value_is_a_usage_error(workload: str, given: dict[str, Any], message: str) -> None:
    for quick in (False, True):
        with pytest.raises(UsageError) as err:
            check_params({workload: given}, quick=quick)
        assert message in str(err.value)


@pytest.mark.parametrize(("workload", "given", "message"), BAD[::3])
def test_bad_value_in_the_config_file_stops_the_cli_before_the_run(
    tmp_path: Path, workload: str, given: dict[str, Any], message: str
) -> None:
    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ", ".join(map(toml, v)) + "]"
        return f"'{v}'" if isinstance(v, str) else str(v)

    _assert_refused_before_the_run(
        tmp_path,
        f"[workloads.{workload}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in given.items()),
        [],
        message,
    )


def _assert_refused_before_the_run(tmp_path: Path, toml: str, args: list[str], message: str) -> None:
    """``isobench run`` with this config file: one error line, exit 2, and no results directory."""
    cfg = tmp_path / "isobench.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    argv = [
        "run",
        "--config",
        str(cfg),
        "--drivers",
        "host",
        "-o",
        str(out),
        "--state-dir",
        str(tmp_path / "s"),
    ]
    r = CliRunner().invoke(cli.main, [*argv, *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_params_know_their_workload_and_their_defaults_are_valid() -> None:
    for name, w in all_workloads().items():
        cls = w.params_type
        assert issubclass(cls, Params), name
        assert cls.workload == name
        assert resolve_params(cls, False, {}, name) == cls()
        assert resolve_params(cls, True, {}, name) == cls.quick()  # type: ignore[attr-defined]


def test_config_ints_become_floats_and_lists_tuples() -> None:
    from isobench.workloads.interference import InterferenceParams

    p = resolve_params(InterferenceParams, False, {"duration": 2, "victims": ["memory"]}, "interference")
    assert p.duration == 2.0 and isinstance(p.duration, float)
    assert p.victims == ("memory",)


def test_direct_construction_is_checked_too() -> None:
    from isobench.workloads.cpu import CpuParams

    with pytest.raises(UsageError, match=r"workload cpu: parameter all_vcpus must be >= 0, got -1"):
        CpuParams(all_vcpus=-1)


def _number_kind(hint: Any) -> tuple[type, bool] | None:
    """(int or float, is it a list) of a numeric parameter's annotation; None for the others."""
    optional = typing.get_origin(hint) in (types.UnionType, typing.Union)
    args = [h for h in typing.get_args(hint) if h is not type(None)] if optional else [hint]
    if len(args) != 1:
        return None
    (inner,) = args
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        return (item, True) if item in (int, float) else None
    return (inner, False) if inner in (int, float) else None


def test_every_number_is_refused_below_its_bound_before_a_run() -> None:
    """Item 7 of #20, for every numeric parameter of every workload (not one example each): zero and
    a negative value are refused when the config is checked, or, where the field names the lowest
    value it takes (``min``: 0 for "off" or "auto"), a value below that is."""
    checked = 0
    for name, w in all_workloads().items():
        hints = typing.get_type_hints(w.params_type)
        for f in dataclasses.fields(w.params_type):
            kind = _number_kind(hints[f.name])
            if kind is None:
                continue
            number, is_list = kind
            minimum = f.metadata.get("min")
            for bad in (0, -1) if minimum is None else (minimum - 1,):
                value: Any = number(bad)
                given = {f.name: [value] if is_list else value}
                with pytest.raises(UsageError, match=f"parameter {f.name} must be"):
                    check_params({name: given}, quick=True)
                checked += 1
    assert checked >= 60, checked


def test_parameters_that_cannot_fit_the_run_are_refused_before_it() -> None:
    """What the type and range checks cannot see: a value against the run's sandbox or host."""
    mb = {"memory-bandwidth": {"block_mib": 512}}
    with pytest.raises(UsageError, match=r"block_mib=512 does not fit a 512 MiB sandbox; lower block_mib"):
        check_fit(["memory-bandwidth"], mb, quick=True, memory_mib=512, cpus={0, 1})
    check_fit(["memory-bandwidth"], mb, quick=True, memory_mib=1024, cpus={0, 1})
    # The defaults count too, at the sizes the run will use: full sizes walk a 128 MiB block.
    with pytest.raises(UsageError, match=r"block_mib=128 does not fit a 200 MiB sandbox"):
        check_fit(["memory-bandwidth"], {}, quick=False, memory_mib=200, cpus=None)
    check_fit(["memory-bandwidth"], {}, quick=True, memory_mib=200, cpus=None)
    # A workload that is not chosen is not judged.
    check_fit(["cpu"], mb, quick=True, memory_mib=64, cpus=None)
    lim = {"limits": {"cpuset": [1, 7]}}
    with pytest.raises(UsageError, match=r"workload limits: cpuset CPUs \[7\] are not available to this run"):
        check_fit(["limits"], lim, quick=True, memory_mib=512, cpus={0, 1})
    # A fleet's workers have their own CPUs: nothing to judge here.
    check_fit(["limits"], lim, quick=True, memory_mib=512, cpus=None)
    with pytest.raises(
        UsageError, match=r"workload cpu: all_vcpus=3 is more than the CPUs this run may use \(2\)"
    ):
        check_fit(["cpu"], {"cpu": {"all_vcpus": 3}}, quick=True, memory_mib=512, cpus={0, 1})
    check_fit(["cpu"], {"cpu": {"all_vcpus": 2}}, quick=True, memory_mib=512, cpus={0, 1})
    check_fit(["cpu"], {"cpu": {"all_vcpus": 3}}, quick=True, memory_mib=512, cpus=None)


@pytest.mark.parametrize(
    ("toml", "args", "message"),
    [
        (
            "[workloads.memory-bandwidth]\nblock_mib = 100000\n",
            ["--workloads", "memory-bandwidth", "--quick"],
            "workload memory-bandwidth: block_mib=100000 does not fit a 512 MiB sandbox",
        ),
        (
            "[sandbox]\nmemory_mib = 100\n",
            ["--workloads", "memory-bandwidth", "--sizes", "full", "-n", "1"],
            "workload memory-bandwidth: block_mib=128 does not fit a 100 MiB sandbox",
        ),
        (
            "[workloads.limits]\ncpuset = [4096]\n",
            ["--workloads", "limits", "--quick"],
            "workload limits: cpuset CPUs [4096] are not available to this run",
        ),
        (
            "[workloads.cpu]\nall_vcpus = 4096\n",
            ["--workloads", "cpu", "--quick"],
            "workload cpu: all_vcpus=4096 is more than the",
        ),
        (
            "[sandbox]\nvcpus = 4096\n",
            ["--workloads", "cpu", "--quick"],
            "sandbox.vcpus = 4096 is more than the",
        ),
        (
            "[sandbox]\ncpuset = [0]\nvcpus = 2\n",
            ["--workloads", "cpu", "--quick"],
            "sandbox.vcpus = 2 is more than the 1 CPU its cpuset names (0): its vCPUs would take turns",
        ),
    ],
)
def test_a_misfit_stops_the_cli_before_the_run(
    tmp_path: Path, toml: str, args: list[str], message: str
) -> None:
    _assert_refused_before_the_run(tmp_path, toml, args, message)


def test_an_ab_configuration_with_more_vcpus_than_cpus_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[sandbox]\nvcpus = 1\n")
    (tmp_path / "wide.toml").write_text("[sandbox]\nvcpus = 4096\n")
    ab = ["--ab", str(tmp_path / "a.toml"), str(tmp_path / "wide.toml")]
    _assert_refused_before_the_run(
        tmp_path, "", ["--workloads", "cpu", "--quick", *ab], "--ab wide: sandbox.vcpus = 4096 is more than"
    )


def test_each_ab_configuration_is_judged_against_its_own_sandbox(tmp_path: Path) -> None:
    (tmp_path / "big.toml").write_text("[sandbox]\nmemory_mib = 1024\n")
    (tmp_path / "small.toml").write_text("[sandbox]\nmemory_mib = 100\n")
    ab = ["--ab", str(tmp_path / "big.toml"), str(tmp_path / "small.toml")]
    args = ["--workloads", "memory-bandwidth", "--sizes", "full", "-n", "1", *ab]
    _assert_refused_before_the_run(tmp_path, "", args, "block_mib=128 does not fit a 100 MiB sandbox")
