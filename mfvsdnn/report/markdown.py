"""report.md: the compare report's tables and the trade-off verdicts in Markdown."""

from __future__ import annotations

from ..experiment.results import Results, Verdict
from .tables import compare_tables, family_note, labels, method_text, verdict_text


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def tradeoff_markdown(verdicts: list[Verdict], note: str = "") -> list[str]:
    if not verdicts:
        return []
    lines = ["## The trade-off table, measured on this data", "", "| row | claim | evidence from this run | this data |",
             "|---|---|---|---|"]
    lines += [f"| {v.axis} | {md_escape(v.claim)} | {md_escape(v.evidence)} | **{verdict_text(v)}** |"
              for v in verdicts]
    return lines + [""] + ([note, ""] if note else [])


def warnings_markdown(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    return ["## Warnings", ""] + [f"- **{md_escape(w)}**" for w in warnings] + [""]


def compare_markdown(results: Results) -> str:
    """report.md: the same tables as the terminal and HTML reports."""
    names = labels(results)
    s = results.settings
    compared = [m for m in results.models if m.role in ("model", "pipeline")] or results.models
    lines = [f"# {' vs '.join(names[m.name] for m in compared)} on {results.dataset.get('source')}", "",
             f"Seed {s.seed}; split fingerprint `{results.split['fingerprint']}`. {method_text(results)}.", ""]
    if s.command:
        lines += ["Reproduce with:", "", "```", s.command, "```", ""]
    lines += warnings_markdown(results.warnings)
    lines += tradeoff_markdown(results.verdicts, family_note(results, "verdicts"))
    for table in compare_tables(results):
        lines += [f"## {table.title}", "", "| " + " | ".join(md_escape(h) for h in table.header) + " |",
                  "|" + "---|" * len(table.header)]
        lines += ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in table.rows]
        lines.append("")
        if table.note:
            lines += [table.note, ""]
    lines += [f"- {md_escape(n)}" for n in results.notes]
    return "\n".join(lines) + "\n"
