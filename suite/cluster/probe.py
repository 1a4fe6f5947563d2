"""A host's identity and what it can do, as Dask worker resources.

``isobench worker`` runs ``isobench doctor``'s checks once before it joins the scheduler: every
driver the doctor finds available becomes a ``driver-<name>`` resource, a working KVM becomes
``kvm``, and one ``isobench-host`` slot makes the host run one cell at a time.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from isobench.doctor import Check

from .plan import HOST_SLOT, KVM, driver_resource

__all__ = ["host_identity", "probe_resources", "resources_from_checks", "resources_text"]


def host_identity(local_index: int | None = None) -> str:
    """The name a host's samples carry. On one machine, ``local:N`` workers are told apart by their
    index (``local-0@node1``): each has its own state dir and baseline, but they share the CPUs."""
    name = socket.gethostname() or "localhost"
    return name if local_index is None else f"local-{local_index}@{name}"


def resources_from_checks(checks: Iterable[Check]) -> dict[str, float]:
    """The doctor's findings as worker resources (an unavailable driver offers nothing)."""
    resources = {HOST_SLOT: 1.0}
    for check in checks:
        if check.name.startswith("driver ") and check.status == "ok":
            resources[driver_resource(check.name.removeprefix("driver "))] = 1.0
        elif check.name == "KVM" and check.status == "ok":
            resources[KVM] = 1.0
    return resources


def probe_resources(
    state_dir: Path, drivers: Collection[str] | None = None
) -> tuple[dict[str, float], list[Check]]:
    """Probe every driver (or only ``drivers``: a guest driver's probe boots a guest): the resources
    this host offers, and the doctor's warnings and failures (why it offers less), for its banner."""
    from isobench.doctor import driver_checks

    checks = driver_checks(state_dir, only=drivers)
    return resources_from_checks(checks), [c for c in checks if c.status in ("warn", "fail")]


def resources_text(resources: Mapping[str, float]) -> str:
    """``isobench-host=1 driver-host=1 ...``, for the worker's banner and logs."""
    return " ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
