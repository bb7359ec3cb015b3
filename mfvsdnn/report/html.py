"""Self-contained HTML pages (plots embedded as data: URIs): the compare report and a page builder
that the sweep and scale reports share."""

from __future__ import annotations

import base64
import html

from ..experiment.results import Results
from .tables import compare_tables, family_note, labels, method_text, verdict_text

HTML_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,td:nth-child(2),th:first-child{text-align:left}
figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:560px}
figcaption{font-size:12px;color:#555}img{max-width:100%}
.axis td{background:#eef5fb;font-weight:bold;text-align:left}
code{background:#f6f8fa;padding:1px 4px}
.warnings{background:#fff8c5;border:1px solid #d4a72c;padding:0.2em 1em;margin:1em 0}
.note{font-size:12px;color:#555;max-width:1000px}
table.grouped td:nth-child(2){text-align:right}
td.verdict{white-space:nowrap;font-weight:bold}
th.text{text-align:left}
"""

VERDICT_COLORS = {"agrees": "#1a7f37", "disagrees": "#c0392b", "cannot tell": "#9a6700"}


def figures(plots: dict[str, tuple[str, bytes]]) -> list[str]:
    esc = html.escape
    parts = []
    for name, (caption, png) in plots.items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure id='{esc(name)}'><img alt='{esc(name)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    return parts


def html_page(title: str, intro: str, tables: list[tuple[str, list[str], list[list[str]]]],
              plots: dict[str, tuple[str, bytes]]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{esc(title)}</title>",
             f"<style>{HTML_STYLE}</style></head><body>", f"<h1>{esc(title)}</h1>", f"<p>{esc(intro)}</p>"]
    for name, header, rows in tables:
        parts.append(f"<h2>{esc(name)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    parts += figures(plots)
    parts.append("</body></html>")
    return "\n".join(parts)


def compare_html(results: Results, plots: dict[str, tuple[str, bytes]]) -> str:
    """report.html: warnings, the verdicts, every table, the plots."""
    esc = html.escape
    names = labels(results)
    s = results.settings
    source = esc(str(results.dataset.get("source")))
    compared = [m for m in results.models if m.role in ("model", "pipeline")] or results.models
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>mfvsdnn compare: {source}</title>",
             f"<style>{HTML_STYLE}</style></head><body>",
             f"<h1>{esc(' vs '.join(names[m.name] for m in compared))} on {source}</h1>",
             f"<p>Seed {s.seed}; split fingerprint <code>{esc(results.split['fingerprint'])}</code>; "
             f"{esc(method_text(results))}. Better = higher recall/NDCG, lower cost, leakage closer to the natural "
             "cross-group rate.</p>"]
    if s.command:
        parts.append(f"<p>Reproduce with: <code>{esc(s.command)}</code></p>")
    if results.warnings:
        parts.append("<div class='warnings'><h2>Warnings</h2><ul>"
                     + "".join(f"<li>{esc(w)}</li>" for w in results.warnings) + "</ul></div>")
    if results.verdicts:
        parts.append("<h2>The trade-off table, measured on this data</h2><table><tr><th>row</th>"
                     "<th class='text'>claim</th><th class='text'>evidence from this run</th><th>this data</th></tr>")
        for v in results.verdicts:
            parts.append(f"<tr><td>{esc(v.axis)}</td><td style='text-align:left'>{esc(v.claim)}</td>"
                         f"<td style='text-align:left'>{esc(v.evidence)}</td>"
                         f"<td class='verdict' style='color:{VERDICT_COLORS.get(v.verdict, '#000')}'>"
                         f"{esc(verdict_text(v))}</td></tr>")
        parts.append("</table>")
        note = family_note(results, "verdicts")
        if note:
            parts.append(f"<p class='note'>{esc(note)}</p>")
    for i, table in enumerate(compare_tables(results)):
        header = table.header[1:] if table.grouped else table.header
        table_class = " class='grouped'" if table.grouped else ""
        parts.append(f"<h2>{esc(table.title)}</h2><table{table_class}><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
                     + "</tr>")
        group = None
        for r in table.rows:
            cells = r
            if table.grouped:
                if r[0] != group:
                    group = r[0]
                    parts.append(f"<tr class='axis'><td colspan='{len(header)}'>{esc(group)}</td></tr>")
                cells = r[1:]
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        if table.note:
            parts.append(f"<p class='note'>{esc(table.note)}</p>")
        if i == 0 and plots:
            parts.append("<h2>Plots</h2>")
            parts += figures(plots)
    for note in results.notes:
        parts.append(f"<p>{esc(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
