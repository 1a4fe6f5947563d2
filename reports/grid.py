"""Tables that fit a 1280 px window: per workload, drivers as rows and a few figures as columns,
parameters stated once per table. What varies between a metric's cells (storage, queue depth,
threads) labels its columns; what a driver alone has (the container's hardening profile) labels its
row; what every column of a table shares goes in the table's caption.

Detail-only metrics (start-up phases, single leakage probes, the parts of a memory total) are not
here: they are in the full per-metric table behind a <details> and in the figures."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .cells import NATIVE, PAIRED_RATIOS, Cell, CellKey, driver_order, is_leak_probe
from .headline import QUESTIONS, Figure, Question, cell_figure, paired_ratios
from .units import human_pct

__all__ = ["MAX_COLUMNS", "GridTable", "question_tables"]

#: Figure columns per table: with the driver column, what a 1280 px window shows without scrolling.
MAX_COLUMNS = 6

Params = tuple[tuple[str, str], ...]

# How a param labels a column, in the order labels name them; others read "key=value" after these.
_SHORT = {"storage": "{}", "operation": "{}", "rw": "{}", "variant": "{}", "iodepth": "QD{}"}


@dataclass(frozen=True)
class GridTable:
    workload: str
    #: What the table shows: its one metric, or empty when its columns are several metrics.
    title: str
    #: Parameters every column shares, stated once.
    params: str
    columns: tuple[str, ...]
    #: (row label, one figure or None per column)
    rows: tuple[tuple[str, tuple[Figure | None, ...]], ...]


def detail_only(metric: str) -> bool:
    return (
        ".phase." in metric
        or is_leak_probe(metric)
        or metric.startswith("idle-memory.host_view.")
        # one column per N or per request would not fit; their figures and the limits table show them
        or metric.startswith(("density.", "limits."))
        # one 0/1 per escape primitive: the escape battery table shows them with their evidence
        or (metric.startswith("escape.") and metric != "escape.open")
        # the ratio to native of the figure it pairs, shown there
        or metric in PAIRED_RATIOS
    )


def _kv(params: Params) -> str:
    return ", ".join(f"{k}={v}" for k, v in params)


def _ranked(params: Params) -> Params:
    order = list(_SHORT)
    return tuple(sorted(params, key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])))


def _sort_key(params: Params) -> tuple[tuple[int, float, str], ...]:
    # numbers as numbers (QD1 before QD32 before QD4 would be wrong)
    out = []
    for _, v in _ranked(params):
        try:
            out.append((0, float(v), ""))
        except ValueError:
            out.append((1, 0.0, v))
    return tuple(out)


def _short(params: Params) -> str:
    return " ".join(_SHORT.get(k, f"{k}={{}}").format(v) for k, v in _ranked(params))


def _text(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _degradation(fig: Figure) -> Figure:
    """Interference degradations are fractions that can be zero or negative: percentages, no ratio."""
    detail = ""
    if fig.n >= 2 and not math.isnan(fig.ci_low):
        detail = f"{human_pct(fig.ci_low, 2)}\u2013{human_pct(fig.ci_high, 2)}"
    tip = f"degradation {human_pct(fig.value)} of the victim's throughput, n={fig.n}"
    return replace(fig, text=human_pct(fig.value, 2), detail=detail, verdict="none", ratio=math.nan, tip=tip)


def _figure(cell: Cell, native: Cell | None, pairs: tuple[float, ...] = ()) -> Figure:
    metric = cell.key.metric
    degradation = metric.endswith((".d_mean", ".d_p99"))
    unit = "iops" if metric.endswith(".iops") and cell.unit == "ops_per_second" else None
    q = Question(
        metric, metric, cell.key.workload, metric, {}, "value", "", exact=cell.unit == "bool", unit=unit
    )
    fig = cell_figure(q, cell, None if degradation else native, pairs)
    return _degradation(fig) if degradation else fig


def _pack(metrics: Sequence[tuple[str, list[Params]]]) -> list[list[tuple[str, Params]]]:
    """Columns (metric, params) in tables of at most MAX_COLUMNS, a metric's columns kept together
    unless they alone are more than a table holds."""
    tables: list[list[tuple[str, Params]]] = []
    current: list[tuple[str, Params]] = []
    for metric, variants in metrics:
        cols = [(metric, v) for v in variants]
        if current and len(current) + len(cols) > MAX_COLUMNS:
            tables.append(current)
            current = []
        while len(cols) > MAX_COLUMNS:
            tables.append(cols[:MAX_COLUMNS])
            cols = cols[MAX_COLUMNS:]
        current += cols
    if current:
        tables.append(current)
    return tables


def _workload_tables(workload: str, cells: Sequence[Cell], every: Mapping[CellKey, Cell]) -> list[GridTable]:
    by_metric: dict[str, list[Cell]] = {}
    # the metrics the headline answers with come first, the rest in name order
    first = [q.metric for q in QUESTIONS]
    for c in sorted(cells, key=lambda c: first.index(c.key.metric) if c.key.metric in first else len(first)):
        by_metric.setdefault(c.key.metric, []).append(c)
    col_of: dict[CellKey, Params] = {}
    row_of: dict[CellKey, str] = {}
    metrics: list[tuple[str, list[Params]]] = []
    for metric, group in by_metric.items():
        shared = set.intersection(*(set(c.params) for c in group))
        variants: list[Params] = []
        for c in group:
            col = tuple((k, _text(c.params[k])) for k in sorted(shared))
            extra = _kv(tuple((k, _text(v)) for k, v in sorted(c.params.items()) if k not in shared))
            col_of[c.key] = col
            row_of[c.key] = f"{c.key.driver} ({extra})" if extra else c.key.driver
            if col not in variants:
                variants.append(col)
        metrics.append((metric, sorted(variants, key=_sort_key)))
    prefix = f"{workload}."
    out = []
    for cols in _pack(metrics):
        # Params with one value over the whole table are stated once; the rest label the columns.
        keys = {k for _, col in cols for k, _ in col}
        values = {k: {dict(col).get(k) for _, col in cols} for k in keys}
        common: Params = tuple(
            sorted((k, str(next(iter(v)))) for k, v in values.items() if len(v) == 1 and None not in v)
        )
        labels = []
        one_metric = len({m for m, _ in cols}) == 1
        for metric, col in cols:
            name = "" if one_metric else (metric[len(prefix) :] if metric.startswith(prefix) else metric)
            rest = tuple(kv for kv in col if kv not in common)
            labels.append(f"{name} {_short(rest)}".strip() or "median")
        title = cols[0][0][len(prefix) :] if one_metric and cols[0][0].startswith(prefix) else ""
        if one_metric and not title:
            title = cols[0][0]
        rows: dict[str, list[Figure | None]] = {}
        wanted = {(m, col): i for i, (m, col) in enumerate(cols)}
        for c in sorted(cells, key=lambda c: driver_order(c.key.driver)):
            i = wanted.get((c.key.metric, col_of[c.key]))
            if i is None:
                continue
            native = next(
                (
                    n
                    for n in by_metric[c.key.metric]
                    if n.key.driver == NATIVE and col_of[n.key] == col_of[c.key]
                ),
                None,
            )
            rows.setdefault(row_of[c.key], [None] * len(cols))[i] = _figure(
                c, native, paired_ratios(every, c)
            )
        out.append(
            GridTable(
                workload=workload,
                title=title,
                params=_kv(common),
                columns=tuple(labels),
                rows=tuple((label, tuple(figs)) for label, figs in rows.items()),
            )
        )
    return out


#: Interference metrics name a victim and a stressor; one table per figure, stressors as columns
#: (the IBS layout). (pattern, table title with {v} for the victim); the column is the stressor,
#: or the victim for the baselines.
_INTERFERENCE = (
    (re.compile(r"interference\.(?P<v>[^.]+)\.(?P<s>[^.]+)\.d_mean$"),
     "victim {v}: throughput lost next to each stressor"),
    (re.compile(r"interference\.(?P<v>[^.]+)\.(?P<s>[^.]+)\.d_p99$"),
     "victim {v}: p99 latency added next to each stressor"),
    (re.compile(r"interference\.(?P<s>[^.]+)\.contained$"), "stressor contained"),
    (re.compile(r"interference\.(?P<s>[^.]+)\.host_cpu_outside_s$"),
     "host CPU time outside the sandboxes added by each stressor (over the victim alone)"),
    (re.compile(r"interference\.(?P<s>[^.]+)\.baseline$"), "victim throughput alone"),
)  # fmt: skip


def _interference_tables(cells: Sequence[Cell]) -> list[GridTable] | None:
    """Per figure, drivers as rows and stressors as columns; None when a metric does not fit."""
    tables: dict[tuple[int, str], dict[str, dict[str, Figure]]] = {}
    params: dict[tuple[int, str], set[str]] = {}
    for c in sorted(cells, key=lambda c: driver_order(c.key.driver)):
        for kind, (pattern, title) in enumerate(_INTERFERENCE):
            m = pattern.match(c.key.metric)
            if m:
                table = (kind, title.format(**m.groupdict()))
                break
        else:
            return None
        fig = _figure(c, None)
        if c.key.metric.endswith(".contained"):
            fig = replace(fig, text="pass" if fig.value >= 0.5 else "FAIL", detail="")
        extra = _kv(tuple((k, _text(v)) for k, v in sorted(c.params.items()) if k != "duration_s"))
        row = f"{c.key.driver} ({extra})" if extra else c.key.driver
        tables.setdefault(table, {}).setdefault(row, {})[m.group("s")] = fig
        params.setdefault(table, set()).update(
            f"{k}={_text(v)}" for k, v in c.params.items() if k == "duration_s"
        )
    out = []
    for table, rows in sorted(tables.items()):
        columns = list(dict.fromkeys(col for figs in rows.values() for col in figs))
        for start in range(0, len(columns), MAX_COLUMNS):
            cols = columns[start : start + MAX_COLUMNS]
            out.append(
                GridTable(
                    workload="interference",
                    title=table[1],
                    params=", ".join(sorted(params.get(table, ()))),
                    columns=tuple(cols),
                    rows=tuple((label, tuple(figs.get(c) for c in cols)) for label, figs in rows.items()),
                )
            )
    return out


def question_tables(cells: Mapping[CellKey, Cell]) -> dict[str, list[GridTable]]:
    """Per workload, its tables (drivers as rows, at most MAX_COLUMNS figures as columns)."""
    by_workload: dict[str, list[Cell]] = {}
    for key, cell in cells.items():
        if not detail_only(key.metric):
            by_workload.setdefault(key.workload, []).append(cell)
    out = {}
    for w, cs in sorted(by_workload.items()):
        special = _interference_tables(cs) if w == "interference" else None
        out[w] = special if special is not None else _workload_tables(w, cs, cells)
    return out
