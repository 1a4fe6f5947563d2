"""Everything a report shows, computed once and shared by the HTML and Markdown renderers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from isobench.results import Results

from .ab import ab_labels
from .ab_view import ABView, ab_views, first_configuration
from .cells import HIGH_STEAL, Cell, CellKey, group_cells
from .escape_table import escape_evidence, escape_table
from .findings import findings
from .fleet import Fleet, fleet_view, main_results
from .grid import GridTable, question_tables
from .headline import QUESTIONS, Headline, build_headline
from .limits_table import limits_table
from .methods import method_text, recorded_tools
from .plots import OPTIONAL_SECTIONS, SECTIONS, Plot, all_plots
from .tables import failures_table, leakage_table, summary_table, wide_table
from .units import human
from .warnings import WarningGroup, group_warnings

__all__ = ["Document", "build_document", "flatten"]


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Nested metadata as ("a.b.c", "value") pairs, for key/value tables."""
    if isinstance(obj, Mapping):
        if not obj and prefix:
            yield prefix, "{}"
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple) and any(isinstance(v, Mapping) for v in obj):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}[{i}]")
    elif isinstance(obj, list | tuple):
        yield prefix, ", ".join(str(v) for v in obj)
    elif isinstance(obj, float) and math.isfinite(obj):
        yield prefix, f"{obj:.6g}"
    else:
        yield prefix, "" if obj is None else str(obj)


@dataclass(frozen=True)
class WorkloadMethods:
    workload: str
    text: str
    metrics: tuple[tuple[str, str, str], ...]  # (metric, unit, better)
    drivers: tuple[str, ...]
    tools: tuple[str, ...]


@dataclass(frozen=True)
class Document:
    run: Mapping[str, Any]
    summary: pd.DataFrame
    wide: dict[str, pd.DataFrame]  # per workload
    failures: pd.DataFrame
    leakage: pd.DataFrame
    plots: tuple[Plot, ...]
    empty_sections: tuple[str, ...]
    methods: tuple[WorkloadMethods, ...]
    headline: Headline
    findings: tuple[str, ...]
    warning_groups: tuple[WarningGroup, ...]
    #: Per workload, the tables that fit a window (drivers as rows).
    grids: dict[str, list[GridTable]]
    #: Limit fidelity (the limits workload): requested vs delivered per driver and limit.
    limits: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: A fleet run's hosts side by side (None for one host); the headline is then ``fleet.main``'s.
    fleet: Fleet | None = None
    #: The escape battery: a verdict per driver and primitive, and the evidence behind each.
    escape: pd.DataFrame = field(default_factory=pd.DataFrame)
    escape_evidence: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: An A/B run's answer: each configuration after the first against the first (none otherwise).
    ab: tuple[ABView, ...] = ()
    #: The host's steal over the run's cells in words ("" before results schema 9).
    steal: str = ""

    @property
    def warnings(self) -> tuple[str, ...]:
        """Every warning as one line (its group's line, then its items)."""
        return tuple(x for g in self.warning_groups for x in (g.line, *g.items))

    @property
    def title(self) -> str:
        return f"isobench report — run {self.run.get('run_id', '?')}"

    @property
    def heading(self) -> str:
        if self.fleet is not None:
            n = len(self.fleet.hosts)
            return f"What isolation costs on {self.fleet.main} (1 of {n} hosts: the fleet view compares them)"
        return "What isolation costs on this host"

    def subtitle(self) -> str:
        """Run, host and sandbox in one line, for the top of the page."""
        parts = [f"isobench run {self.run.get('run_id', '?')}"]
        started = self.run.get("started")
        if isinstance(started, int | float) and math.isfinite(started):
            parts.append(datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC"))
        host = self.run.get("host") or {}
        if isinstance(host, Mapping):
            cpu = " ".join(str(host.get("cpu_model") or "").split())
            cores = f"{host['cpus']} CPUs" if host.get("cpus") else ""
            mem = host.get("memory_bytes")
            mem_text = human(float(mem), "bytes", 2) if isinstance(mem, int | float) and mem else ""
            kernel = f"kernel {host['kernel']}" if host.get("kernel") else ""
            parts.append(", ".join(p for p in (cpu, cores, mem_text, kernel) if p))
        config = self.run.get("config") or {}
        if isinstance(config, Mapping):
            if config.get("vcpus") and config.get("memory_mib"):
                parts.append(f"sandboxes: {config['vcpus']} vCPU, {config['memory_mib']} MiB")
            if config.get("quick"):
                parts.append("--quick")
        return " \u00b7 ".join(p for p in parts if p)

    def run_facts(self) -> list[tuple[str, str]]:
        skip = {"host", "drivers"}
        facts = {k: v for k, v in self.run.items() if k not in skip}
        for k in ("started", "ended"):
            v = facts.get(k)
            if isinstance(v, int | float) and math.isfinite(v):
                facts[k] = datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return list(flatten(facts))

    def host_facts(self) -> list[tuple[str, str]]:
        facts = list(flatten(self.run.get("host") or {}))
        return facts + ([("CPU steal during the run", self.steal)] if self.steal else [])

    def driver_facts(self) -> dict[str, list[tuple[str, str]]]:
        drivers = self.run.get("drivers") or {}
        return {str(k): list(flatten(v)) for k, v in drivers.items()} if isinstance(drivers, Mapping) else {}


def steal_words(results: Results) -> str:
    """The host's steal share over the run's cells (each cell's reading once): median and range."""
    cells: dict[tuple[object, ...], float] = {}
    for s in results.samples:
        v = s.metadata.get("host_steal")
        if isinstance(v, int | float):
            cells.setdefault(
                (s.driver, s.workload, s.repetition, s.metadata.get("round"), s.metadata.get("slot")), v
            )
    if not cells:
        return ""
    v = sorted(cells.values())
    text = f"median {statistics.median(v):.0%} of the host's CPU time over {len(v)} cell reading{'s' if len(v) != 1 else ''} ({v[0]:.0%}-{v[-1]:.0%})"
    return text + (f"; Warnings name the cells above {HIGH_STEAL:.0%}" if v[-1] > HIGH_STEAL else "")


def run_headline(
    results: Results, fleet: Fleet | None, cells: Mapping[CellKey, Cell] | None = None
) -> Headline:
    """The headline a run answers with: the main host's in a fleet run, the first configuration's
    in an A/B run (each with its own native baseline), else the whole run's."""
    if fleet is not None:
        return build_headline(main_results(results, fleet))
    if len(ab_labels(results)) > 1:
        return build_headline(first_configuration(results))
    return build_headline(results, cells=cells)


def build_document(results: Results, plots_dir: Path) -> Document:
    cells = group_cells(results)
    summary = summary_table(results, cells=cells)
    plots, plot_errors = all_plots(summary, cells, plots_dir, results)

    failures = failures_table(results)

    present = {p.section for p in plots}
    empty = tuple(SECTIONS[s] for s in SECTIONS if s not in present and s not in OPTIONAL_SECTIONS)

    wide: dict[str, pd.DataFrame] = {}
    if not summary.empty:
        for workload, grp in summary.groupby("workload", sort=True):
            wide[str(workload)] = wide_table(grp)

    methods: list[WorkloadMethods] = []
    workloads = sorted({s.workload for s in results.samples})
    for w in workloads:
        ws = [s for s in results.samples if s.workload == w]
        measured = [s for s in ws if s.value is not None]
        metrics = tuple(dict.fromkeys((s.metric, s.unit, s.better) for s in measured))
        methods.append(
            WorkloadMethods(
                workload=w,
                text=method_text(w),
                metrics=metrics,
                drivers=tuple(dict.fromkeys(s.driver for s in ws)),
                tools=tuple(recorded_tools(ws)),
            )
        )
    fleet = fleet_view(results)
    headline = run_headline(results, fleet, cells)
    ab = ab_views(results, ((q.workload, q.metric) for q in QUESTIONS), headline.drivers)
    noisy = int(summary["noisy"].sum()) if not summary.empty else 0
    return Document(
        headline=headline,
        findings=tuple(
            findings(headline, results.run, noisy=noisy, total=len(summary), failed=len(failures))
        ),
        warning_groups=group_warnings(results.run, summary, failures, plot_errors),
        grids=question_tables(cells),
        run=results.run,
        summary=summary,
        wide=wide,
        failures=failures,
        leakage=leakage_table(summary, results) if not summary.empty else pd.DataFrame(),
        plots=tuple(plots),
        empty_sections=empty,
        methods=tuple(methods),
        limits=limits_table(results),
        fleet=fleet,
        escape=escape_table(results),
        escape_evidence=escape_evidence(results),
        ab=ab,
        steal=steal_words(results),
    )
