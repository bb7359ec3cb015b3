"""The one-row summary every benchmark can write beside its printed output (``--summary FILE``).

A row is what the README's performance table shows: what was measured, the command, the result (the
ratios against the floor and peer measured in the same run), the goal and whether it was met.
``scripts/perf_table.py`` turns a folder of them into that table, stamped with the date, the CPU and
the load average, so ``make bench`` regenerates the table instead of anyone copying numbers by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", metavar="FILE", default=None,
                        help="also write the README performance-table row(s) as JSON to FILE")


def command_line() -> str:
    """The command that produced this run, as a user would type it (``--summary`` left out)."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--summary":
            skip = True
            continue
        if a.startswith("--summary="):
            continue
        args.append(a)
    script = os.path.join("benchmarks", os.path.basename(sys.argv[0]))
    return " ".join([".venv/bin/python", script, *map(shlex.quote, args)])


def write(path: str | None, rows: list[dict], started: float) -> None:
    """Write ``rows`` (each: what, result, goal, met: True/False/None) with the command, the run's
    seconds and the load average, atomically (the folder is the caller's, e.g. reports/bench)."""
    if not path:
        return
    doc = {"schema": 1, "command": command_line(), "seconds": round(time.perf_counter() - started, 1),
           "load_average": round(os.getloadavg()[0], 2), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "rows": rows}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".summary-", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
