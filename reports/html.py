"""The single-file HTML report: no scripts, no external resources, PNGs embedded as data: URIs.

Everything that comes from results (metadata, params, error texts) is untrusted and goes through
``html.escape``; the only markup is the one written here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape

import pandas as pd

from .document import Document
from .methods import STATISTICS
from .plots import SECTIONS
from .tables import fmt

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warnings{background:#fff4e5;border:1px solid #f0a030;padding:.5em 1em}
.warnings li{margin:.2em 0}.ok{color:#2a7}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
nav a{margin-right:1em}.kv td:first-child{font-family:monospace;white-space:nowrap}
.scroll{overflow-x:auto}
"""


def _table(df: pd.DataFrame, *, numeric: Sequence[str] = ()) -> str:
    if df.empty:
        return "<p>No rows.</p>"
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        tds = []
        for col, v in zip(df.columns, row, strict=True):
            cls = ' class="num"' if col in numeric else ""
            tds.append(f"<td{cls}>{escape(_cell(v))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table></div>"
    )


def _cell(v: object) -> str:
    if isinstance(v, float):
        return fmt(v)
    return str(v)


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>' if rows else "<p>None recorded.</p>"


def render_html(doc: Document) -> str:
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No scripts, no remote loads: the file must work offline and cannot run injected code.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(doc.title)}</h1>",
        '<nav><a href="#metadata">Metadata</a><a href="#warnings">Warnings</a>'
        '<a href="#tables">Tables</a><a href="#figures">Figures</a><a href="#methods">Methods</a></nav>',
    ]

    out.append('<section id="metadata"><h2>Run and host</h2>')
    out.append(_kv(doc.run_facts()))
    out.append("<h3>Host</h3>" + _kv(doc.host_facts()))
    out.append("<h3>Drivers</h3>")
    drivers = doc.driver_facts()
    if not drivers:
        out.append("<p>No driver metadata recorded.</p>")
    for name, facts in drivers.items():
        accel = dict(facts).get("accel")
        label = f"{name} (accel: {accel})" if accel else name
        out.append(f"<h4>{escape(label)}</h4>{_kv(facts)}")
    out.append("</section>")

    out.append('<section id="warnings"><h2>Warnings</h2>')
    if doc.warnings:
        out.append('<ul class="warnings">' + "".join(f"<li>{escape(w)}</li>" for w in doc.warnings) + "</ul>")
    else:
        out.append('<p class="ok">No warnings: every cell succeeded and every CoV is within 5%.</p>')
    out.append("</section>")

    out.append('<section id="tables"><h2>Results per workload</h2>')
    out.append(
        "<p>Median with its exact interval (at least 95%; with fewer than 6 repetitions the range, "
        "with its real confidence), number of repetitions and CoV per driver; ratio to the native "
        "(host) median with its 95% bootstrap interval.</p>"
    )
    if not doc.wide:
        out.append("<p>No measured samples in this run.</p>")
    for workload, df in doc.wide.items():
        out.append(f'<h3 id="table-{escape(workload)}">{escape(workload)}</h3>')
        out.append(_table(df.drop(columns=["workload"])))
    if not doc.leakage.empty:
        out.append('<h3 id="leak-score">Leak score</h3>')
        out.append(_table(doc.leakage, numeric=("score", "probes leaking", "probes")))
    out.append('<h3 id="failures">Failed cells</h3>')
    out.append(_table(doc.failures) if not doc.failures.empty else "<p>None.</p>")
    out.append("</section>")

    out.append('<section id="figures"><h2>Figures</h2>')
    for section, heading in SECTIONS.items():
        plots = [p for p in doc.plots if p.section == section]
        if not plots:
            continue
        out.append(f'<h3 id="fig-{section}">{escape(heading)}</h3>')
        for p in plots:
            data = base64.b64encode(p.path.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{escape(p.title)}">'
                f"<figcaption>{escape(p.title)}: {escape(p.caption)}</figcaption></figure>"
            )
    if doc.empty_sections:
        out.append(
            '<p id="no-data">No data in this run for: ' + escape(", ".join(doc.empty_sections)) + ".</p>"
        )
    out.append("</section>")

    out.append('<section id="methods"><h2>Methods</h2>')
    out.append(f"<p>{escape(STATISTICS)}</p>")
    for m in doc.methods:
        out.append(f"<h3>{escape(m.workload)}</h3><p>{escape(m.text)}</p>")
        if m.metrics:
            items = "".join(
                f"<li><code>{escape(metric)}</code> "
                f"({escape(unit or 'no unit')}, {escape(better)} is better)</li>"
                for metric, unit, better in m.metrics
            )
            out.append(f"<p>Metrics:</p><ul>{items}</ul>")
        out.append(f"<p>Drivers: {escape(', '.join(m.drivers))}.</p>")
        if m.tools:
            out.append("<p>Recorded tools: " + escape("; ".join(m.tools)) + ".</p>")
    out.append("</section>")
    out.append("<footer><p>Generated by isobench.</p></footer></body></html>")
    return "\n".join(out) + "\n"
