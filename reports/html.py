"""The single-file HTML report: no scripts, no external resources, PNGs embedded as data: URIs.

Everything that comes from results (metadata, params, error texts) is untrusted and goes through
``html.escape``; the only markup is the one written here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

import pandas as pd

from .document import Document
from .headline import HELD_BACK_NOTE, Figure
from .methods import STATISTICS
from .plots import SECTIONS
from .tables import detail_table, fmt
from .units import NA, unit_label

__all__ = ["page_head", "png_figure", "render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1220px;padding:.5em 1em;color:#222;line-height:1.35}
h1{font-size:1.45em;margin:.3em 0 .1em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.sub{color:#555;margin:0 0 .6em;font-size:.9em}
table{border-collapse:collapse;margin:.4em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .45em;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.grid{width:auto;min-width:40%}table.headline{width:100%}
.caption{margin:.8em 0 0;font-size:.9em}
table.grid td{text-align:right;font-variant-numeric:tabular-nums;white-space:normal}
table.grid tbody th{white-space:nowrap;font-weight:600}
table.grid td b{display:block;font-weight:600;white-space:nowrap}
table.grid small,table.grid th small{display:block;color:#555;font-size:.82em;font-weight:normal}
table.headline{font-size:.88em}table.headline thead th{font-size:.92em}
.v-better{background:#dcf2e1}.v-worse{background:#fadcd9}.v-same{background:#fff}
.v-baseline{background:#f3f3f3}.v-unsure,.v-none{background:#fff}
.legend span{padding:0 .35em;border:1px solid #ccc}
.legend,.params{font-size:.82em;color:#444;margin:.2em 0 .5em}
.findings{margin:.4em 0;padding-left:1.2em;font-size:.93em}.findings li{margin:.1em 0}
.warning{background:#fff4e5;border:1px solid #f0a030;padding:.3em .8em;margin:.3em 0}
details.warning summary{cursor:pointer}.ok{color:#2a7}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
nav{margin:.8em 0}nav a{margin-right:1em}.kv td:first-child{font-family:monospace;white-space:nowrap}
.scroll{overflow-x:auto}
@media (max-width:1180px){table.grid td b{white-space:normal}table.grid th{overflow-wrap:anywhere}
table.headline{font-size:.8em}}details>summary{cursor:pointer;color:#135}
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


def _figure_cell(fig: Figure | None) -> str:
    if fig is None:
        return f'<td class="v-none">{NA}</td>'
    detail = f"<small>{escape(fig.detail)}</small>" if fig.detail else ""
    return f'<td class="v-{fig.verdict}" title="{escape(fig.tip)}"><b>{escape(fig.text)}</b>{detail}</td>'


def _grid(rows: Iterable[tuple[str, Iterable[Figure | None]]], head: str, cls: str = "grid") -> str:
    body = "".join(
        f"<tr><th>{escape(label)}</th>" + "".join(_figure_cell(f) for f in figs) + "</tr>"
        for label, figs in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_LEGEND = (
    '<p class="legend"><span class="v-better">better than native</span> '
    '<span class="v-worse">worse than native</span> '
    '<span class="v-same">no significant difference</span> '
    "(95% interval of the ratio includes 1, exact rank test p &ge; 0.05, or under 5%); uncoloured: not "
    "compared, or too few repetitions to tell (n=1, or 3 against 3). Small "
    "print: the median's interval (&plusmn; share of the median; the range at n&le;5) and the ratio to "
    "native (&times;); hover for exact bounds.</p>"
)


def _headline(doc: Document) -> str:
    h = doc.headline
    out = ['<section id="headline">', f"<h1>{escape(doc.heading)}</h1>"]
    out.append(f'<p class="sub">{escape(doc.subtitle())}</p>')
    if not h.empty:  # else the findings below say why there is none (and what the run did measure)
        head = "<th>driver</th>" + "".join(
            f'<th title="{escape(q.params)}">{escape(q.title)}'
            + (f"<small>n={h.n_text(q.key)}</small>" if h.n_text(q.key) else "")
            + "</th>"
            for q in h.questions
        )
        rows = [(h.label(d), [h.figure(d, q.key) for q in h.questions]) for d in h.drivers]
        out.append(_grid(rows, head, "grid headline"))
        out.append(_LEGEND)
        if h.footnote():
            out.append(f'<p class="legend">{escape(h.footnote())}</p>')
    out.append('<ul class="findings">' + "".join(f"<li>{escape(f)}</li>" for f in doc.findings) + "</ul>")
    if not h.empty:
        out.append(
            '<p class="params">'
            + " &middot; ".join(f"<b>{escape(q.title)}</b>: {escape(q.params)}" for q in h.questions)
            + "</p>"
        )
    out.append("</section>")
    return "".join(out)


_VERDICT_CLASS = {"faster": "v-better", "slower": "v-worse", "no significant change": "v-same"}


def _ab(doc: Document) -> str:
    """An A/B run's answer, right under the headline: what each configuration changed."""
    out = []
    for view in doc.ab:
        head = "".join(f"<th>{escape(h)}</th>" for h in view.header())
        body = []
        for c in view.rows():
            texts = view.cells(c)
            cls = _VERDICT_CLASS.get(c.verdict, "v-none")
            tds = "".join(f"<td>{escape(t)}</td>" for t in texts[2:-1])
            body.append(
                f"<tr><th>{escape(texts[0])}</th><th>{escape(texts[1])}</th>{tds}"
                f'<td class="{cls}">{escape(texts[-1])}</td></tr>'
            )
        table = (
            f'<table class="grid ab"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            if body
            else "<p>No figure was compared.</p>"
        )
        out.append(
            f'<section id="ab-{escape(view.other)}"><h2>{escape(view.title)}</h2>{table}'
            f'<p class="legend">{escape(view.legend())}</p></section>'
        )
    return "".join(out)


def _fleet(doc: Document) -> str:
    """Each host's headline figure side by side, coloured against that host's own native."""
    if doc.fleet is None:
        return ""
    f = doc.fleet
    head = "<th>driver &middot; question</th>" + "".join(f"<th>{escape(h)}</th>" for h in f.hosts)
    rows = [(f"{d} \u00b7 {q}", figs) for d, q, figs in f.rows()]
    return (
        '<section id="fleet"><h2>Fleet: the same figure on every host</h2>'
        f'<p class="legend">{len(f.hosts)} hosts; each ratio is to the native baseline measured on the same '
        "host (never across hosts), coloured as in the headline. <code>tables/fleet.csv</code> has it as "
        "text.</p>" + _grid(rows, head, "grid") + "</section>"
    )


def _warnings(doc: Document) -> str:
    out = ['<section id="warnings"><h2>Warnings</h2>']
    if not doc.warning_groups:
        out.append('<p class="ok">No warnings: every cell succeeded and every CoV is within 5%.</p>')
    for g in doc.warning_groups:
        line = f'<p class="warning">{escape(g.line)}</p>'
        if g.items:
            items = "".join(f"<li>{escape(i)}</li>" for i in g.items)
            line = f'<details class="warning"><summary>{escape(g.line)}</summary><ul>{items}</ul></details>'
        out.append(line)
    out.append("</section>")
    return "".join(out)


#: The workloads with a table section of their own: (its anchor, its heading).
_OWN_SECTION = {
    "leakage": ("leak-score", "Leak score"),
    "limits": ("limits", "Limit fidelity: requested vs delivered"),
    "escape": ("escape", "Escape battery"),
}
#: The figure section that shows a workload, where it is not the workload's own name.
_FIGURE_OF = {"idle-memory": "memory"}


def _see_also(doc: Document, workload: str) -> list[str]:
    """Links to where else the report shows ``workload``: its own table section (limits, escape,
    leak score) and its figures. Density and limits put everything there, so their per-workload
    entry would otherwise hold only the collapsed table of every figure."""
    tables = {"leakage": doc.leakage, "limits": doc.limits, "escape": doc.escape}
    links = []
    if workload in _OWN_SECTION and not tables[workload].empty:
        anchor, heading = _OWN_SECTION[workload]
        links.append(f'<a href="#{anchor}">{escape(heading)}</a>')
    section = _FIGURE_OF.get(workload, workload)
    if section in SECTIONS and any(p.section == section for p in doc.plots):
        links.append(f'<a href="#fig-{section}">{escape(SECTIONS[section])} (figures)</a>')
    if any(p.section == "ratios" and p.path.stem == f"ratio-{workload}" for p in doc.plots):
        links.append('<a href="#fig-ratios">Relative to native (figures)</a>')
    return links


def _tables(doc: Document) -> str:
    out = ['<section id="tables"><h2>Results per workload</h2>']
    out.append(
        "<p>Per workload, drivers as rows: the median with its interval and the ratio to native in "
        "small print, coloured as in the headline; parameters every column shares are stated once "
        "under the heading. Every metric (start-up phases, single probes, memory parts) is in the "
        "collapsed table under each workload.</p>"
    )
    if not doc.wide:
        out.append("<p>No measured samples in this run.</p>")
    for workload in doc.wide:
        out.append(f'<h3 id="table-{escape(workload)}">{escape(workload)}</h3>')
        for t in doc.grids.get(workload, []):
            if t.title or t.params:
                title = f"<b>{escape(t.title)}</b>" if t.title else ""
                sep = " \u2014 " if t.title and t.params else ""
                out.append(f'<p class="caption">{title}{sep}{escape(t.params)}</p>')
            head = "<th>driver</th>" + "".join(f"<th>{escape(c)}</th>" for c in t.columns)
            out.append(_grid(t.rows, head))
        if any(
            f is not None and f.held_back for t in doc.grids.get(workload, []) for _, fs in t.rows for f in fs
        ):
            out.append(f'<p class="legend">{escape(HELD_BACK_NOTE)}</p>')
        if links := _see_also(doc, workload):
            out.append('<p class="legend">See also: ' + " \u00b7 ".join(links) + ".</p>")
        detail = detail_table(doc.summary[doc.summary["workload"] == workload])
        out.append(
            f"<details><summary>every figure of {escape(workload)} ({len(detail)} rows)</summary>"
            + _table(detail, numeric=("n",))
            + "</details>"
        )
    if not doc.leakage.empty:
        out += _own_table(
            "leakage",
            "The weighted share of the scored probes that leak. A probe that could not run here "
            "and a channel whose series could not decide (too short, constant, or following the load "
            "short of r &ge; 0.8 with p &lt; 0.01) are named, not scored: neither counts as closed. "
            "The interval is the lowest and highest score those probes and the channels near their "
            "threshold (r's 95% interval reaches another verdict) allow; two configurations whose "
            "intervals overlap are not ranked apart by this run.",
            doc.leakage,
            ("score", "probes leaking", "probes"),
        )
    if not doc.limits.empty:
        out += _own_table(
            "limits",
            "The same requests to every driver (the limits workload); ratio = delivered / "
            "requested: about \u00d71 is a limit held, well above it no limit at all. A CPU share "
            "below the quota with the host busy is the host's contention, not the limit. The pids and "
            "memory rows say how the host (a probe's worst latency) and a neighbour sandbox of the "
            "same driver (its loop's pace vs alone) fared meanwhile.",
            doc.limits,
            ("n",),
        )
    if not doc.escape.empty:
        out += _own_table(
            "escape",
            "Each known escape primitive tried from inside every driver's sandbox against a canary "
            "the host planted (never the host itself): open = the sandbox reached the canary or holds "
            "the permission that is the whole attack; blocked = it did not; n/a = no host meaning "
            "here (the sandbox runs its own kernel, this kernel lacks the feature, no volume); error "
            "= it could not be tried. The host driver is the baseline with no isolation.",
            doc.escape,
            ("open",),
        )
        out.append(
            "<details><summary>evidence for every cell</summary>" + _table(doc.escape_evidence) + "</details>"
        )
    out.append('<h3 id="failures">Failed cells</h3>')
    out.append(_table(doc.failures) if not doc.failures.empty else "<p>None.</p>")
    out.append("</section>")
    return "".join(out)


def _own_table(key: str, intro: str, table: pd.DataFrame, numeric: Sequence[str]) -> list[str]:
    """A section's own table under its heading (``_OWN_SECTION``) and one paragraph (HTML) on how
    to read it."""
    anchor, heading = _OWN_SECTION[key]
    return [f'<h3 id="{anchor}">{heading}</h3>', f"<p>{intro}</p>", _table(table, numeric=numeric)]


def _figures(doc: Document) -> str:
    out = ['<section id="figures"><h2>Figures</h2>']
    for section, heading in SECTIONS.items():
        plots = [p for p in doc.plots if p.section == section]
        if not plots:
            continue
        out.append(f'<h3 id="fig-{section}">{escape(heading)}</h3>')
        for p in plots:
            out.append(png_figure(p.path, p.title, f"{p.title}: {p.caption}"))
    if doc.empty_sections:
        out.append(
            '<p id="no-data">No data in this run for: ' + escape(", ".join(doc.empty_sections)) + ".</p>"
        )
    out.append("</section>")
    return "".join(out)


def _methods(doc: Document) -> str:
    out = ['<section id="methods"><h2>Methods</h2>', f"<p>{escape(STATISTICS)}</p>"]
    for m in doc.methods:
        out.append(f"<h3>{escape(m.workload)}</h3><p>{escape(m.text)}</p>")
        if m.metrics:
            items = "".join(
                f"<li><code>{escape(metric)}</code> "
                f"({escape(unit_label(unit) if unit else 'no unit')}, {escape(better)} is better)</li>"
                for metric, unit, better in m.metrics
            )
            out.append(f"<details><summary>{len(m.metrics)} metrics</summary><ul>{items}</ul></details>")
        out.append(f"<p>Drivers: {escape(', '.join(m.drivers))}.</p>")
        if m.tools:
            out.append("<p>Recorded tools: " + escape("; ".join(m.tools)) + ".</p>")
    out.append("</section>")
    return "".join(out)


def _metadata(doc: Document) -> str:
    out = [
        '<section id="metadata"><h2>Run and host</h2><details><summary>run, host and driver metadata</summary>'
    ]
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
    out.append("</details></section>")
    return "".join(out)


def page_head(title: str, css: str) -> list[str]:
    """The opening lines of a single-file page (report.html, history.html) up to ``<body>``. No
    scripts, no remote loads: the file must work offline and cannot run injected code."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title><style>{css}</style></head><body>",
    ]


def png_figure(path: Path, alt: str, caption: str, *, figure_id: str | None = None) -> str:
    """A PNG embedded in the page (a data: URI, which the page's policy allows) with its caption;
    ``alt`` and ``caption`` are escaped here."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    id_attr = f' id="{escape(figure_id)}"' if figure_id else ""
    return (
        f'<figure{id_attr}><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def render_html(doc: Document) -> str:
    head = page_head(doc.title, _CSS)
    nav = (
        '<nav><a href="#warnings">Warnings</a><a href="#tables">Tables</a><a href="#figures">Figures</a>'
        '<a href="#methods">Methods</a><a href="#metadata">Run and host</a></nav>'
    )
    body = [
        _headline(doc),
        _ab(doc),
        _fleet(doc),
        nav,
        _warnings(doc),
        _tables(doc),
        _figures(doc),
        _methods(doc),
        _metadata(doc),
    ]
    tail = "<footer><p>Generated by isobench.</p></footer></body></html>"
    return "\n".join([*head, *body, tail]) + "\n"
