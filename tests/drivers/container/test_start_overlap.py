"""The own runtime makes what the host must hold (record, cgroup) while its helper starts and clones:
the order of the phases, and every way the overlap can fail, leave nothing behind.

Root only (CI runs as root); each test is well under a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from isobench.drivers.base import SandboxSpec
from isobench.drivers.container import ContainerDriver
from isobench.errors import SandboxError

pytestmark = pytest.mark.integration

SpecFactory = Callable[..., SandboxSpec]
Leftovers = Callable[[], list[str]]


def test_a_cold_runs_cgroup_is_made_while_the_helper_starts_and_before_its_child_joins(
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers
) -> None:
    run = driver.run_cold(make_spec("overlap"), ["sh", "-c", "cat /proc/self/cgroup"])
    assert run.result.exit_code == 0
    phases = {p.name: p for p in run.phases}
    spawn, cgroup, wait, join = (
        phases["spawn"],
        phases["cgroup"],
        phases["cgroup_wait"],
        phases["cgroup_join"],
    )
    record = phases["overlay_dirs"]  # the record (an in-memory upper makes no directory)
    assert spawn.start_ns <= record.start_ns <= record.end_ns <= cgroup.start_ns  # after the spawn ...
    assert cgroup.end_ns <= wait.end_ns <= join.start_ns  # ... and the child joined only after both
    # the command ran in its own cgroup (the cgroup namespace root is that cgroup: "/" in every hierarchy)
    lines = [line for line in run.result.stdout.splitlines() if ":memory:" in line or line.startswith("0::")]
    assert lines and all(line.endswith(":/") for line in lines), run.result.stdout
    assert leftovers() == []


def test_a_cold_run_whose_cgroup_cannot_be_made_stops_its_helper_and_leaves_nothing(
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = driver.cgroups()

    def refuse(name: str, limits: object) -> object:
        raise SandboxError(f"cgroup {name} refused (test)")

    monkeypatch.setattr(manager, "create", refuse)
    t0 = time.monotonic()
    with pytest.raises(SandboxError, match="refused"):
        driver.run_cold(make_spec("nocg"), ["sleep", "30"])
    assert time.monotonic() - t0 < 10  # the helper stopped at once, not at the command's end
    assert leftovers() == []
    helpers = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and driver._ctx.run_id.encode() in _cmdline(int(pid))
    ]
    assert helpers == []


def test_a_sandboxs_cgroup_is_made_while_its_helper_starts_and_a_refused_one_leaves_nothing(
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = driver.create(make_spec("sbover"))
    try:
        phases = {p.name: p for p in sb.phases}
        assert phases["spawn"].start_ns <= phases["cgroup"].start_ns
        assert phases["cgroup"].end_ns <= phases["cgroup_wait"].end_ns <= phases["cgroup_join"].start_ns
        assert sb.exec(["true"], timeout=10).ok
    finally:
        sb.destroy()
    assert leftovers() == []

    def refuse(name: str, limits: object) -> object:
        raise SandboxError(f"cgroup {name} refused (test)")

    monkeypatch.setattr(driver.cgroups(), "create", refuse)
    with pytest.raises(SandboxError, match="refused"):
        driver.create(make_spec("sbnocg"))
    assert leftovers() == []
    assert [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and driver._ctx.run_id.encode() in _cmdline(int(pid))
    ] == []


def test_a_cold_run_whose_names_another_runner_claimed_meanwhile_tries_new_ones(
    driver: ContainerDriver, make_spec: SpecFactory, leftovers: Leftovers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The record is claimed while the helper starts; losing the names to another runner process
    # stops that helper (its child never ran) and the run starts again under new names.
    claim = driver._claims.claim_names
    tried: list[str] = []

    def first_taken(names, config, *, make_dir):  # type: ignore[no-untyped-def]
        tried.append(names.ident)
        return None if len(tried) == 1 else claim(names, config, make_dir=make_dir)

    monkeypatch.setattr(driver._claims, "claim_names", first_taken)
    run = driver.run_cold(make_spec("taken"), ["sh", "-c", "echo ran"])
    assert run.result.exit_code == 0 and run.result.stdout == "ran\n"  # once: the first child never ran
    assert len(tried) == 2 and tried[0] != tried[1]
    assert leftovers() == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
