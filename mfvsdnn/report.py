"""Rendering: rich tables, progress bars, JSON/Markdown/HTML reports. Never computes a metric."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .models.base import ProgressFn


def fmt(x: Any, digits: int = 4) -> str:
    """Human formatting for numbers in tables."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e6):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"
    return str(x)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@contextlib.contextmanager
def progress_bar(description: str, console: Console | None = None) -> Iterator[ProgressFn]:
    """A rich progress bar (on stderr) driven by a model's ``progress(done, total, metrics)`` calls."""
    console = console or Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[metrics]}"), console=console, transient=False,
    ) as prog:
        task = prog.add_task(description, total=None, metrics="")

        def update(done: int, total: int, metrics: dict[str, float]) -> None:
            text = "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
            prog.update(task, completed=done, total=total, metrics=text)

        yield update


def render_info(summary: dict, console: Console) -> None:
    """Tables for ``mfvsdnn info``."""
    t = Table(title=f"Interactions: {summary['source']}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("rows read", fmt(summary["rows_read"]))
    t.add_row("users", fmt(summary["users"]))
    t.add_row("items", fmt(summary["items"]))
    t.add_row("interactions (unique user-item)", fmt(summary["interactions"]))
    t.add_row("density", f"{summary['density']:.3%}")
    ipu = summary["interactions_per_user"]
    t.add_row("interactions per user (min/25/50/75/90/99/max)",
              " / ".join(fmt(ipu[k], 3) for k in ("q0", "q25", "q50", "q75", "q90", "q99", "q100")))
    t.add_row("interactions per user (mean)", fmt(ipu["mean"], 3))
    ipi = summary["interactions_per_item"]
    t.add_row("interactions per item (min/50/99/max)",
              " / ".join(fmt(ipi[k], 3) for k in ("q0", "q50", "q99", "q100")))
    cols = summary["columns"]
    t.add_row("columns used", ", ".join(f"{k.removesuffix('_col')}={v}" for k, v in cols.items()
                                         if v not in (None, [], ",") and k not in ("sep", "min_weight")))
    console.print(t)

    g = summary.get("groups")
    if g:
        gt = Table(title=f"Groups ({g['source']}); natural cross-group rate "
                         f"{g['natural_cross_group_rate']:.1%}", title_justify="left")
        gt.add_column("group")
        for c in ("items", "users", "interactions"):
            gt.add_column(c, justify="right")
        for name, row in g["groups"].items():
            gt.add_row(name, fmt(row["items"]), fmt(row["users"]), fmt(row["interactions"]))
        console.print(gt)
    else:
        console.print("[dim]No group column (item_group / --item-group-col): folding cannot be measured.[/dim]")
    if summary.get("features"):
        ft = Table(title="User features", title_justify="left")
        ft.add_column("feature")
        ft.add_column("distinct values", justify="right")
        for name, row in summary["features"].items():
            ft.add_row(name, fmt(row["cardinality"]))
        console.print(ft)

    s = summary.get("split")
    if s:
        st = Table(title=f"Split (seed {s['config']['seed']}, {s['config']['strategy']}; "
                         f"fingerprint {s['fingerprint']})", show_header=False, title_justify="left")
        st.add_column("what", style="bold")
        st.add_column("value", justify="right")
        st.add_row("warm users (train / evaluated)", f"{fmt(s['warm_users'])} / {fmt(s['warm_eval_users'])}")
        st.add_row("interactions train / valid / test",
                   f"{fmt(s['train_interactions'])} / {fmt(s['valid_interactions'])} / {fmt(s['test_interactions'])}")
        st.add_row("cold users (held out / evaluated)", f"{fmt(s['cold_users'])} / {fmt(s['cold_eval_users'])}")
        st.add_row("cold revealed counts r", ", ".join(str(r) for r in s["config"]["revealed"]))
        st.add_row("cold target interactions", fmt(s["cold_target_interactions"]))
        console.print(st)


def render_make_data(summary: dict, path: str, console: Console) -> None:
    g = summary.get("groups") or {}
    console.print(
        f"[green]wrote[/green] {path}: {summary['rows_written']:,} interactions, {summary['users']:,} users, "
        f"{summary['items']:,} items, {len(g.get('groups', {}))} groups, natural cross-group rate "
        f"{g.get('natural_cross_group_rate', float('nan')):.1%} ({summary['seconds']:.1f} s)"
    )


def render_train(summary: dict, console: Console) -> None:
    """Short summary after train-wals / train-softmax."""
    t = Table(title=f"Trained {summary['kind']}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("run directory", summary["run_dir"] or "(not saved)")
    t.add_row("training time", f"{summary['train_seconds']:.2f} s")
    hist = summary.get("history") or []
    if hist:
        last = hist[-1]
        for key in ("objective", "loss"):
            if key in last:
                t.add_row(f"final {key}", fmt(last[key]))
        if "epoch" in last or "iteration" in last:
            t.add_row("epochs/iterations run", fmt(len(hist)))
    t.add_row("validation recall@20", fmt(summary["valid_recall@20"]))
    t.add_row("seed", fmt(summary["seed"]))
    t.add_row("split fingerprint", summary["split"]["fingerprint"])
    t.add_row("hyper-parameters", ", ".join(f"{k}={v}" for k, v in summary["params"].items()))
    console.print(t)


# ---------------------------------------------------------------------------------------------
# train-wals objective line and recommend (issue 3)


def render_objective(summary: dict, console: Console) -> None:
    """One line: the training objective from the first to the last iteration."""
    hist = [h for h in summary.get("history") or [] if "objective" in h]
    if not hist:
        return
    first, last = hist[0]["objective"], hist[-1]["objective"]
    change = (last - first) / abs(first) if first else float("nan")
    console.print(f"objective {fmt(first)} → {fmt(last)} over {len(hist)} iterations ({change:+.1%})")


def render_recommendations(result: dict, console: Console) -> None:
    """Table for ``mfvsdnn recommend --user`` / ``--history``."""
    q = result["query"]
    if "user" in q:
        title = f"Top {result['k']} for user {q['user']} ({q['known_items']} known items excluded)"
    else:
        feats = ", ".join(f"{k}={v}" for k, v in q["features"].items())
        title = f"Top {result['k']} for a new user (history: {len(q['history'])} items" + \
            (f"; {feats}" if feats else "") + ")"
    t = Table(title=f"{title} — {result['kind']} run {result['run']}", title_justify="left")
    t.add_column("rank", justify="right")
    t.add_column("item id")
    t.add_column("score", justify="right")
    recs = result["recommendations"]
    groups = any("item_group" in r for r in recs)
    if groups:
        t.add_column("item group")
    for r in recs:
        row = [str(r["rank"]), r["item_id"], f"{r['score']:.4f}"]
        if groups:
            row.append(str(r.get("item_group") or "—"))
        t.add_row(*row)
    console.print(t)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def render_recommend_all(summary: dict, console: Console) -> None:
    """One line after ``mfvsdnn recommend --all``."""
    console.print(f"[green]wrote[/green] {summary['path']}: {summary['rows']:,} rows (top {summary['k']} for "
                  f"{summary['users']:,} training users) in {summary['seconds']:.1f} s", highlight=False)
# end of recommend rendering (issue 3)
