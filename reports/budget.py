"""What a budgeted run's record (``run["budget"]``, :mod:`isobench.budget`) says, in words: how the
budget went, the cells that missed the target, and, for a terminal, a digest of them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from isobench.budget import JUDGED_N, mmss

from .units import plural

__all__ = ["FIRST_PASS_MOST", "budget_digest", "budget_summary", "first_pass_note", "missed_targets"]

#: Reports say how long the first pass took once it took at least this share of the budget: then
#: the extra rounds had too little time to bring many figures to the target.
FIRST_PASS_MOST = 0.5


def _worst(figures: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(
        (f for f in figures if not f["met"]),
        key=lambda f: f["half_width"] if f["half_width"] is not None else math.inf,
        default=None,
    )


def _worst_detail(worst: Mapping[str, Any] | None) -> str:
    if worst is None:
        return ""
    if worst["half_width"] is None:
        return f": {worst['metric']} not judged"
    return f": worst {worst['metric']} ±{worst['half_width']:.1%}"


def _driver_of(unit: Mapping[str, Any]) -> str:
    """A budget unit's driver, with its A/B variant where it has one (``vm [B]``)."""
    return str(unit["driver"]) + (f" [{unit['variant']}]" if unit["variant"] else "")


def budget_summary(run: Mapping[str, Any]) -> list[str]:
    """How a budgeted run's budget went, then one line per unit whose figures missed the target (in
    an A/B run: per driver, workload and configuration whose changes did)."""
    b = run.get("budget")
    if not b:
        return []
    lines = [
        f"budget: spent {mmss(b['spent'])} of {mmss(b['seconds'])} ({b['stopped']}); "
        f"{b['figures_met']} of {b['figures_counted']} counted figures have a 95% CI half-width "
        f"<= {b['precision']:.0%} of the median; {plural(int(b['cells_skipped']), 'cell')} not started for lack of time"
    ]
    changes = b.get("changes")
    if changes is not None:
        # What the gate of an A/B run tests, and what its extra rounds were spent on.
        lines.append(
            f"A/B: {sum(c['met'] for c in changes)} of {len(changes)} changes known to ±{b['precision']:.0%} "
            "(95% interval of the change, paired by round)"
        )
        groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
        for c in changes:
            groups.setdefault((c["workload"], c["driver"], c["label"], c["against"]), []).append(c)
        for (workload, driver, label, against), cs in groups.items():
            worst = _worst(cs)
            if worst is not None:
                n = min(c["n"] for c in cs)
                lines.append(f"  {workload} on {driver}, {label}/{against}: n={n}{_worst_detail(worst)}")
        return lines
    for u in b["units"]:
        if u["status"] in ("met", "no counted figures"):
            continue
        where = f"{u['workload']} on {_driver_of(u)}"
        lines.append(f"  {where}: {u['status']}, n={u['n']}{_worst_detail(_worst(u['figures']))}")
    return lines


def first_pass_note(budget: Mapping[str, Any]) -> str | None:
    """How much of the budget the first pass (every unit at its minimum n) took and so how much was
    left for the extra rounds that buy precision, when the first pass took most of it (None
    otherwise, and for a run that did not record it: results schema < 11). A default run on a
    loaded 2-core TCG host spends ~98% of its 20 minutes there, which is why nearly every figure
    misses the target: no repetition count, nor the order, can help; only time or a narrower run."""
    first, seconds = budget.get("first_pass_s"), budget.get("seconds")
    if not isinstance(first, int | float) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    if first < FIRST_PASS_MOST * seconds:
        return None
    left = float(seconds) - float(first)
    took = f"took {mmss(first)} of the {mmss(seconds)} budget"
    grace = budget.get("first_pass_grace_s")  # schema 14: the default budget's overrun
    if round(left) < 0 and isinstance(grace, int | float) and grace > 0:
        took = (
            f"took {mmss(first)}, past the {mmss(seconds)} default budget, which lets it run to "
            f"{mmss(seconds + grace)}"
        )
    elif round(left) < 0:  # a workload's first cell has no cost to predict it by, so it may overrun
        took = f"took {mmss(first)}, past the {mmss(seconds)} budget (a workload's first cell cannot be predicted)"
    rest = "no time for extra rounds" if round(left) <= 0 else f"{mmss(left)} for the extra rounds"
    return f"the first pass (every cell at its minimum n) {took}, leaving {rest} that buy precision"


def budget_digest(run: Mapping[str, Any], *, most: int = 6) -> list[str]:
    """:func:`budget_summary` short enough for a terminal: its first line, the ``most`` cells whose
    intervals are widest, then in one line each the cells too few repetitions left unjudged (by
    workload) and the cells never started. A default run misses the target in ~60 cells, whose lines
    buried the run's end; the report's Warnings keep every one."""
    lines = budget_summary(run)
    b = run.get("budget")
    note = first_pass_note(b) if b else None
    if note:
        lines.insert(1, f"  {note}")
    if not b or b.get("changes") is not None or len(lines) <= most + 3 + bool(note):
        return lines
    wide: list[tuple[float, str]] = []
    unjudged: dict[str, list[str]] = {}
    unstarted: dict[str, list[str]] = {}
    for u in b["units"]:
        if u["status"] in ("met", "no counted figures"):
            continue
        driver = _driver_of(u)
        worst = _worst(u["figures"])
        if u["status"] != "below target":
            unstarted.setdefault(u["workload"], []).append(driver)
        elif worst is None or worst["half_width"] is None:
            unjudged.setdefault(u["workload"], []).append(driver)
        else:
            where = f"{u['workload']} on {driver}"
            wide.append((worst["half_width"], f"    {where}, n={u['n']}{_worst_detail(worst)}"))
    wide.sort(key=lambda w: -w[0])
    everyone = {_driver_of(u) for u in b["units"]}
    out = lines[:2] if note else lines[:1]
    if wide:
        cells = plural(len(wide), "cell")
        out.append(
            f"  below target (the {most} widest of {cells}):"
            if len(wide) > most
            else f"  below target ({cells}):"
        )
        out += [line for _, line in wide[:most]]
    if unjudged:
        out.append(f"  too few repetitions to judge (n < {JUDGED_N}): {_by_workload(unjudged, everyone)}")
    if unstarted:
        out.append(f"  never measured (no time left): {_by_workload(unstarted, everyone)}")
        out.append(
            f"    to measure just those, once: {_rerun_command(unstarted)} (and this run's other options)"
        )
    out.append("  (the report's Warnings list every cell)")
    return out


def _rerun_command(cells: Mapping[str, list[str]]) -> str:
    """The run that measures ``cells`` (workload -> drivers) as the first pass would have: once, at
    quick sizes (it may also run a few cells that were measured, where workloads' drivers differ)."""
    workloads = ",".join(sorted(cells))
    drivers = ",".join(sorted({d for ds in cells.values() for d in ds}))
    return f"isobench run --quick -n 1 --workloads {workloads} --drivers {drivers}"


def _by_workload(cells: Mapping[str, list[str]], everyone: set[str]) -> str:
    """``disk, network on every driver; cpu on docker, vm``: workloads that share drivers, together."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for workload, drivers in cells.items():
        groups.setdefault(tuple(sorted(drivers)), []).append(workload)
    parts = []
    for shared, workloads in sorted(groups.items(), key=lambda g: (-len(g[0]), g[0])):
        on = "every driver" if set(shared) >= everyone else ", ".join(shared)
        parts.append(f"{', '.join(sorted(workloads))} on {on}")
    return "; ".join(parts)


def missed_targets(run: Mapping[str, Any]) -> tuple[float | None, set[tuple[str, str, str]]]:
    """A budgeted run's target and the (driver, metric, variant) figures that did not meet it
    (None and nothing for a run with a fixed count)."""
    budget = run.get("budget")
    if not isinstance(budget, Mapping) or not isinstance(budget.get("precision"), int | float):
        return None, set()
    missed: set[tuple[str, str, str]] = set()
    for unit in budget.get("units") or ():
        for f in unit.get("figures") or ():
            if f.get("met") is False:
                missed.add((str(unit.get("driver")), str(f.get("metric")), str(f.get("variant") or "")))
    return float(budget["precision"]), missed
