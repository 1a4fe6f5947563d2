"""Shared fixtures for the leakage tests: recorded readings from this kind of host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


@pytest.fixture
def static_host() -> dict[str, Any]:
    """Static probe readings recorded through the host driver (`sh -c` of the real probe script)."""
    return load("static_host.json")


@pytest.fixture
def recorded() -> Any:
    """Loader of a recording in tests/leakage/data (importlib mode: tests cannot import conftest)."""
    return load


def host_leftovers(run_id: str) -> list[str]:
    """Canaries and scratch of ``run_id`` still on the host: dirs, mounts, links, processes."""
    from isobench.leakage.host import canary_token

    token = canary_token(run_id)
    found = [str(p) for p in Path("/tmp").glob(f"isobench-{run_id}-canary-*")]
    found += [str(p) for p in Path("/var/tmp").glob(f"isobench-{run_id}-leak-*")]
    found += [ln for ln in Path("/proc/mounts").read_text().splitlines() if token in ln]
    if (Path("/sys/class/net") / token).exists():
        found.append(f"link {token}")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() == token:
                found.append(f"process {proc.name}")
        except OSError:
            pass
    return found


@pytest.fixture
def leftovers() -> Any:
    return host_leftovers
