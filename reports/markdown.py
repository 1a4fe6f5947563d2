"""summary.md: the report as Markdown, for pull-request comments and terminals."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from pathlib import Path

import pandas as pd

from .document import Document
from .methods import STATISTICS
from .plots import SECTIONS
from .tables import fmt

__all__ = ["md_table", "render_markdown"]


def _md(text: object) -> str:
    # Markdown renderers pass raw HTML through, so untrusted text is HTML-escaped; pipes would split
    # table cells and newlines would end the row.
    return escape(str(text)).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


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


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f"- `{_md(k)}`: {_md(v)}\n" for k, v in pairs) or "_None recorded._\n"


def render_markdown(doc: Document, out_dir: Path) -> str:
    parts = [
        f"# {_md(doc.title)}\n",
        "## Run and host\n",
        _kv(doc.run_facts()),
        "\n### Host\n",
        _kv(doc.host_facts()),
    ]
    for name, facts in doc.driver_facts().items():
        parts += [f"\n### Driver {_md(name)}\n", _kv(facts)]
    parts.append("\n## Warnings\n")
    parts.append("".join(f"- {_md(w)}\n" for w in doc.warnings) or "None.\n")
    parts.append("\n## Results per workload\n")
    for workload, df in doc.wide.items():
        parts += [f"\n### {_md(workload)}\n\n", md_table(df.drop(columns=["workload"]))]
    if not doc.leakage.empty:
        parts += ["\n### Leak score\n\n", md_table(doc.leakage)]
    if not doc.failures.empty:
        parts += ["\n### Failed cells\n\n", md_table(doc.failures)]
    parts.append("\n## Figures\n")
    for section, heading in SECTIONS.items():
        for p in (p for p in doc.plots if p.section == section):
            rel = p.path.relative_to(out_dir) if p.path.is_relative_to(out_dir) else p.path
            parts.append(f"\n**{_md(heading)}: {_md(p.title)}**\n\n![{_md(p.title)}]({rel.as_posix()})\n")
    if doc.empty_sections:
        parts.append(f"\nNo data in this run for: {_md(', '.join(doc.empty_sections))}.\n")
    parts += ["\n## Methods\n\n", _md(STATISTICS), "\n"]
    for m in doc.methods:
        parts.append(f"\n### {_md(m.workload)}\n\n{_md(m.text)}\n")
        if m.tools:
            parts.append(f"\nRecorded tools: {_md('; '.join(m.tools))}\n")
    return "".join(parts)
