"""CLI bad input: one clear line each, exit code 2, nothing half-written in the output dir."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from isobench import cli, launch
from isobench.drivers.base import Availability, DriverContext
from isobench.results import load_results


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def _assert_clean_failure(result: Any, out: Path, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists() or list(out.iterdir()) == []


def test_unknown_driver(out: Path, tmp_path: Path) -> None:
    r = _invoke("run", "--drivers", "host,warp", "-o", str(out), "--state-dir", str(tmp_path / "s"))
    _assert_clean_failure(r, out, "unknown driver(s) warp")


def test_unknown_workload(out: Path, tmp_path: Path) -> None:
    r = _invoke("run", "--workloads", "nope", "-o", str(out), "--state-dir", str(tmp_path / "s"))
    _assert_clean_failure(r, out, "unknown workload(s) nope")


def test_malformed_config(out: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[run]\nrepetitions = 'many'\n")
    r = _invoke("run", "--config", str(cfg), "-o", str(out))
    _assert_clean_failure(r, out, "wrong type")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[workloads.cpu]\nthreads = 1\n", "workload cpu: unknown parameter(s) threads"),
        ("[workloads.cpu]\nevents = 'lots'\n", "parameter events must be int"),
        ("[workloads.nope]\nx = 1\n", "[workloads.nope]: no such workload"),
        ("[workloads.network]\nplacement = 'anywhere'\n", "network.placement must be one of"),
        ("[workloads.interference]\nstressors = ['cpu', 'typo']\n", "interference.stressors: unknown typo"),
        ("[workloads.leakage]\ncorrelations = 'no'\n", "parameter correlations must be bool"),
        ("[workloads.disk]\nsize_mib = 0\n", "workload disk: parameter size_mib must be > 0, got 0"),
        ("[workloads.disk]\niodepths = [1, -4]\n", "parameter iodepths must be > 0, got (1, -4)"),
        ("[workloads.cpu]\nall_vcpus = -1\n", "parameter all_vcpus must be >= 0, got -1"),
        ("[workloads.network]\niperf_seconds = 0\n", "parameter iperf_seconds must be > 0"),
        # Driver tables, also of drivers the run does not select: a typo waits for the next run.
        ("[drivers.vm]\nboot_timout = 60\n", "[drivers.vm]: unknown option 'boot_timout'; known:"),
        ("[drivers.vm]\nboot_timeout = 'long'\n", "option boot_timeout must be int or float, got 'long'"),
        ("[drivers.qemu]\nprobe_boots = 2.5\n", "option probe_boots must be int, got 2.5"),
        ("[drivers.runc]\ncommand_timeout = true\n", "option command_timeout must be int or float"),
        ("[drivers.container]\nhardening = 'no'\n", "option hardening must be bool"),
        ("[drivers.host]\nanything = 1\n", "[drivers.host]: unknown option 'anything'; known: start_delay"),
        ("[drivers.warp]\nx = 1\n", "[drivers.warp]: no such driver"),
    ],
)
def test_bad_params_and_options_fail_before_the_run(
    out: Path, tmp_path: Path, toml: str, message: str
) -> None:
    cfg = tmp_path / "isobench.toml"
    cfg.write_text(toml)
    r = _invoke(
        "run", "--config", str(cfg), "--drivers", "host", "-o", str(out), "--state-dir", str(tmp_path / "s")
    )
    _assert_clean_failure(r, out, message)


def test_every_workload_declares_its_params() -> None:
    import dataclasses

    from isobench.workloads.base import all_workloads

    for name, w in all_workloads().items():
        assert dataclasses.is_dataclass(w.params_type), name
        assert isinstance(w.params_type.quick(), w.params_type), name  # type: ignore[attr-defined]
        w.params_type()  # the defaults are valid


def test_bad_repetitions_flag(out: Path) -> None:
    r = _invoke("run", "--repetitions", "0", "-o", str(out), "--drivers", "host")
    _assert_clean_failure(r, out, "repetitions must be >= 1")


def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _invoke("run", "--drivers", "host", "-o", str(blocker / "sub"))
    assert r.exit_code == 2
    assert "is not writable" in r.output
    r = _invoke("run", "--drivers", "host", "-o", str(blocker))
    assert r.exit_code == 2
    assert f"output directory {blocker} is a file; name a directory" in r.output


class _Unavailable:
    name: ClassVar[str] = "ghost"
    description: ClassVar[str] = "never here"

    def __init__(self, ctx: DriverContext) -> None:
        pass

    def availability(self) -> Availability:
        return Availability(False, "libvirtd is not running; start it with `libvirtd -d`")

    def metadata(self) -> Mapping[str, Any]:
        return {}


def test_unavailable_driver(out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isobench.drivers.host import HostDriver

    monkeypatch.setattr(launch, "all_drivers", lambda: {"host": HostDriver, "ghost": _Unavailable})
    r = _invoke("run", "--drivers", "host,ghost", "-o", str(out), "--state-dir", str(tmp_path / "s"))
    _assert_clean_failure(r, out, "driver ghost is unavailable on this host: libvirtd is not running")


def test_report_of_missing_dir(tmp_path: Path) -> None:
    r = _invoke("report", str(tmp_path / "nope"))
    assert r.exit_code == 2
    assert "not an isobench results directory" in r.output or "does not exist" in r.output


def test_list_names_host_driver() -> None:
    r = _invoke("list")
    assert r.exit_code == 0
    assert "host" in r.output


def test_gc_on_empty_state(tmp_path: Path) -> None:
    # Safe on a shared host: without --all, gc only looks at dead runs of this (empty) state dir.
    r = _invoke("gc", "--state-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert "nothing to remove" in r.output


def test_every_default_workload_is_registered() -> None:
    from isobench.workloads.base import DEFAULT_WORKLOADS, all_workloads

    assert set(DEFAULT_WORKLOADS) <= set(all_workloads())
    assert len(set(DEFAULT_WORKLOADS)) == len(DEFAULT_WORKLOADS)


def test_summary_shows_bracketed_data_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Names and units are data: rich must not swallow "[b]"-like text as markup."""
    from isobench.model import Sample
    from isobench.results import Results

    samples = [
        Sample(
            run_id="r",
            driver="[b]bold?",
            workload="syscall",
            metric="syscall.read_write.per_call",
            value=v,
            unit="[red]u",
            repetition=i,
        )
        for i, v in enumerate((10.0, 11.0, 12.0))
    ]
    cli.print_summary(Results(run={"run_id": "r"}, samples=samples))
    out = capsys.readouterr().out
    assert "[b]bold?" in out, out
    assert "11 [red]u" in out, out


def test_summary_is_the_headline(capsys: pytest.CaptureFixture[str]) -> None:
    """After a run the terminal shows the headline (questions as rows, drivers as columns), the
    findings and one line per kind of warning: short, human units, no e-notation."""
    import re

    from isobench.model import Sample
    from isobench.results import Results

    def samples(driver: str, metric: str, values: tuple[float, ...], unit: str) -> list[Sample]:
        workload = metric.split(".", maxsplit=1)[0]
        return [
            Sample(
                run_id="r", driver=driver, workload=workload, metric=metric, value=v, unit=unit, repetition=i
            )
            for i, v in enumerate(values)
        ]

    got = (
        samples("host", "startup.to_exit", (1.4e-4, 1.5e-4, 1.6e-4), "seconds")
        + samples("vm", "startup.to_exit", (2.9, 3.0, 3.1), "seconds")
        + samples("vm", "idle-memory.host_view", (2.58e8, 2.59e8, 2.6e8), "bytes")
    )
    run = {"run_id": "r", "drivers": {"vm": {"accel": "tcg"}}}
    cli.print_summary(Results(run=run, samples=got))
    out = capsys.readouterr().out
    assert "what isolation costs" in out
    for text in ("start to first command", "idle memory (host)", "247 MiB", "3.00 s", "TCG figures, not KVM"):
        assert text in out, text
    assert not re.search(r"[0-9]e[+-][0-9]", out)
    assert len(out.splitlines()) < 20


@pytest.mark.integration
def test_explicit_repetitions_beat_a_workloads_cap(tmp_path: Path) -> None:
    """network caps itself at 1 repetition under --quick; `-n 2` asks for two and gets two."""
    import json

    out = tmp_path / "out"
    args = ["run", "--drivers", "host", "--workloads", "network", "--quick", "--no-report"]
    r = _invoke(*args, "-n", "2", "-o", str(out), "--state-dir", str(tmp_path / "s"))
    assert r.exit_code == 0, r.output
    assert "capped" not in r.output
    (run_dir,) = out.iterdir()
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["run"]["config"]["repetition_caps"] == {"network": 2}
    reps = {s["repetition"] for s in doc["samples"] if s["metric"] == "network.tcp_rtt.p50"}
    assert reps == {0, 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "soon"], "budget 'soon' is not a duration"),
        (["--budget", "0m"], "budget must be > 0"),
        (["--precision", "150%"], "precision must be between 0% and 100%"),
        (["--max-n", "2"], "max_n must be >= 3"),
        (["--budget", "5m", "-n", "3"], "a budget and a fixed repetition count exclude each other"),
        (["--ab", "only.toml"], "--ab takes two configurations"),
        (["extra.toml"], "unexpected argument extra.toml"),
        (["--sizes", "huge"], "Invalid value for '--sizes'"),
    ],
)
def test_bad_budget_and_ab_flags(out: Path, tmp_path: Path, args: list[str], message: str) -> None:
    r = _invoke("run", "--drivers", "host", "-o", str(out), "--state-dir", str(tmp_path / "s"), *args)
    _assert_clean_failure(r, out, message)


def test_a_cpuset_the_host_lacks_is_one_error_before_anything_runs(out: Path, tmp_path: Path) -> None:
    import os

    cfg = tmp_path / "isobench.toml"
    cfg.write_text("[sandbox]\ncpuset = [99]\n")
    r = _invoke(
        "run", "--config", str(cfg), "--drivers", "host", "-o", str(out), "--state-dir", str(tmp_path / "s")
    )
    _assert_clean_failure(r, out, "sandbox.cpuset names CPU 99, which this host does not offer")
    assert r.output.count("\n") == 1
    assert str(min(os.sched_getaffinity(0))) in r.output  # says which CPUs there are


def test_ab_files_are_checked_like_the_config(out: Path, tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text("[drivers.container]\nhardening = true\n")
    b = tmp_path / "b.toml"
    b.write_text("[run]\nrepetitions = 3\n")
    base = ["run", "--drivers", "host", "-o", str(out), "--state-dir", str(tmp_path / "s")]
    _assert_clean_failure(_invoke(*base, "--ab", str(a), str(b)), out, "unknown table(s) run")
    b.write_text("[sandbox]\ncpuset = [99]\n")
    _assert_clean_failure(_invoke(*base, "--ab", str(a), str(b)), out, "--ab b: sandbox.cpuset names CPU 99")
    b.write_text("[drivers.container]\nhardening = 'no'\n")
    _assert_clean_failure(_invoke(*base, "--ab", f"X={a}", "--ab", f"X={b}"), out, "both --ab configurations")
    _assert_clean_failure(_invoke(*base, "--ab", str(a), str(b)), out, "option hardening must be bool")


def test_ab_labels_come_from_stems_or_names() -> None:
    assert launch.parse_ab(["x/seccomp-on.toml", "x/off.toml"]) == [
        ("seccomp-on", Path("x/seccomp-on.toml")),
        ("off", Path("x/off.toml")),
    ]
    assert launch.parse_ab(["A=a.toml", "B=b.toml"]) == [("A", Path("a.toml")), ("B", Path("b.toml"))]


def test_the_banner_states_the_budget_and_the_plan() -> None:
    from isobench.config import RunConfig
    from isobench.workloads.base import all_workloads

    ws = {w: all_workloads()[w]() for w in ("startup", "disk", "leakage")}
    config = launch.resolve(RunConfig(), {}, quick=False)
    assert config.budget == 20 * 60 and config.warmups == 0
    text = "\n".join(launch.describe_plan(config, ["host", "vm"], ws))
    assert "budget 20m00s for the matrix" in text
    assert (
        "(the default budget lets this first pass run to 40m00s on a slow host; a --budget you give is a hard cap)"
        in text
    )
    given = launch.resolve(RunConfig(), {"budget": 1200.0}, quick=False)
    assert "lets this first pass run" not in "\n".join(launch.describe_plan(given, ["host"], ws))
    assert "3x (disk 1, leakage 1), after one unrecorded cell per driver of startup" in text
    explicit = launch.resolve(RunConfig(), {"warmups": 0}, quick=False)
    assert "unrecorded" not in "\n".join(launch.describe_plan(explicit, ["host"], ws))
    assert "above 5% of the median" in text
    assert "counted: startup, disk" in text
    assert "every workload at its quick sizes" in text
    assert "extra rounds, up to 100, " in text
    ab = "\n".join(launch.describe_plan(config, ["host"], ws, variants=["A", "B"]))
    assert (
        "up to 400, for the cells whose 95% interval of each change B/A (paired by round) is wider than +-5%"
        in ab
    )
    fixed = launch.resolve(RunConfig(), {"repetitions": 4}, quick=False)
    assert fixed.budget is None and fixed.warmups == 1
    assert launch.describe_plan(fixed, ["host"], ws)[1] == "4 repetition(s) + 1 warm-up round(s)"


def test_a_driver_probe_under_the_run_work_dir_does_not_block_the_run(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drivers probe the host when selected (qemu boots a microvm probe guest under its work dir):
    the run must already own its state then, or its own lock refuses it ("already has state")."""
    from isobench.drivers.host import HostDriver

    class _Prober(HostDriver):
        def __init__(self, ctx: DriverContext) -> None:
            super().__init__(ctx)
            self._work = ctx.work_dir

        def availability(self) -> Availability:
            self._work.mkdir(parents=True)
            (self._work / "probe.log").write_text("probe guest was here\n")
            return Availability(ok=True)

    monkeypatch.setattr(launch, "all_drivers", lambda: {"host": _Prober})
    state = tmp_path / "s"
    r = _invoke(
        "run",
        "--drivers",
        "host",
        "--workloads",
        "startup",
        "-n",
        "1",
        "--no-report",
        "-o",
        str(out),
        "--state-dir",
        str(state),
    )
    assert r.exit_code == 0, r.output
    assert len(list(out.iterdir())) == 1
    assert list((state / "runs").iterdir()) == []


@pytest.mark.parametrize("interrupted_create", [1, 2])
def test_ctrl_c_says_where_the_measured_part_is(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_create: int
) -> None:
    """Interrupted at a start: exit 130, the finished cells kept and the way to read them said."""
    from isobench.drivers.base import SandboxSpec
    from isobench.drivers.host import HostDriver

    class _CtrlCAtCreate(HostDriver):
        creates = 0

        def create(self, spec: SandboxSpec) -> Any:
            type(self).creates += 1
            if type(self).creates == interrupted_create:
                raise KeyboardInterrupt
            return super().create(spec)

    monkeypatch.setattr(launch, "all_drivers", lambda: {"host": _CtrlCAtCreate})
    args = ["run", "--drivers", "host", "--workloads", "startup", "-n", "3", "--warmups", "0"]
    r = CliRunner().invoke(
        cli.main, [*args, "--no-report", "-o", str(out), "--state-dir", str(tmp_path / "s")]
    )
    assert r.exit_code == 130, r.output
    assert "interrupted; everything this run created was torn down" in r.output
    (run_dir,) = out.iterdir()
    results = load_results(run_dir)
    assert results.run["status"] == "interrupted"
    if interrupted_create == 1:
        assert results.samples == []
        assert f"nothing was measured yet; the run's record is in {run_dir}\n" in r.output
    else:
        assert {s.repetition for s in results.samples} == {0}
        said = f"is kept in {run_dir}; `isobench report {run_dir}` renders it\n"
        assert said in r.output


def test_ctrl_c_before_the_journal_starts_leaves_no_run_directory(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted while the run describes the host (before its journal exists): nothing is left."""

    def _ctrl_c(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "run_info", _ctrl_c)
    args = ["run", "--drivers", "host", "--workloads", "startup", "-n", "1", "--no-report"]
    r = CliRunner().invoke(cli.main, [*args, "-o", str(out), "--state-dir", str(tmp_path / "s")])
    assert r.exit_code == 130, r.output
    assert "interrupted; everything this run created was torn down" in r.output
    assert list(out.iterdir()) == []


def test_a_run_beside_another_live_run_warns_at_once(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from isobench.hostsys.probe import HostProbe

    monkeypatch.setattr(HostProbe, "other_runs", lambda self: ["r-other"])
    args = ["run", "--drivers", "host", "--workloads", "startup", "-n", "1", "--no-report"]
    r = CliRunner().invoke(cli.main, [*args, "-o", str(out), "--state-dir", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "warning: another isobench run is measuring on this host (r-other)" in r.output
    (run_dir,) = out.iterdir()
    results = load_results(run_dir)
    assert results.run["concurrent_runs"] == {"r-other": 2}  # the warm-up cell and the measured one
    assert all(s.metadata["concurrent_runs"] == ["r-other"] for s in results.samples)


def test_an_ab_run_prints_what_b_changed_and_which_configuration_the_headline_shows(
    out: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[sandbox]\nmemory_mib = 512\n")
    b.write_text("[sandbox]\nmemory_mib = 768\n")
    r = _invoke(
        "run", "--drivers", "host", "--workloads", "startup", "-n", "3", "--warmups", "0", "--no-report",
        "--ab", f"A={a}", "--ab", f"B={b}", "-o", str(out), "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "A/B: B against A: " in r.output and "figures compared (unit: round)" in r.output
    (run_dir,) = out.iterdir()
    assert (
        f"the headline above shows A; gate on the change with `isobench compare {run_dir} --ab A,B"
        in r.output
    )


def test_a_budgeted_runs_end_says_how_the_budget_went_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The precision warning and the budget digest both open with the figures at target and how
    long the first pass took; after a run the digest stands in for the warning (the 2026-12-03
    default run printed the first-pass sentence twice, a line apart)."""
    from isobench.model import Sample
    from isobench.results import Results

    samples = [
        Sample(
            run_id="r",
            driver=d,
            workload="cpu",
            metric="cpu.events_per_second",
            value=v,
            unit="ops/s",
            repetition=i,
        )
        for d in ("host", "container")
        for i, v in enumerate((1000.0, 1300.0, 900.0))
    ]
    unit = {
        "driver": "container",
        "workload": "cpu",
        "variant": None,
        "n": 3,
        "status": "below target",
        "figures": [
            {
                "metric": "cpu.events_per_second",
                "variant": "",
                "n": 3,
                "median": 1000.0,
                "half_width": 0.3,
                "met": False,
            }
        ],
    }
    budget = {
        "seconds": 1200.0,
        "spent": 1239.0,
        "precision": 0.05,
        "stopped": "budget spent",
        "figures_counted": 2,
        "figures_met": 0,
        "cells_skipped": 0,
        "first_pass_s": 1239.0,
        "first_pass_grace_s": 1200.0,
        "units": [unit, unit | {"driver": "host"}],
    }
    results = Results(run={"run_id": "r", "budget": budget}, samples=samples)
    first_pass = "the first pass (every cell at its minimum n) took 20:39"

    cli.print_summary(results)
    alone = capsys.readouterr().out
    assert "2 of 2 counted figures did not reach the precision target" in alone
    assert alone.lower().count(first_pass) == 1 and "budget: spent" not in alone

    cli.print_summary(results, budget=True)
    end = capsys.readouterr().out
    assert "budget: spent 20:39 of 20:00 (budget spent); 0 of 2 counted figures" in end
    assert "did not reach the precision target" not in end
    assert end.lower().count(first_pass) == 1, end
