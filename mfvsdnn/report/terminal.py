"""Terminal output: progress bars and the rich tables of info, make-data, train, recommend."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from ..core.progress import ProgressFn
from ..experiment.results import WARM, PopulationId, Results, Verdict
from .format import fmt, fmt_ci, fmt_value
from .tables import (
    MAIN_ROLES,
    better_significance_parts,
    family_note,
    fmt_p_pair,
    folding_order,
    folding_test,
    labels,
    method_text,
    model_label,
    ordered_models,
    row_label,
    seed_spread_shown,
    tuning_summary,
    verdict_text,
)


class TrimmedStream:
    """A text stream without the trailing spaces rich pads table, panel and title lines with, when it is
    not a terminal: piped output then has none. A terminal gets the text unchanged."""

    _TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)(?=\n)")

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._pending = ""  # spaces at the end of the last write: trailing only if a newline follows
        isatty = getattr(stream, "isatty", None)
        self._terminal = bool(isatty and isatty())

    def isatty(self) -> bool:
        return self._terminal

    def write(self, text: str) -> int:
        if self._terminal:
            return self.stream.write(text)
        joined = self._pending + text
        body = joined.rstrip(" ")
        self._pending = joined[len(body):]
        self.stream.write(self._TRAILING.sub(r"\1", body))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer... of the stream itself
        return getattr(self.stream, name)


@contextlib.contextmanager
def progress_bar(description: str, console: Console | None = None) -> Iterator[ProgressFn]:
    """A rich progress bar (on stderr) driven by a model's ``progress(done, total, metrics)`` calls.

    The bar appears at the first call, which brings the total: it never shows "0/?", and a command that
    refuses its input before any step has run prints its error alone.
    """
    console = console or Console(stderr=True)
    prog: Progress | None = None
    task: Any = None

    def update(done: int, total: int, metrics: dict[str, float]) -> None:
        nonlocal prog, task
        text = "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
        if prog is None:
            # at 80 columns the bar shrinks and long texts wrap at spaces: counts, times and numbers
            # are never cut ("0:…")
            narrow = console.width < 100
            prog = Progress(TextColumn("[bold]{task.description}", table_column=Column(ratio=2, overflow="fold")),
                            BarColumn(bar_width=None if narrow else 40, table_column=Column(ratio=1, min_width=5)),
                            MofNCompleteColumn(table_column=Column(no_wrap=True)),
                            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                            TextColumn("{task.fields[metrics]}", table_column=Column(ratio=3, overflow="fold")),
                            console=console, transient=False, expand=narrow)
            prog.start()
            task = prog.add_task(description, total=total, metrics=text)
        prog.update(task, completed=done, total=total, metrics=text)

    try:
        yield update
    finally:
        if prog is not None:
            prog.stop()


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
    for what, side in (summary.get("side_tables") or {}).items():
        console.print(f"{side['option']} {side['path']}: {fmt(side['rows'])} rows; "
                      f"{fmt(side['ids_not_in_interactions'])} ids not in the interactions (ignored); "
                      f"{fmt(side[f'{what}s_without_row'])} {what}s without a row")
    sug = summary.get("suggestions") or {}
    if sug.get("item_groups"):
        gt = Table(title="Columns that could serve as item groups", title_justify="left")
        for c in ("column", "values", "natural cross-group rate", "random's", "folding visible", "options"):
            gt.add_column(c, justify="right" if c in ("values", "natural cross-group rate", "random's") else "left")
        for row in sug["item_groups"]:
            gt.add_row(row["column"], fmt(row["values"]), f"{row['natural_cross_group_rate']:.1%}",
                       f"{row['random_cross_group_rate']:.1%}",
                       "yes" if row["folding_visible"] else "no: too close to random's", row["options"])
        console.print(gt)
    if sug.get("user_features"):
        ut = Table(title="Columns that could serve as user features", title_justify="left")
        for c in ("column", "file", "values", "users without a value"):
            ut.add_column(c, justify="right" if c in ("values", "users without a value") else "left")
        for row in sug["user_features"]:
            ut.add_row(row["column"], row["file"], fmt(row["values"]), fmt(row["users_without_value"]))
        console.print(ut)
        console.print(f"to use them: {sug['user_features_options']}")
    if sug.get("rule"):
        console.print(f"[dim]{sug['rule']}[/dim]")

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


def best_epoch_row(summary: dict) -> dict | None:
    """The history row of the epoch whose parameters training kept (early stopping restores the best
    epoch), or None when the model keeps its last iteration (WALS) or the best epoch is unknown."""
    best = summary.get("best_epoch")
    hist = summary.get("history") or []
    return next((h for h in hist if h.get("epoch") == best), None) if best else None


def best_epoch_line(summary: dict) -> str | None:
    """"best epoch 17 restored: valid recall 0.4262" when training ran past the epoch it kept."""
    row = best_epoch_row(summary)
    hist = summary.get("history") or []
    if row is None or row is hist[-1]:
        return None
    recall = row.get("valid_recall@20")
    score = (f"valid recall {recall:.4f}" if recall is not None and math.isfinite(recall)
             else f"loss {fmt(row['loss'])}")
    return f"best epoch {row['epoch']} restored: {score} (ran {len(hist)} epochs)"


def render_train(summary: dict, console: Console) -> None:
    """Short summary after train-wals / train-softmax: the figures of the parameters that were kept."""
    t = Table(title=f"Trained {summary['kind']}", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right", max_width=56)  # long values wrap instead of stretching the table
    t.add_row("run directory", summary["run_dir"] or "(not saved)")
    t.add_row("training time", f"{summary['train_seconds']:.2f} s")
    hist = summary.get("history") or []
    best = best_epoch_row(summary)
    if best is not None:
        t.add_row("epochs run", fmt(len(hist)))
        t.add_row("best epoch (kept)", fmt(best["epoch"]))
        t.add_row("loss at the best epoch", fmt(best["loss"]))
    elif hist:
        last = hist[-1]
        for key in ("objective", "loss"):
            if key in last:
                t.add_row(f"final {key}", fmt(last[key]))
        if "epoch" in last or "iteration" in last:
            t.add_row("epochs run" if "epoch" in last else "iterations run", fmt(len(hist)))
    t.add_row("validation recall@20", fmt(summary["valid_recall@20"]))
    t.add_row("seed", fmt(summary["seed"]))
    t.add_row("split fingerprint", summary["split"]["fingerprint"])
    t.add_row("hyper-parameters", Text(", ".join(f"{k}={v}" for k, v in summary["params"].items()), justify="left"))
    console.print(t)


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
        title = f"Top {result['k']} for user {q['user']}"
        caption = f"{q['known_items']} known items excluded"
    else:
        feats = ", ".join(f"{k}={v}" for k, v in q["features"].items())
        title = f"Top {result['k']} for a new user"
        caption = f"history: {len(q['history'])} items (excluded)" + (f"; features: {feats}" if feats else "")
    t = Table(title=title, title_justify="left")
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
    # under the table, not as its caption: a caption wraps to the table's width
    console.print(f"{caption}; {result['kind']} run {result['run']}", highlight=False, soft_wrap=True)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def render_recommend_all(summary: dict, console: Console) -> None:
    """One line after ``mfvsdnn recommend --all``."""
    console.print(f"[green]wrote[/green] {summary['path']}: {summary['rows']:,} rows (top {summary['k']} for "
                  f"{summary['users']:,} training users) in {summary['seconds']:.1f} s", highlight=False)


def render_spark_train(summary: dict, console: Console) -> None:
    """Lines after ``train-wals --engine spark``: where it ran, the ALS parameters, the lambda relation."""
    sp_ = summary.get("spark") or {}
    ap = sp_.get("als_params") or {}
    rel = sp_.get("lambda_relation") or {}
    console.print(f"Spark {sp_.get('version', '?')} on {sp_.get('master', '?')} (data read by {sp_.get('reader', '?')}): "
                  f"ALS implicitPrefs alpha={fmt(ap.get('alpha'))} rank={ap.get('rank')} maxIter={ap.get('maxIter')} "
                  f"regParam={fmt(ap.get('regParam'))}; fit {fmt(sp_.get('fit_seconds'))} s, "
                  f"total {fmt(sp_.get('total_seconds'))} s", highlight=False)
    eu, ei = rel.get("effective_reg_users") or {}, rel.get("effective_reg_items") or {}
    if eu:
        console.print(f"reg is per row in Spark (w0*regParam*n): users {fmt(eu.get('min'))}..{fmt(eu.get('max'))} "
                      f"(median {fmt(eu.get('median'))}), items {fmt(ei.get('min'))}..{fmt(ei.get('max'))} "
                      f"(median {fmt(ei.get('median'))}); --reg {fmt(rel.get('reg'))} is their mean", highlight=False)
    last = (summary.get("history") or [{}])[-1]
    if "objective" in last:
        console.print(f"WALS objective at Spark's factors: {fmt(last['objective'])}", highlight=False)


# ---------------------------------------------------------------------------------------------
# compare

#: the widest a panel grows on a wide terminal (lines longer than this are hard to read)
MAX_WIDTH = 100
VERDICT_STYLE = {"agrees": "green", "disagrees": "red", "cannot tell": "yellow"}
CONTRAST_STYLES = ("green", "magenta")


def render_compare(results: Results, console: Console, paths: dict | None = None) -> None:
    """The contrasted pair side by side along the trade-off axes, the compared models and baselines on
    the key metrics, the folding and cold-start sections (with the contrasts and variants they test),
    the trade-off verdicts, the warnings, and where the reports were written. Fits 80 columns."""
    from rich import box

    names = labels(results)
    contrast = [n for n in results.settings.contrast if n in names]
    if len(contrast) == 2:
        a, b = contrast
        t = Table(title=f"{names[a]} vs {names[b]}: the trade-off axes, measured (95% intervals)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        t.add_column("metric", overflow="fold", min_width=18, ratio=3)
        for n in contrast:
            t.add_column(names[n], justify="right", min_width=14, overflow="fold")
        t.add_column("better", justify="left", overflow="fold")
        t.add_column("significant", justify="left", overflow="fold", min_width=12)
        styles = dict(zip((names[a], names[b]), CONTRAST_STYLES, strict=True))
        rows = []
        for r in results.comparison:
            cells = []
            for n in contrast:
                v = fmt_value(r.values.get(n), r.unit)
                ci = fmt_ci(r.ci.get(n), 3).strip()
                cells.append(f"{v}\n[dim]{ci}[/dim]" if ci else v)
            better, sig, ps = better_significance_parts(r, results)
            style = styles.get(better)
            sig_cell = sig + (f"\n[dim]{ps.replace(', ', chr(10))}[/dim]" if ps else "")
            rows.append((r.axis, "  " + row_label(r, results),
                         [*cells, f"[{style}]{better}[/{style}]" if style else better, sig_cell]))
        # a label wider than what the value columns leave it goes on a row of its own, so that it is
        # never wrapped into the interval lines of its values
        headers = [names[n] for n in contrast] + ["better", "significant"]
        widths = [max([_cell_width(h)] + [_cell_width(row[2][i]) for row in rows]) for i, h in enumerate(headers)]
        widths[:2] = [max(w, 14) for w in widths[:2]]
        label_room = console.width - sum(widths) - 2 * len(widths) - 1
        axis = None
        for row_axis, label, cells in rows:
            if row_axis != axis:
                if axis is not None:
                    t.add_section()
                axis = row_axis
                t.add_row(f"[bold cyan]{axis}[/bold cyan]", "", "", "", "")
            if _cell_width(label) > label_room:
                t.add_row(label, "", "", "", "")
                label = ""
            t.add_row(label, *cells)
        console.print(t)
        note = family_note(results, "comparison")
        if note:
            console.print(f"[dim]{note}[/dim]", highlight=False)
    render_models_overview(results, console)
    render_folding(results, console)
    render_cold_start(results, console)
    render_growth(results, console)
    s = results.settings
    console.print()
    console.print(f"seed {s.seed}, split {results.split['fingerprint']}; {method_text(results)}. "
                  "better = higher recall/NDCG, lower cost, leakage closer to the natural cross-group rate; "
                  "significant = the adjusted p of the paired test is below "
                  f"{1 - s.confidence_level:.2g}.", highlight=False)
    render_tuning(results, console)
    render_tradeoff(results.verdicts, console)
    render_warnings(results.warnings, console)
    render_serving(results, console)
    for note in results.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if s.command:
        console.print(f"reproduce: {s.command}", highlight=False, soft_wrap=True)
    if paths:
        console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


def _cell_width(markup: str) -> int:
    """Terminal columns of a cell's widest line (markup removed)."""
    return max((line.cell_len for line in Text.from_markup(markup).split("\n")), default=0)


def render_warnings(warnings: list[str], console: Console) -> None:
    """What a reader must not miss, in a yellow block."""
    if not warnings:
        return
    from rich.panel import Panel

    body = "\n".join(f"• {w}" for w in warnings)
    console.print()
    console.print(Panel(body, title="Warnings", title_align="left", border_style="yellow", style="yellow",
                        width=min(console.width, MAX_WIDTH)), highlight=False)


def render_folding(results: Results, console: Console) -> None:
    """Folding index per model with its interval, each contrast under the model it varies."""
    from rich import box

    if not results.folding:
        return
    models = {m.name: m for m in results.models}
    k = results.folding[0].k
    console.print()
    t = Table(title=f"Folding on warm users at k = {k} (index: 0 = natural rate, 1 = random)", title_justify="left",
              box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("model", overflow="fold")
    t.add_column(f"leakage@{k}", justify="right")
    t.add_column("folding index", justify="right")
    t.add_column("contrast − model", justify="left", overflow="fold")
    for f in folding_order(results):
        m = models.get(f.model)
        if m is not None and m.role == "variant":  # shares its model's factors; it belongs to cold start
            continue
        is_contrast = m is not None and m.role == "contrast"
        name = ("  ↳ " if is_contrast else "") + (model_label(m) if m is not None else f.model)
        finite = f.ci is not None and not any(math.isnan(c) for c in f.ci)
        ci = f"\n[dim][{f.ci[0]:.3f}, {f.ci[1]:.3f}][/dim]" if finite else ""
        test = folding_test(results, f)
        if test is not None:
            sig = "significant" if test.significant else "not significant"
            ps = fmt_p_pair(test.p, test.p_adjusted).replace(", ", "\n")
            diff = f"{test.diff:+.3f} {sig}\n[dim]{ps}[/dim]"
        else:
            diff = ""
        t.add_row(name, f"{f.leakage:.4f}", f"{f.index:.3f}{ci}", diff,
                  style="dim" if m is not None and m.role == "baseline" else None)
    console.print(t)
    f0 = results.folding[0]
    console.print(f"[dim]natural cross-group rate {f0.natural:.4f}{fmt_ci(f0.natural_ci)}; random's leakage "
                  f"{f0.random_leakage:.4f}{fmt_ci(f0.random_ci)}; ↳ = the model above without its folding knob "
                  "(the knob reduces folding when this difference is significant)[/dim]", highlight=False)
    if any(f.weak_groups for f in results.folding):
        console.print("[yellow]random's leakage lies inside the natural rate's interval: the groups are too weak to "
                      "see folding on this data[/yellow]", highlight=False)


def render_cold_start(results: Results, console: Console) -> None:
    """Recall at the main k by revealed history r, with the variants (the MAP fold-in) beside their model."""
    from rich import box

    variants = [m for m in results.models if m.role == "variant"]
    cold_ids = [p for p in results.population_ids() if not p.is_warm]
    if not variants or not cold_ids:
        return
    k = results.settings.main_k
    console.print()
    t = Table(title=f"Cold start: recall@{k} by revealed interactions r", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False)
    t.add_column("model", overflow="fold", ratio=2)
    for pid in cold_ids:
        t.add_column(f"r={pid.revealed}", justify="right")
    shown = []
    for m in ordered_models(results, MAIN_ROLES):  # each variant right under the model it varies
        shown += [m] + [v for v in variants if v.variant_of == m.name]
    shown += [v for v in variants if v not in shown]
    for m in shown:
        cells = []
        for pid in cold_ids:
            p = m.population(pid)
            v = p.get("recall", k) if p is not None else None
            cells.append(f"{v.mean:.4f}" if v is not None else "n/a")
        name = ("  ↳ " if m.role == "variant" else "") + model_label(m)
        t.add_row(name, *cells, style="dim" if m.role == "baseline" else None)
    lams = [f"{m.name}: λ = {float(m.tuning['fold_in_prior']):g}" for m in variants
            if m.tuning and "fold_in_prior" in m.tuning]
    t.caption = ("↳ = the model above with the MAP fold-in (a prior toward the feature-mean embedding, weight "
                 "chosen on validation" + (f"; {', '.join(lams)}" if lams else "") + ")")
    t.caption_justify = "left"
    console.print(t)


def render_growth(results: Results, console: Console) -> None:
    """One line per model: how training time per iteration/epoch grew over the subsamples."""
    for g in results.growth:
        console.print(f"training growth: {g.model} seconds per {g.unit} ~ interactions^{g.exponent:.2f} "
                      f"(R² {g.r2:.2f}; {len(g.fractions)} subsamples, {g.repeats} repeats)", highlight=False)


def render_tuning(results: Results, console: Console) -> None:
    """One line per tuned model: trials, chosen parameters, best validation recall."""
    for m in results.models:
        if m.tuning and m.role != "variant":
            trials, chosen, best = tuning_summary(m.tuning)
            console.print(f"tuning: {m.name} {trials} trials, best validation recall {best} at {chosen}",
                          highlight=False)


def render_serving(results: Results, console: Console) -> None:
    """With an approximate index measured: per model, exact vs index vs candidate cache (fits 80 columns;
    the reports carry every column and the speed/accuracy curve)."""
    from rich import box

    from .tables import serving_tables

    if not any(m.index is not None and m.index.kind != "exact" for m in results.models):
        return
    title, header, rows = serving_tables(results)[0]
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    keep = [0, 1, 3, 6, 8]  # model, served by, retrieve p50, memory, recall
    for i in keep:
        t.add_column(header[i], overflow="fold", justify="left" if i < 2 else "right")
    for r in rows:
        t.add_row(*(r[i] for i in keep))
    console.print(t)


def render_models_overview(results: Results, console: Console) -> None:
    """The compared models, pipelines and baselines on the key metrics at the main k: one row per model
    (contrasts and variants are in the folding and cold-start sections); with several model seeds the
    between-seed spread under each mean."""
    from rich import box

    k = results.settings.main_k
    pids = results.population_ids()
    cold_ids = [p for p in pids if not p.is_warm]
    shown = ordered_models(results, MAIN_ROLES)
    columns: list[tuple[str, PopulationId, str]] = [("warm recall", WARM, "recall")]
    if cold_ids:
        columns.append((f"cold r={cold_ids[0].revealed}", cold_ids[0], "recall"))
        if len(cold_ids) > 1:
            columns.append((f"cold r={cold_ids[-1].revealed}", cold_ids[-1], "recall"))
    if any(m.warm is not None and m.warm.get("leakage", k) is not None for m in shown):
        columns.append(("warm leakage", WARM, "leakage"))
    console.print()
    t = Table(title=f"Every model at k = {k} (recall@{k}; leakage@{k})", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False)
    t.add_column("model", overflow="fold")
    for title, _, _ in columns:
        t.add_column(title, justify="right")
    t.add_column("coverage", justify="right")
    pipelines = any(m.stages for m in shown)
    if pipelines:
        t.add_column("candidate recall (ceiling)", justify="right")
    spread = False
    for m in shown:
        cells = []
        for _, pid, metric in columns:
            p = m.population(pid)
            v = p.get(metric, k) if p is not None else None
            if v is None:
                cells.append("n/a")
                continue
            sd = f"\n[dim]±{v.seed_sd:.4f}[/dim]" if seed_spread_shown(v.seed_sd) else ""
            spread = spread or bool(sd)
            cells.append(f"{v.mean:.4f}{sd}")
        w = m.warm
        cov = w.get("coverage", k) if w is not None else None
        cells.append(f"{cov.mean:.3f}" if cov is not None else "n/a")
        if pipelines:
            ceiling = w.get("candidate_recall", m.stages["candidates"]) if m.stages and w is not None else None
            cells.append(f"{ceiling.mean:.4f}" if ceiling is not None else "")
        t.add_row(model_label(m), *cells, style="dim" if m.role == "baseline" else None)
    warm = next((m.warm for m in results.models if m.warm is not None), None)
    nat = warm.get("natural_cross_rate") if warm is not None else None
    baselines = [model_label(m) for m in shown if m.role == "baseline"]
    caption = [f"dim rows: the baselines ({', '.join(baselines)})"] if baselines else []
    if spread:
        caption.append(f"±: standard deviation between the {results.settings.repeats} model seeds' means (left out "
                       "where they agree to four decimals)")
    if nat is not None:
        caption.append(f"natural cross-group rate of the warm users' held-out interactions: {nat.mean:.4f}")
    if caption:
        t.caption = "; ".join(caption)
        t.caption_justify = "left"
    console.print(t)


def verdict_summary(v: Verdict) -> str:
    """One line of a verdict's evidence: its conclusion (the evidence's last clause), which says why."""
    clauses = [c.strip() for c in v.evidence.split("; ") if c.strip()]
    return clauses[-1] if clauses else ""


def render_tradeoff(verdicts: list[Verdict], console: Console) -> None:
    """The trade-off table, measured: each row's verdict and the conclusion of its evidence (the claims and
    the full evidence are in report.md and report.html)."""
    if not verdicts:
        return
    from rich import box

    console.print()
    t = Table(title="The trade-off table, measured on this data", title_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False)
    t.add_column("row", style="bold", overflow="fold", ratio=2)
    t.add_column("this data", overflow="fold", ratio=2)
    t.add_column("why", overflow="fold", ratio=5, max_width=64)  # wraps rather than stretching past MAX_WIDTH
    for v in verdicts:
        style = VERDICT_STYLE.get(v.verdict, "")
        t.add_row(v.axis, f"[{style}]{verdict_text(v)}[/{style}]", verdict_summary(v))
    t.caption = "the claims and the full evidence of each row: report.md, report.html"
    t.caption_justify = "left"
    console.print(t)
