"""Render the README's performance table from the summaries ``make bench`` wrote.

    .venv/bin/python scripts/perf_table.py reports/bench            # prints the markdown table

Each ``*.json`` in the folder is one benchmark's ``--summary`` output (benchmarks/bench_summary.py):
rows of what / result / goal / met, the command, seconds and load average. The table is stamped with
the date, this machine's CPU model and core count, and the total benchmark time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

ORDER = ("wals", "softmax", "eval", "ann")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def verdict(met: bool | None) -> str:
    return {True: "**met**", False: "**not met**"}.get(met, "—")


def render(folder: str) -> str:
    names = sorted((f for f in os.listdir(folder) if f.endswith(".json")),
                   key=lambda f: (ORDER.index(f[:-5]) if f[:-5] in ORDER else len(ORDER), f))
    if not names:
        raise SystemExit(f"{folder}: no benchmark summaries (*.json); run make bench first")
    docs = []
    for name in names:
        with open(os.path.join(folder, name)) as f:
            docs.append(json.load(f))
    total = sum(d["seconds"] for d in docs)
    loads = [d["load_average"] for d in docs]
    dates = sorted(d["finished"] for d in docs)
    out = [f"Measured by `make bench` on {dates[-1][:10]} ({cpu_model()}, {os.cpu_count()} cores); "
           f"{total / 60:.1f} minutes in all, load average {min(loads):.1f}–{max(loads):.1f} at the end of each "
           "script.", "",
           "| what | command | result (ratios measured in the same run) | goal | |",
           "|---|---|---|---|---|"]
    for d in docs:
        for row in d["rows"]:
            out.append(f"| {row['what']} | `{d['command']}` | {row['result']} | {row['goal']} | {verdict(row.get('met'))} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    args = ap.parse_args()
    if not os.path.isdir(args.folder):
        print(f"{args.folder}: not a folder", file=sys.stderr)
        raise SystemExit(1)
    sys.stdout.write(render(args.folder))


if __name__ == "__main__":
    main()
