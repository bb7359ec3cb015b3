"""Terminal output of ``mfvsdnn datasets``: the catalogue table, a download bar, the licence and the
result of a fetch (reads what the library returns; computes nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ..core.progress import ProgressFn


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def render_list(doc: dict, console: Console) -> None:
    t = Table(title=f"Data sets (cache: {doc['dir']})", title_justify="left")
    for c in ("name", "download", "interactions", "licence", "groups", "user features", "SHA-256", "cached"):
        t.add_column(c, overflow="fold")
    for d in doc["datasets"]:
        t.add_row(d["name"], _size(d["archive_bytes"]), d["interactions"], d["licence"], d["groups"],
                  d["features"], "published" if d["sha256"] else "first use", "yes" if d["cached"] else "no")
    console.print(t)
    console.print("Fetch one with: mfvsdnn datasets fetch NAME [--dir DIR]", highlight=False)


def render_terms(entry: object, console: Console) -> None:
    """The licence, printed before anything is downloaded."""
    console.print(f"[bold]{escape(entry.title)}[/bold] from {escape(entry.url)}", highlight=False)  # type: ignore[attr-defined]
    console.print(f"Terms: {escape(entry.terms)}", highlight=False, soft_wrap=True)  # type: ignore[attr-defined]


def render_trust(sha256: str, console: Console) -> None:
    console.print(f"No published SHA-256 to check against: this download's SHA-256 is {sha256}; it is recorded "
                  "in the cache and every later use is checked against it.", highlight=False, soft_wrap=True)


def render_fetch(record: dict, console: Console) -> None:
    state = "already in the cache, checked" if record["cached"] else "downloaded, checked and converted"
    console.print(f"{record['name']}: {state}: {record['path']} ({record['rows']:,} rows; archive SHA-256 "
                  f"{record['archive_sha256']}, checked against {record['sha256_checked_against']})",
                  highlight=False, soft_wrap=True)
    console.print("Compare the two models on it with:", highlight=False)
    console.print(f"  {record['compare']}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def download_bar(description: str, console: Console | None = None) -> Iterator[ProgressFn]:
    """A byte-counting rich progress bar (on stderr); the total comes from Content-Length."""
    console = console or Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as prog:
        task = prog.add_task(escape(description), total=None)

        def update(done: int, total: int, metrics: dict[str, float]) -> None:
            prog.update(task, completed=done, total=total or None)

        yield update
