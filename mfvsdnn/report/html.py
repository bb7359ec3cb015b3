"""Self-contained HTML pages (plots embedded as data: URIs): the compare report and a page builder
that the sweep and scale reports share.

Numbers are right-aligned (tabular figures, so digits line up), prose is left-aligned, and text written
with Markdown's backticks (`--w0`) is set as code rather than shown with its backticks."""

from __future__ import annotations

import base64
import html
import re

from ..experiment.results import Results
from .tables import compare_tables, family_note, labels, method_text, verdict_text

HTML_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#222;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
th{min-width:4em}.ci{display:block;font-size:11px;color:#555}
td.prose{max-width:520px}
figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:100%}
figcaption{font-size:13px;color:#444;max-width:640px}img{max-width:100%;height:auto}
.axis td{background:#eef5fb;font-weight:bold}
code{background:#f6f8fa;padding:1px 4px;overflow-wrap:anywhere}
.warnings{background:#fff8c5;border:1px solid #d4a72c;padding:0.2em 1em;margin:1em 0}
.note{font-size:13px;color:#444;max-width:1000px}
td.verdict{white-space:nowrap;font-weight:bold}
"""

VERDICT_COLORS = {"agrees": "#1a7f37", "disagrees": "#c0392b", "cannot tell": "#9a6700"}

# a table cell is a number when, once units and the marks around figures are removed, only digits and
# number punctuation are left ("0.41 [0.38, 0.44]", "+0.07 p < 1e-6, adj. < 1e-6", "266.2 KiB", "—")
_UNITS = re.compile(r"\badj\.|\b(?:KiB|MiB|GiB|B|ms|s|n/a|p|x)\b|±|—|–|−|×|≈|≤|≥|<|>|=|%|\*|†")
_EXPONENT = re.compile(r"(?<=\d)[eE](?=[+\-]?\d)")
_NUMBERISH = re.compile(r"[\s\d.,+\-\[\]()/:;]*")
_BACKTICKS = re.compile(r"`([^`]+)`")


def is_number(text: str) -> bool:
    """True for a cell that holds a figure (with its interval, p-value or unit), False for words."""
    text = text.strip()
    if not text or not any(c.isdigit() for c in text) and text not in ("—", "n/a"):
        return text in ("—", "n/a")
    return _NUMBERISH.fullmatch(_UNITS.sub(" ", _EXPONENT.sub("0", text))) is not None


def prose(text: str) -> str:
    """Escaped text with `backticked` spans set as <code> (no literal backtick reaches the page)."""
    escaped = html.escape(str(text))
    return _BACKTICKS.sub(r"<code>\1</code>", escaped).replace("`", "")


_INTERVAL = re.compile(r"^(\S+)\s+(\[.*)$")


def cell(text: str) -> str:
    """A table cell; a figure's interval and test go on a second, smaller line (tables stay narrow)."""
    if is_number(text):
        parts = _INTERVAL.match(text.strip())
        body = (f"{prose(parts.group(1))}<span class='ci'>{prose(parts.group(2))}</span>" if parts
                else prose(text))
        return f"<td class='num'>{body}</td>"
    return f"<td class='{'prose' if len(text) > 40 else 'text'}'>{prose(text)}</td>"


def table_html(header: list[str], rows: list[list[str]], group_rows: bool = False) -> str:
    """One table; a header cell is right-aligned when every value under it is a number. With
    ``group_rows`` the first value of each row is a group heading spanning the row (when it changes)."""
    body = [r[1:] for r in rows] if group_rows else rows
    numeric = [bool(col) and all(is_number(c) for c in col if c) and any(c for c in col)
               for col in (list(x) for x in zip(*body, strict=True))] if body else []
    head = "".join(f"<th class='{'num' if i < len(numeric) and numeric[i] else 'text'}'>{prose(h)}</th>"
                   for i, h in enumerate(header))
    parts = [f"<table><tr>{head}</tr>"]
    group = None
    for r, cells in zip(rows, body, strict=True):
        if group_rows and r[0] != group:
            group = r[0]
            parts.append(f"<tr class='axis'><td colspan='{len(header)}'>{prose(group)}</td></tr>")
        parts.append("<tr>" + "".join(cell(c) for c in cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def figures(plots: dict[str, tuple[str, bytes]]) -> list[str]:
    esc = html.escape
    parts = []
    for name, (caption, png) in plots.items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure id='{esc(name)}'><img alt='{esc(caption)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption>{prose(caption)}</figcaption></figure>")
    return parts


def page_head(title: str) -> list[str]:
    return ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{html.escape(title)}</title>", f"<style>{HTML_STYLE}</style></head><body>"]


def html_page(title: str, intro: str, tables: list[tuple[str, list[str], list[list[str]]]],
              plots: dict[str, tuple[str, bytes]]) -> str:
    parts = page_head(title) + [f"<h1>{prose(title)}</h1>", f"<p>{prose(intro)}</p>"]
    for name, header, rows in tables:
        parts += [f"<h2>{prose(name)}</h2>", table_html(header, rows)]
    parts.append("<h2>Plots</h2>")
    parts += figures(plots)
    parts.append("</body></html>")
    return "\n".join(parts)


def verdicts_html(results: Results) -> list[str]:
    parts = ["<h2>The trade-off table, measured on this data</h2><table><tr><th class='text'>row</th>"
             "<th class='text'>claim</th><th class='text'>evidence from this run</th><th class='text'>this data</th>"
             "</tr>"]
    for v in results.verdicts:
        parts.append(f"<tr><td class='text'>{prose(v.axis)}</td><td class='prose'>{prose(v.claim)}</td>"
                     f"<td class='prose'>{prose(v.evidence)}</td>"
                     f"<td class='verdict' style='color:{VERDICT_COLORS.get(v.verdict, '#000')}'>"
                     f"{prose(verdict_text(v))}</td></tr>")
    parts.append("</table>")
    note = family_note(results, "verdicts")
    if note:
        parts.append(f"<p class='note'>{prose(note)}</p>")
    return parts


def compare_html(results: Results, plots: dict[str, tuple[str, bytes]]) -> str:
    """report.html: the verdicts first, then the warnings, the settings, every table and the plots."""
    names = labels(results)
    s = results.settings
    source = str(results.dataset.get("source"))
    compared = [m for m in results.models if m.role in ("model", "pipeline")] or results.models
    parts = page_head(f"mfvsdnn compare: {source}")
    parts.append(f"<h1>{prose(' vs '.join(names[m.name] for m in compared))} on {prose(source)}</h1>")
    if results.verdicts:
        parts += verdicts_html(results)
    if results.warnings:
        parts.append("<div class='warnings'><h2>Warnings</h2><ul>"
                     + "".join(f"<li>{prose(w)}</li>" for w in results.warnings) + "</ul></div>")
    parts.append(f"<p>Seed {s.seed}; split fingerprint <code>{html.escape(results.split['fingerprint'])}</code>; "
                 f"{prose(method_text(results))}. Better = higher recall/NDCG, lower cost, leakage closer to the "
                 "natural cross-group rate.</p>")
    if s.command:
        parts.append(f"<p>Reproduce with: <code>{html.escape(s.command)}</code></p>")
    for i, table in enumerate(compare_tables(results)):
        header = table.header[1:] if table.grouped else table.header
        parts += [f"<h2>{prose(table.title)}</h2>", table_html(header, table.rows, group_rows=table.grouped)]
        if table.note:
            parts.append(f"<p class='note'>{prose(table.note)}</p>")
        if i == 0 and plots:
            parts.append("<h2>Plots</h2>")
            parts += figures(plots)
    for note in results.notes:
        parts.append(f"<p>{prose(note)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
