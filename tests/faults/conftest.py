"""Fault injection: real runs killed, starved or churned, then ``isobench gc`` of their own state dir.

Every test here uses a private state dir (``ISOBENCH_FAULTS_STATE``, default
/var/lib/isobench-faults, whose ``images`` points at the suite's built image) so its runs, their
gc and the leftover check never touch another run on this host; ``gc --all`` is never run.
``ISOBENCH_FAULTS_FULL=1`` runs the full sizes (1000 container and 100 guest cycles) instead of the
CI sizes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: leftovers.py is a plain module here

from faultrun import gc_state
from leftovers import Scope, leftovers, run_ids_in

IMAGES = Path(os.environ.get("ISOBENCH_STATE_DIR", "/var/lib/isobench")) / "images"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            for mark in ("faults", "slow", "integration"):
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(scope="session")
def faults_state() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the fault suite needs root (it runs every driver for real)")
    state = Path(os.environ.get("ISOBENCH_FAULTS_STATE", "/var/lib/isobench-faults"))
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)  # libvirt's qemu user traverses it to reach the guests' overlays
    link = state / "images"
    if not link.exists():
        link.symlink_to(IMAGES)
    return state


@pytest.fixture
def output(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    out.mkdir()
    return out


#: ``check(run_ids, docker_slots=None)``: the leftovers of those runs (see leftovers.Scope).
CheckClean = Callable[..., list[str]]


@pytest.fixture
def check_clean(faults_state: Path, output: Path) -> Iterator[CheckClean]:
    """The leftovers of the given runs (and, at the end of the test, of every run it made: a
    failing test gc's its own runs so the next one starts clean). ``docker_slots``: the slots the
    runs' daemon records named before gc (:func:`leftovers.docker_slots_of`)."""
    seen: set[str] = set()

    def check(run_ids: set[str], docker_slots: frozenset[int] | None = None) -> list[str]:
        seen.update(run_ids)
        return leftovers(Scope(faults_state, frozenset(run_ids), docker_slots=docker_slots))

    yield check
    seen |= run_ids_in(faults_state, output)
    if leftovers(Scope(faults_state, frozenset(seen))):
        gc_state(faults_state)
