"""report.md: the compare report's tables and the trade-off verdicts in Markdown."""

from __future__ import annotations

from ..experiment.results import Results, Verdict
from .tables import compare_tables, labels


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def tradeoff_markdown(verdicts: list[Verdict]) -> list[str]:
    if not verdicts:
        return []
    lines = ["## The trade-off table, measured on this data", "", "| row | claim | evidence from this run | this data |",
             "|---|---|---|---|"]
    lines += [f"| {v.axis} | {md_escape(v.claim)} | {md_escape(v.evidence)} | **{v.verdict}** |" for v in verdicts]
    return lines + [""]


def compare_markdown(results: Results) -> str:
    """report.md: the same tables as the terminal and HTML reports."""
    names = labels(results)
    s = results.settings
    lines = [f"# {' vs '.join(names[m.name] for m in results.models)} on {results.dataset.get('source')}", "",
             f"Seed {s.seed}; split fingerprint `{results.split['fingerprint']}`. Intervals are 95% bootstrap "
             f"intervals over users ({s.bootstrap} resamples); differences are paired over the same users.", ""]
    if s.command:
        lines += ["Reproduce with:", "", "```", s.command, "```", ""]
    for title, header, rows in compare_tables(results):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
        lines.append("")
    lines += tradeoff_markdown(results.verdicts)
    lines += [f"- {md_escape(n)}" for n in results.notes]
    return "\n".join(lines) + "\n"
