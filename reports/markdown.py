"""summary.md: the headline, the findings and the grouped warnings, short enough for a pull-request
comment; every figure is in tables/*.csv and report.html."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from .document import Document
from .headline import Figure, Headline
from .tables import fmt

__all__ = ["MARKS", "headline_markdown", "md_table", "render_markdown"]

#: Markdown has no colour: a verdict against native is a mark after the figure.
MARKS = {"better": " \u25b2", "worse": " \u25bc"}


def _md(text: object) -> str:
    # Markdown renderers pass raw HTML through, so untrusted text is HTML-escaped (quotes matter only
    # inside attributes, which this file never writes, so they stay readable); pipes would split
    # table cells and newlines would end the row.
    return escape(str(text), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cell(v: object) -> str:
    if isinstance(v, float):
        return fmt(v)
    return _md(v)


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_No rows._\n"
    lines = [
        "| " + " | ".join(_md(c) for c in df.columns) + " |",
        "|" + "---|" * len(df.columns),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _figure(fig: Figure | None) -> str:
    if fig is None:
        return "\u2013"
    detail = f" ({fig.detail})" if fig.detail else ""
    return _md(f"{fig.text}{detail}{MARKS.get(fig.verdict, '')}")


def headline_markdown(h: Headline) -> str:
    """The headline as a Markdown table, drivers as rows."""
    if h.empty:
        return ""  # the findings under it say why there is none (and what the run did measure)
    head = ["driver"] + [
        f"{q.title} (n={h.n_text(q.key)})" if h.n_text(q.key) else q.title for q in h.questions
    ]
    lines = ["| " + " | ".join(_md(c) for c in head) + " |", "|" + "---|" * len(head)]
    for d in h.drivers:
        cells = [_md(h.label(d))] + [_figure(h.figure(d, q.key)) for q in h.questions]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "\n\u25b2 better than native, \u25bc worse (95% interval of the ratio excludes 1, exact rank test "
        "p < 0.05); no mark: no significant difference, too few repetitions to tell, or not compared. In brackets: the median's interval (\u00b1 share of the "
        "median) and the ratio to native (\u00d7).\n"
    )
    if h.footnote():
        lines.append(f"{_md(h.footnote())}\n")
    params = "; ".join(f"**{_md(q.title)}**: {_md(q.params)}" for q in h.questions)
    lines.append(f"\n{params}.\n")
    return "\n".join(lines)


def fleet_markdown(doc: Document) -> str:
    """The fleet view: one row per driver and question, one column per host."""
    if doc.fleet is None:
        return ""
    f = doc.fleet
    head = ["driver", "question", *f.hosts]
    lines = ["\n## Fleet: the same figure on every host\n", "| " + " | ".join(_md(c) for c in head) + " |"]
    lines.append("|" + "---|" * len(head))
    for driver, question, figs in f.rows():
        lines.append("| " + " | ".join([_md(driver), _md(question), *(_figure(x) for x in figs)]) + " |")
    lines.append("\nEach ratio is to the native baseline measured on the same host.\n")
    return "\n".join(lines)


def ab_markdown(doc: Document) -> str:
    """An A/B run's answer (report.html's table), one table per configuration after the first."""
    out = []
    for view in doc.ab:
        rows = [view.cells(c) for c in view.rows()]
        out.append(f"\n## {_md(view.title)}\n\n")
        out.append(
            md_table(pd.DataFrame(rows, columns=view.header())) if rows else "_No figure was compared._\n"
        )
        out.append(f"\n{_md(view.legend())}\n")
    return "".join(out)


def render_markdown(doc: Document, out_dir: Path) -> str:
    del out_dir  # paths below are relative to the report directory summary.md is written into
    parts = [
        f"# {_md(doc.heading)}\n\n",
        f"{_md(doc.subtitle())}\n\n",
        headline_markdown(doc.headline),
        ab_markdown(doc),
        fleet_markdown(doc),
        "\n## Findings\n\n",
        "".join(f"- {_md(f)}\n" for f in doc.findings),
        "\n## Warnings\n\n",
    ]
    if not doc.warning_groups:
        parts.append("None: every cell succeeded and every CoV is within 5%.\n")
    for g in doc.warning_groups:
        if g.kind == "failed":
            # few, and each one matters: listed here too
            parts.append(f"- {_md(g.line)}\n" + "".join(f"  - {_md(i)}\n" for i in g.items[:10]))
            continue
        listed = f" ({len(g.items)} listed in report.html)" if g.items else ""
        parts.append(f"- {_md(g.line)}{listed}\n")
    parts.append(
        "\n## Detail\n\n"
        "Every figure (median, its interval and confidence, n, CoV, ratio to native, in raw SI units) is in "
        "`tables/summary.csv`; per workload, readable tables are in `tables/wide-*.csv`, failed cells in "
        "`tables/failures.csv`; charts in `plots/*.png`; all of it with methods and run metadata in "
        "`report.html`.\n"
    )
    if not doc.escape.empty:
        parts.append(
            "\n## Escape battery\n\n" + md_table(doc.escape) + "\nEvidence: `tables/escape-evidence.csv`.\n"
        )
    if doc.empty_sections:
        parts.append(f"\nNo data in this run for: {_md(', '.join(doc.empty_sections))}.\n")
    return "".join(parts)
