"""Everything ``isobench run`` checks and decides before the first cell, without a terminal.

The CLI (the only module with rich) calls these: they turn flags, the config file and any A/B
files into one validated configuration, pick the drivers and workloads, and describe the plan for
the banner. Every refusal is a UsageError (one line, exit 2), raised before anything runs.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from isobench import hostinfo
from isobench.budget import FIRST_N, budget_limits
from isobench.config import RunConfig, load_variant
from isobench.drivers.base import Availability, Driver, all_drivers, check_driver_options
from isobench.errors import IsobenchError, UsageError
from isobench.reports.units import plural
from isobench.runner import config_caps, driver_context, first_use_workloads, quick_sized
from isobench.workloads.base import DEFAULT_WORKLOADS, Workload, all_workloads, check_params

__all__ = [
    "check_output_dir",
    "check_sandbox_cpus",
    "describe_plan",
    "load_ab",
    "parse_ab",
    "run_info",
    "select_drivers",
    "select_workloads",
    "split_names",
]

_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


def split_names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise UsageError("an empty list of names was given")
    return names


def check_output_dir(path: Path) -> None:
    """Fail before anything runs, rather than after an hour of measuring."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".isobench-write-test-"):
            pass
    except FileExistsError:
        raise UsageError(f"output directory {path} is a file; name a directory") from None
    except OSError as err:
        raise UsageError(f"output directory {path} is not writable: {err.strerror or err}") from None


def _cpu_list(cpus: Sequence[int]) -> str:
    """``0-3,6`` for {0, 1, 2, 3, 6}."""
    runs: list[list[int]] = []
    for c in sorted(set(cpus)):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def check_sandbox_cpus(
    config: RunConfig, usable: Collection[int] | None = None, where: str = "sandbox"
) -> None:
    """The sandbox's CPUs against those this process may use (``usable``; default its affinity),
    before the run: a cpuset naming CPUs it may not use would be silently ignored by some drivers
    and fail deep inside others; more vCPUs than the CPUs a sandbox may run on (its cpuset, else
    the run's) have its threads take turns on them, so its figures would measure that overcommit,
    not the isolation. A fleet's hosts check their own (``cluster.worker``)."""
    allowed = set(usable if usable is not None else os.sched_getaffinity(0))
    if missing := sorted(set(config.cpuset or ()) - allowed):
        raise UsageError(
            f"{where}.cpuset names CPU {_cpu_list(missing)}, which this host does not offer "
            f"(CPUs usable here: {_cpu_list(sorted(allowed))})"
        )
    cpus = sorted(config.cpuset or allowed)
    if config.vcpus > len(cpus):
        whose = "its cpuset names" if config.cpuset else "this run may use"
        raise UsageError(
            f"{where}.vcpus = {config.vcpus} is more than the {plural(len(cpus), 'CPU')} {whose} "
            f"({_cpu_list(cpus)}): its vCPUs would take turns on them, so its figures would measure "
            f"overcommit, not isolation; set at most {len(cpus)}"
        )


def parse_ab(values: Sequence[str]) -> list[tuple[str, Path]]:
    """``[LABEL=]FILE`` values of ``--ab``: the label defaults to the file's stem."""
    if len(values) != 2:
        raise UsageError(
            f"--ab takes two configurations (`--ab A.toml B.toml` or `--ab A=a.toml --ab B=b.toml`), "
            f"got {len(values)}"
        )
    pairs: list[tuple[str, Path]] = []
    for v in values:
        label, sep, file = v.partition("=")
        path = Path(file if sep else v)
        label = label if sep else path.stem
        if not _LABEL.match(label):
            raise UsageError(f"--ab label {label!r} must be letters, digits, '.', '_', '+' or '-'")
        pairs.append((label, path))
    if pairs[0][0] == pairs[1][0]:
        raise UsageError(
            f"both --ab configurations are labelled {pairs[0][0]!r}; name them: --ab A=... --ab B=..."
        )
    return pairs


def load_ab(pairs: Sequence[tuple[str, Path]], base: RunConfig) -> dict[str, RunConfig]:
    variants = {label: load_variant(path, base) for label, path in pairs}
    for label, cfg in variants.items():
        check_params(cfg.workload_params, quick=cfg.quick)
        check_driver_options(cfg.driver_options)
        check_sandbox_cpus(cfg, where=f"--ab {label}: sandbox")
    return variants


def select_drivers(config: RunConfig, run_id: str) -> tuple[dict[str, Driver], dict[str, Availability]]:
    known = all_drivers()
    if config.drivers is not None:
        unknown = [d for d in config.drivers if d not in known]
        if unknown:
            raise UsageError(f"unknown driver(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if len(set(config.drivers)) != len(config.drivers):
            raise UsageError("a driver is named twice in --drivers")
    names = config.drivers if config.drivers is not None else tuple(known)
    chosen: dict[str, Driver] = {}
    skipped: dict[str, Availability] = {}
    for name in names:
        driver = known[name](driver_context(config, run_id, name))
        avail = driver.availability()
        if avail.ok:
            chosen[name] = driver
        elif config.drivers is not None:
            raise UsageError(f"driver {name} is unavailable on this host: {avail.reason}")
        else:
            skipped[name] = avail
    if not chosen:
        raise UsageError("no driver is available on this host; run `isobench doctor`")
    return chosen, skipped


def select_workloads(config: RunConfig) -> dict[str, Workload]:
    known = all_workloads()
    names = config.workloads if config.workloads is not None else DEFAULT_WORKLOADS
    unknown = [w for w in names if w not in known]
    if unknown:
        raise UsageError(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not names:
        raise UsageError("no workloads selected")
    return {w: known[w]() for w in names}


def resolve(config: RunConfig, overrides: Mapping[str, Any], *, quick: bool) -> RunConfig:
    """The config file's settings, the flags on top, then the run mode (budgeted by default)."""
    from dataclasses import replace

    try:
        explicit = "repetitions" in overrides
        config = replace(config, **overrides)
        if quick or config.quick:
            config = config.quickened()
            if explicit:
                config = replace(config, repetitions=overrides["repetitions"])
        if explicit:
            config = replace(config, repetitions_explicit=True)
        if "warmups" in overrides:
            config = replace(config, warmups=overrides["warmups"], warmups_explicit=True)
        return config.with_default_budget()
    except IsobenchError as err:
        raise UsageError(str(err)) from None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def describe_plan(
    config: RunConfig,
    drivers: Sequence[str],
    workloads: Mapping[str, Workload],
    variants: Sequence[str] = (),
) -> list[str]:
    """The banner's lines: what runs, how many times, and in what mode."""
    what = f"drivers {', '.join(drivers)}; workloads {', '.join(workloads)}"
    if variants:
        what += f"; A/B: {' vs '.join(variants)}, interleaved in every round"
    lines = [what]
    warm = f" + {config.warmups} warm-up round(s)" if config.warmups else ""
    if config.budget is None:
        lines.append(f"{config.repetitions} repetition(s){warm}")
        capped = {k: v for k, v in config_caps(config, workloads).items() if v < config.repetitions}
        if capped:
            lines.append(
                "capped (these aggregate within a cell; -n N overrides): "
                + ", ".join(f"{k} {v}" for k, v in capped.items())
            )
        return lines
    limits = budget_limits(workloads, config.cap(ab=bool(variants)))
    fewer = ", ".join(f"{w} {lo}" for w, (lo, _) in limits.items() if lo != FIRST_N)
    counted = [w for w, wl in workloads.items() if getattr(wl, "precision_figures", ())]
    target = (
        f"95% interval of each change {' and '.join(f'{v}/{variants[0]}' for v in variants[1:])} "
        f"(paired by round) is wider than +-{config.precision:.0%}"
        if variants
        else f"figures' 95% CI half-width is above {config.precision:.0%} of the median"
    )
    primed = first_use_workloads(config, workloads)
    if primed:
        warm = f", after one unrecorded cell per driver of {', '.join(primed)}"
    first = f"first every cell {FIRST_N}x{f' ({fewer})' if fewer else ''}{warm}"
    if config.first_pass_grace > 0:
        first += (
            f" (the default budget lets this first pass run to {_duration(config.budget + config.first_pass_grace)}"
            " on a slow host; a --budget you give is a hard cap)"
        )
    lines.append(
        f"budget {_duration(config.budget)} for the matrix: {first}; then extra rounds, up to "
        f"{config.cap(ab=bool(variants))}, for the cells whose {target} (counted: "
        f"{', '.join(counted) or 'none'}), never starting a cell that cannot finish in time"
    )
    if quick_sized(config) and not config.quick:
        lines.append("every workload at its quick sizes (--sizes full for full sizes)")
    return lines


def run_info(
    config: RunConfig,
    run_id: str,
    argv: Sequence[str],
    drivers: Sequence[str],
    workloads: Mapping[str, Workload],
    skipped: Mapping[str, Availability],
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "started": time.time(),
        "argv": list(argv),
        "config": {
            "drivers": list(drivers),
            "workloads": list(workloads),
            "repetitions": config.repetitions if config.budget is None else None,
            "repetition_caps": config_caps(config, workloads) if config.budget is None else {},
            "budget": config.budget,
            "precision": config.precision if config.budget is not None else None,
            "sizes": "quick" if quick_sized(config) else "full",
            "warmups": config.warmups,
            "timeout": config.timeout,
            "quick": config.quick,
            "vcpus": config.vcpus,
            "memory_mib": config.memory_mib,
            "cpuset": config.cpuset,
            "driver_options": config.driver_options,
            "workload_params": config.workload_params,
        },
        "skipped_drivers": {k: v.reason for k, v in skipped.items()},
        "host": hostinfo.collect(),
    }
