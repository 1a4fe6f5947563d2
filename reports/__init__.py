"""Reports: tables (pandas), figures (matplotlib), a single-file HTML report, summary.md, the
comparison of runs (:mod:`isobench.reports.compare`) and of the variants of one A/B run
(:mod:`isobench.reports.ab`), the regression gate's decision (:mod:`isobench.reports.gate`) and
exports (:mod:`isobench.reports.export`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from isobench.results import Results, atomic_write_text

from .document import Document, build_document, run_headline
from .files import fresh_plots_dir
from .findings import findings
from .fleet import Fleet, fleet_view
from .headline import Headline
from .html import render_html
from .markdown import render_markdown
from .tables import failures_table, summary_table
from .warnings import WarningGroup, group_warnings

log = logging.getLogger(__name__)

__all__ = ["Overview", "ReportPaths", "overview", "render", "summary_table"]


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    plots: tuple[Path, ...]
    tables: tuple[Path, ...]
    #: Sections of the report that had no data (shown in the report too).
    empty_sections: tuple[str, ...] = ()


@dataclass(frozen=True)
class Overview:
    """What the terminal shows after a run: the headline, its findings and the grouped warnings."""

    headline: Headline
    findings: tuple[str, ...]
    warnings: tuple[WarningGroup, ...]
    #: Several hosts (a fleet run): the headline is ``fleet.main``'s, the view compares them all.
    fleet: Fleet | None = None


def overview(results: Results) -> Overview:
    summary = summary_table(results)
    failures = failures_table(results)
    fleet = fleet_view(results)
    headline = run_headline(results, fleet)
    noisy = int(summary["noisy"].sum()) if not summary.empty else 0
    said = findings(headline, results.run, noisy=noisy, total=len(summary), failed=len(failures))
    return Overview(headline, tuple(said), group_warnings(results.run, summary, failures), fleet)


def _write_tables(doc: Document, tables_dir: Path) -> tuple[Path, ...]:
    tables_dir.mkdir(parents=True, exist_ok=True)
    written = []
    frames = {"summary.csv": doc.summary, "failures.csv": doc.failures}
    if not doc.leakage.empty:
        frames["leakage.csv"] = doc.leakage
    if not doc.limits.empty:
        frames["limits.csv"] = doc.limits
    if doc.fleet is not None:
        frames["fleet.csv"] = doc.fleet.table()
    if not doc.escape.empty:
        frames["escape.csv"] = doc.escape
        frames["escape-evidence.csv"] = doc.escape_evidence
    for workload, df in doc.wide.items():
        frames[f"wide-{_safe(workload)}.csv"] = df
    for name, df in frames.items():
        path = tables_dir / name
        atomic_write_text(path, df.to_csv(index=False))
        written.append(path)
    return tuple(written)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "x"


def render(results: Results, out_dir: Path) -> ReportPaths:
    """Write report.html, summary.md, plots/*.png and tables/*.csv into ``out_dir``."""
    plots_dir = fresh_plots_dir(out_dir, "*.png", "report")
    doc = build_document(results, plots_dir)
    html_path = out_dir / "report.html"
    md_path = out_dir / "summary.md"
    atomic_write_text(html_path, render_html(doc))
    atomic_write_text(md_path, render_markdown(doc, out_dir))
    tables = _write_tables(doc, out_dir / "tables")
    log.info("report written to %s", html_path)
    return ReportPaths(
        html=html_path,
        markdown=md_path,
        plots=tuple(p.path for p in doc.plots),
        tables=tables,
        empty_sections=doc.empty_sections,
    )
