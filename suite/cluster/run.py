"""``isobench run --cluster``: the same matrix on every host of a Dask cluster, one results directory.

A fleet run has a fixed repetition count (``-n N`` or ``--quick``): a budget is decided while
running from one host's costs, which a fleet of different hosts does not share.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isobench.config import RunConfig
from isobench.drivers.base import all_drivers
from isobench.drivers.capabilities import DriverKind
from isobench.errors import UsageError
from isobench.results import Journal, Results, finalize
from isobench.runner import Progress, config_caps
from isobench.schedule import ORDER_DESIGN
from isobench.workloads.base import Workload

from .client import FleetOutcome, drive, fleet_header
from .fleet import DaskFleet, Fleet
from .local import LocalFleet, local_cluster, parse_local
from .plan import FleetPlan

log = logging.getLogger(__name__)

__all__ = ["Connection", "FleetRun", "check_fleet_config", "connect", "run_fleet"]


def check_fleet_config(config: RunConfig, ab: bool) -> None:
    if config.budget is not None:
        raise UsageError(
            "--cluster runs a fixed number of repetitions on every host: give -n N or --quick "
            "(a budget is decided from one host's cell costs)"
        )
    if ab:
        raise UsageError("--cluster does not run A/B configurations (--ab) yet; run them on one host")


@dataclass(frozen=True)
class Connection:
    address: str
    fleet: Fleet
    #: Cells running at once over the fleet: 1 when every worker is on this machine (local:N).
    max_inflight: int | None = None
    #: The scheduler and worker processes started here for local:N.
    local: LocalFleet | None = None


@contextlib.contextmanager
def connect(spec: str, state_dir: Path, drivers: Sequence[str] | None = None) -> Iterator[Connection]:
    """The fleet ``spec`` names: a scheduler address, or ``local:N`` started here for the run (its
    workers probe only ``drivers``, when given)."""
    n = parse_local(spec)
    with contextlib.ExitStack() as stack:
        local = None if n is None else stack.enter_context(local_cluster(n, state_dir, drivers))
        address = spec if local is None else local.address
        fleet = DaskFleet(address)
        stack.callback(fleet.close)
        yield Connection(address, fleet, None if local is None else 1, local)


@dataclass
class FleetRun:
    results: Results
    outcome: FleetOutcome
    hosts: dict[str, list[str]]


def run_fleet(
    fleet: Fleet,
    address: str,
    config: RunConfig,
    workloads: Mapping[str, Workload],
    *,
    run_id: str,
    run_dir: Path,
    run_info: Mapping[str, Any],
    progress: Progress,
    max_inflight: int | None = None,
) -> FleetRun:
    known = all_drivers()
    drivers: Sequence[str] = config.drivers if config.drivers is not None else tuple(known)
    hosts = fleet.hosts()
    if not hosts:
        raise UsageError(
            f"no isobench worker is connected to {address}; start one per host with "
            f"`isobench worker --scheduler {address}`"
        )
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    plan = FleetPlan(
        hosts,
        drivers,
        list(workloads),
        repetitions=config.repetitions,
        warmups=config.warmups,
        caps=config_caps(config, workloads),
        seed=seed,
        guests=[n for n, cls in known.items() if cls.capabilities.kind is DriverKind.VM],
    )
    ran = {h: plan.drivers_of(h) for h in plan.hosts}
    if not any(ran.values()):
        raise UsageError(
            f"no host of {address} can run any of {', '.join(drivers)}; run `isobench doctor` on the hosts"
        )
    header = fleet_header(run_info, address, fleet.facts(), plan, ORDER_DESIGN, seed)
    journal = Journal(run_dir, header)
    status = "complete"
    outcome = FleetOutcome()
    try:
        outcome = drive(
            fleet,
            plan,
            run_id=run_id,
            config=config,
            drivers=tuple(drivers),
            workloads=tuple(workloads),
            journal=journal,
            progress=progress,
            max_inflight=max_inflight,
        )
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        journal.close(status, teardown_errors=outcome.teardown_errors, **outcome.run_record())
        results = finalize(run_dir)
    return FleetRun(results, outcome, ran)
