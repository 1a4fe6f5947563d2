"""What `isobench run --cluster` refuses before it contacts anything, and the worker command's help."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from isobench import cli


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--drivers", "host"], "--cluster runs a fixed number of repetitions"),
        (["--drivers", "host", "--budget", "5m"], "give -n N or --quick"),
        (["--drivers", "host", "--quick", "--ab", "a.toml", "b.toml"], None),
    ],
)
def test_a_fleet_run_needs_a_fixed_count(tmp_path: Path, args: list[str], says: str | None) -> None:
    if says is None:  # A/B files must exist to get as far as the fleet check
        for name in ("a.toml", "b.toml"):
            (tmp_path / name).write_text("[sandbox]\nvcpus = 1\n")
        args = [a if not a.endswith(".toml") else str(tmp_path / a) for a in args]
        says = "does not run A/B"
    r = CliRunner().invoke(cli.main, ["run", "--cluster", "local:2", "-o", str(tmp_path / "o"), *args])
    assert r.exit_code == 2
    assert says in r.output and r.output.startswith("isobench: error:")


def test_local_n_out_of_range_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli.main, ["run", "--cluster", "local:0", "--quick", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "N of local:N must be 1 to 8" in r.output


def test_the_worker_command_is_there() -> None:
    r = CliRunner().invoke(cli.main, ["worker", "--help"])
    assert r.exit_code == 0 and "--scheduler" in r.output and "--drivers" in r.output


def test_the_worker_says_why_it_offers_less(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isobench.cluster import probe, worker
    from isobench.doctor import Check

    checks = [
        Check("driver host", "ok", "native"),
        Check("driver vm", "ok", "libvirt guests"),
        Check("driver docker", "fail", "dockerd is not installed"),
        Check("KVM", "warn", "not usable: kvm-pvm; guests (vm) use accel=tcg (software emulation)"),
    ]
    monkeypatch.setattr("isobench.doctor.driver_checks", lambda state_dir, only=None: checks)
    monkeypatch.setattr(worker, "serve", lambda *a, **k: None)
    assert probe.probe_resources(tmp_path)[1] == checks[2:]
    args = ["worker", "--scheduler", "tcp://127.0.0.1:1", "--state-dir", str(tmp_path), "--name", "n1"]
    r = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "warning: driver docker: dockerd is not installed" in said
    assert "warning: KVM: not usable: kvm-pvm; guests (vm) use accel=tcg" in said
    assert "isobench worker n1: driver-host=1 driver-vm=1 isobench-host=1" in said
