"""Warnings grouped by kind: one line per kind with a count and where it mostly happens; the
individual items stay available (collapsed in the HTML)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from isobench.budget import mmss

from .budget import budget_summary, first_pass_note
from .cells import HIGH_STEAL
from .units import plural

__all__ = ["WarningGroup", "group_warnings"]


@dataclass(frozen=True)
class WarningGroup:
    kind: str
    #: One line: what, how many, mostly where.
    line: str
    items: tuple[str, ...]


def _mostly(labels: Sequence[str], total: int) -> str:
    label, count = Counter(labels).most_common(1)[0]
    return "all" if count == total else f"{count} of them {label}"


def _noisy(summary: pd.DataFrame) -> WarningGroup | None:
    if summary.empty:
        return None
    noisy = summary[summary["noisy"]]
    if noisy.empty:
        return None
    items = []
    kinds = []
    for rec in noisy.to_dict("records"):
        variant = f" [{rec['variant']}]" if rec["variant"] else ""
        metric = str(rec["metric"])
        items.append(
            f"{rec['driver']} / {rec['workload']} / {metric}{variant}: "
            f"CoV {float(rec['cov']) * 100:.1f}% over n={int(rec['n'])}"
        )
        kind = "startup phases" if ".phase." in metric else str(rec["workload"])
        kinds.append(f"{kind} at n={int(rec['n'])}")
    n = len(items)
    where = _mostly(kinds, n)
    where = f"all {kinds[0]}" if where == "all" else where
    line = (
        f"{n} figure{'s have' if n != 1 else ' has'} CoV above 5% ({where}); their intervals are "
        "wide, so treat them with care."
    )
    return WarningGroup("noisy", line, tuple(items))


def _steal(summary: pd.DataFrame) -> WarningGroup | None:
    """Cells measured while the hypervisor under the host held its CPUs back: their figures may be
    slow because of the host, not the sandbox (a driver/workload cell counts once, by its highest
    median over its figures)."""
    if summary.empty or "host_steal" not in summary:
        return None
    steal: dict[tuple[str, str], float] = {}
    for rec in summary.dropna(subset=["host_steal"]).to_dict("records"):
        key = (str(rec["driver"]), str(rec["workload"]))
        steal[key] = max(steal.get(key, 0.0), float(rec["host_steal"]))
    high = sorted(((v, k) for k, v in steal.items() if v > HIGH_STEAL), key=lambda x: -x[0])
    if not high:
        return None
    items = tuple(f"{d} / {w}: {v * 100:.0f}% steal" for v, (d, w) in high)
    n, where = len(high), _mostly([w for _, (_, w) in high], len(high))
    where = f"all {high[0][1][1]}" if where == "all" else where
    line = (
        f"{n} of {plural(len(steal), 'driver/workload cell')} ran while the "
        f"hypervisor under this host took more than {HIGH_STEAL:.0%} of its CPU time (steal; up to "
        f"{high[0][0] * 100:.0f}%; {where}): their figures may be slowed by the host, not by "
        "the sandbox. Compare them with care (host_steal per figure in tables/summary.csv)."
    )
    return WarningGroup("steal", line, items)


def _failed(failures: pd.DataFrame) -> WarningGroup | None:
    if failures.empty:
        return None
    items = [f"{r.driver} / {r.workload} repetition {r.repetition}: {r.error}" for r in failures.itertuples()]
    cells = [f"{r.driver}/{r.workload}" for r in failures.itertuples()]
    n = len(items)
    where = _mostly(cells, n)
    where = cells[0] if where == "all" else where
    line = f"{plural(n, 'cell')} failed ({where}); their errors are below and in tables/failures.csv."
    return WarningGroup("failed", line, tuple(items))


def _tcg(run: Mapping[str, Any], summary: pd.DataFrame) -> WarningGroup | None:
    drivers = run.get("drivers") or {}
    if not isinstance(drivers, Mapping):
        return None
    # a guest driver the run chose but never measured (an interrupted run) ran no guest
    measured = set(summary["driver"]) if "driver" in summary else set()
    tcg = [
        str(d)
        for d, m in drivers.items()
        if isinstance(m, Mapping) and str(m.get("accel", "")).lower() == "tcg" and d in measured
    ]
    if not tcg:
        return None
    line = (
        f"{', '.join(tcg)} ran guests with TCG (software CPU emulation, no KVM): their startup, CPU "
        "and I/O figures are far slower than KVM and not representative of production virtual machines."
    )
    return WarningGroup("tcg", line, ())


def _concurrent(run: Mapping[str, Any]) -> WarningGroup | None:
    """Other isobench runs measured on the same host meanwhile: both runs' figures are disturbed."""
    met = run.get("concurrent_runs")
    if not isinstance(met, Mapping) or not met:
        return None
    items = tuple(
        f"run {r}, live during {plural(int(n), 'cell')} of this run"
        for r, n in sorted(met.items(), key=lambda kv: (-int(kv[1]), kv[0]))
    )
    who = "another isobench run" if len(met) == 1 else f"{len(met)} other isobench runs"
    where = "this run's hosts" if run.get("cluster") else "this host"
    line = (
        f"{who} measured on {where} at the same time "
        f"({'; '.join(items[:3])}"
        f"{'; ...' if len(items) > 3 else ''}): the runs disturb each other, so those cells' figures "
        "are not the sandboxes' alone (their samples' metadata concurrent_runs names them); measure "
        "again with the host to itself."
    )
    return WarningGroup("concurrent", line, items)


def _precision(run: Mapping[str, Any]) -> WarningGroup | None:
    """A budgeted run says how many counted figures reached the precision target, and which cells
    did not (the per-figure record is run["budget"] in results.json). An A/B run's rounds buy each
    change's precision, so there it counts changes."""
    b = run.get("budget")
    if not isinstance(b, Mapping):
        return None
    target, budget = f"±{float(b['precision']):.0%}", f"{mmss(float(b['seconds']))} budget ({b['stopped']})"
    if changes := b.get("changes"):
        met, counted = sum(bool(c["met"]) for c in changes), len(changes)
        short = budget_summary(run)[2:]
        line = (
            f"{counted - met} of {counted} changes between the A/B configurations are not known to {target} "
            f"(95% interval, paired by round) after the {budget}; the compare of this run can detect only "
            "larger changes there. A longer --budget or a higher --max-n buys rounds."
        )
    elif b.get("figures_counted"):
        met, counted = int(b["figures_met"]), int(b["figures_counted"])
        short = budget_summary(run)[1:]
        cells = plural(len(short), "driver/workload cell")
        note = first_pass_note(b)
        line = (
            f"{counted - met} of {counted} counted figures did not reach the precision target (95% interval "
            f"within {target} of the median) in the {budget}; {cells} fell short. "
            + (
                f"{note[0].upper()}{note[1:]}; a longer --budget, or --workloads/--drivers to narrow the "
                "run, leaves them more."
                if note
                else "A longer --budget, or --workloads/--drivers to narrow the run, buys precision."
            )
        )
    else:
        return None
    return None if met == counted else WarningGroup("precision", line, tuple(x.strip() for x in short))


def group_warnings(
    run: Mapping[str, Any],
    summary: pd.DataFrame,
    failures: pd.DataFrame,
    plot_errors: Sequence[str] = (),
) -> tuple[WarningGroup, ...]:
    """Every warning of a run, one group per kind, the most consequential first."""
    groups: list[WarningGroup] = []
    status = run.get("status")
    if status == "running":
        groups.append(
            WarningGroup("status", "the run is still running: these are the figures it has so far.", ())
        )
    elif status not in (None, "complete"):
        groups.append(WarningGroup("status", f"run status is {status!r}: results may be incomplete.", ()))
    for g in (_failed(failures), _concurrent(run), _tcg(run, summary)):
        if g is not None:
            groups.append(g)
    if not summary.empty and "host" not in set(summary["driver"]):
        groups.append(
            WarningGroup(
                "no-native", "no native (host) samples in this run: ratios to native cannot be computed.", ()
            )
        )
    for g in (_precision(run), _steal(summary), _noisy(summary)):
        if g is not None:
            groups.append(g)
    if plot_errors:
        n = len(plot_errors)
        groups.append(WarningGroup("plots", f"{plural(n, 'figure')} could not be drawn.", tuple(plot_errors)))
    return tuple(groups)
