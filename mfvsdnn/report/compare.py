"""Rendering: rich tables, progress bars, JSON/Markdown/HTML reports. Never computes a metric."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..models.base import ProgressFn


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
# compare: one set of tables rendered three ways (terminal, Markdown, HTML) plus embedded plots

MODEL_LABELS = {"wals": "WALS", "softmax": "softmax DNN"}

# why a model has (or has not) a candidate cache, keyed by its capabilities.candidate_cache flag
CACHE_NOTES = {
    True: "the query of a known user is fixed after training: top-k of every warm user is precomputed "
          "and served from a table",
    False: "not applicable: the query is computed from the request (history and features) at serving "
           "time, so a precomputed table would go stale",
}


def _label(kind: str) -> str:
    return MODEL_LABELS.get(kind, kind)


def _fmt_value(v: Any, unit: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if unit == "bytes":
        return fmt_bytes(float(v))
    if unit == "s":
        return f"{v:.3g} s"
    if unit == "ms":
        return f"{v:.3g} ms"
    if unit == "count":
        return fmt(int(v))
    return f"{v:.4f}"


def _fmt_ci(ci: Any, digits: int = 4) -> str:
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return ""
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _fmt_p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return f"p={p:.3f}" if p >= 0.001 else "p<0.001"


def _verdict(row: dict) -> tuple[str, str]:
    """(better, significance) text of a comparison row."""
    better = row.get("better")
    if row["direction"] == "info" or better is None:
        b = "—"
    elif better == "tie":
        b = "tie"
    else:
        b = _label(better)
    if row.get("significant") is None:
        s = "—"
    else:
        p = _fmt_p(row.get("p"))
        s = ("yes" if row["significant"] else "no") + (f" ({p})" if p else "")
    return b, s


def compare_tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every table of the compare report as (title, header, rows of strings): one source for
    the terminal, Markdown and HTML renderings."""
    models = report["models"]
    kinds = list(models)
    cmp_ = report["comparison"]
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    header = ["axis", "metric"] + [_label(k) for k in kinds] + ["better", "significant"]
    rows = []
    for r in cmp_["rows"]:
        cells = [_fmt_value(r["values"][k], r["unit"]) + _fmt_ci(r["ci"].get(k), 3) for k in kinds]
        b, s = _verdict(r)
        rows.append([r["axis"], r["metric"]] + cells + [b, s])
    tables.append(("Verdict along the trade-off axes (95% bootstrap intervals over users)", header, rows))

    s = report["settings"]
    pops = ["warm"] + list(models[kinds[0]]["cold"])
    for pop in pops:
        secs = {k: models[k]["warm"] if pop == "warm" else models[k]["cold"][pop] for k in kinds}
        keys = [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit_rate", "coverage", "popularity",
                                     "leakage") for k in s["ks"]] + ["natural_cross_rate"]
        keys = [k for k in keys if k in secs[kinds[0]]]
        paired = cmp_["paired"].get(pop, {})
        rows = []
        for key in keys:
            pr = paired.get(key)
            d = (f"{pr['diff']:+.4f}{_fmt_ci(pr['ci'])} {_fmt_p(pr['p'])}" if pr else "")
            rows.append([key] + [f"{secs[k][key]:.4f}{_fmt_ci(secs[k].get(f'{key}_ci'))}" for k in kinds] + [d])
        title = ("Warm users" if pop == "warm" else f"Cold users, {pop[2:]} revealed") + \
            f" ({secs[kinds[0]]['users']:,} users)"
        tables.append((title, ["metric"] + [_label(k) for k in kinds] + [f"difference {cmp_['difference']}"], rows))

    w = models[kinds[0]]["warm"]
    if w.get("by_group"):
        k20 = s["main_k"]
        header = ["group", "users"] + [f"{_label(k)} {m}" for k in kinds for m in (f"recall@{k20}", f"leakage@{k20}")] \
            + ["natural cross rate"]
        rows = []
        for g, row in w["by_group"].items():
            cells = []
            for k in kinds:
                gr = models[k]["warm"]["by_group"].get(g, {})
                cells += [f"{gr.get(f'recall@{k20}', float('nan')):.4f}", f"{gr.get(f'leakage@{k20}', float('nan')):.4f}"]
            rows.append([g, fmt(row["users"])] + cells + [f"{row.get('natural_cross_rate', float('nan')):.4f}"])
        tables.append((f"Warm users by group (group = {w.get('group_source', '')})", header, rows))

    rows = []
    for key in ("query_ms_p50", "query_ms_p99", "cold_query_ms_p50", "cold_query_ms_p99", "topk_ms_p50",
                "topk_ms_p99", "batch_ms_per_query"):
        rows.append([key] + [_fmt_value(models[k]["serving"].get(key), "ms") for k in kinds])
    rows.append(["cache_build_seconds"] + [_fmt_value(models[k]["serving"].get("cache_build_seconds"), "s") for k in kinds])
    rows.append(["cache_bytes"] + [_fmt_value(models[k]["serving"].get("cache_bytes"), "bytes") for k in kinds])
    rows.append(["model_bytes"] + [_fmt_value(models[k]["serving"].get("model_bytes"), "bytes") for k in kinds])
    rows.append(["train_seconds"] + [_fmt_value(models[k]["train_seconds"], "s") for k in kinds])
    rows.append(["iterations / epochs"] + [fmt(models[k]["training"]["iterations"]) for k in kinds])
    tables.append((f"Cost (serving latencies over {models[kinds[0]]['serving'].get('sample_users', 0)} "
                   "single requests)", ["what"] + [_label(k) for k in kinds], rows))

    rows = [[_label(k), models[k].get("run_dir") or "", str(models[k].get("seed")),
             ", ".join(f"{p}={v}" for p, v in models[k]["params"].items())] for k in kinds]
    tables.append(("Models: run directory, seed, hyper-parameters", ["model", "run", "seed", "hyper-parameters"], rows))
    sp_ = report["split"]
    rows = [[k, str(v)] for k, v in sp_["config"].items()] + [
        ["fingerprint", sp_["fingerprint"]], ["data", str(report["dataset"].get("source"))],
        ["warm users evaluated", fmt(sp_["warm_eval_users"])], ["cold users evaluated", fmt(sp_["cold_eval_users"])],
        ["user features", ", ".join(s["user_features"]) or "none"], ["bootstrap resamples", fmt(s["bootstrap"])],
        ["cut-offs k", ", ".join(map(str, s["ks"]))]]
    tables.append(("Split and settings", ["setting", "value"], rows))
    return tables


def render_compare(report: dict, console: Console, paths: dict | None = None) -> None:
    """The side-by-side verdict table (rows grouped by axis) and where the reports were written."""
    from rich import box

    kinds = list(report["models"])
    t = Table(title="WALS vs softmax DNN: the trade-off axes, measured (95% bootstrap intervals over users)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("metric", overflow="fold", min_width=18, ratio=3)
    for k in kinds:
        t.add_column(_label(k), justify="right", min_width=14, overflow="fold")
    t.add_column("better", justify="left", overflow="fold")
    t.add_column("significant", justify="left", overflow="fold", min_width=8)
    axis = None
    for r in report["comparison"]["rows"]:
        if r["axis"] != axis:
            if axis is not None:
                t.add_section()
            axis = r["axis"]
            t.add_row(f"[bold cyan]{axis}[/bold cyan]", *[""] * (len(kinds) + 2))
        cells = []
        for k in kinds:
            v = _fmt_value(r["values"][k], r["unit"])
            ci = _fmt_ci(r["ci"].get(k), 3).strip()
            cells.append(f"{v}\n[dim]{ci}[/dim]" if ci else v)
        better, sig = _verdict(r)
        style = {"WALS": "green", "softmax DNN": "magenta"}.get(better)
        t.add_row("  " + r["metric"], *cells, f"[{style}]{better}[/{style}]" if style else better, sig)
    console.print(t)
    s = report["settings"]
    sp_ = report["split"]
    console.print(f"seed {s['seed']}, split {sp_['fingerprint']}, {s['bootstrap']} bootstrap resamples. "
                  "better = higher recall/NDCG, lower cost, leakage closer to the natural cross-group rate; "
                  "significant = the paired 95% interval of the difference excludes 0.", highlight=False)
    render_tradeoff(report.get("tradeoff") or [], console)
    if paths:
        console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


VERDICT_STYLE = {"agrees": "green", "disagrees": "red", "cannot tell": "yellow"}


def render_tradeoff(rows: list[dict], console: Console) -> None:
    """The trade-off table, measured: each row's claim, this run's evidence and the verdict."""
    if not rows:
        return
    from rich import box

    console.print()
    t = Table(title="The trade-off table, measured on this data", title_justify="left", box=box.SIMPLE_HEAD,
              show_lines=True)
    t.add_column("row", style="bold", ratio=1)
    t.add_column("claim / evidence from this run", ratio=5)
    t.add_column("this data", ratio=1)
    for r in rows:
        style = VERDICT_STYLE.get(r["verdict"], "")
        t.add_row(r["axis"], f"{r['claim']}\n[dim]{r['evidence']}[/dim]", f"[{style}]{r['verdict']}[/{style}]")
    console.print(t)


def tradeoff_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## The trade-off table, measured on this data", "", "| row | claim | evidence from this run | this data |",
             "|---|---|---|---|"]
    lines += [f"| {r['axis']} | {_md_escape(r['claim'])} | {_md_escape(r['evidence'])} | **{r['verdict']}** |"
              for r in rows]
    return lines + [""]


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def compare_markdown(report: dict) -> str:
    """report.md: the same tables as the terminal and HTML reports."""
    kinds = list(report["models"])
    lines = [f"# WALS vs softmax DNN on {report['dataset'].get('source')}", "",
             f"{' vs '.join(_label(k) for k in kinds)}; seed {report['settings']['seed']}; "
             f"split fingerprint `{report['split']['fingerprint']}`. Intervals are 95% bootstrap intervals over "
             f"users ({report['settings']['bootstrap']} resamples); differences are paired over the same users.", ""]
    for title, header, rows in compare_tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
        lines.append("")
    lines += tradeoff_markdown(report.get("tradeoff") or [])
    return "\n".join(lines)


# ----- plots (matplotlib's object API: no global state, no display needed)


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


MODEL_COLORS = {"wals": "#1b9e77", "softmax": "#7570b3"}


def compare_plots(report: dict, plots: dict) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG bytes) for every plot of the HTML report."""
    from matplotlib.figure import Figure

    models = report["models"]
    kinds = list(models)
    s = report["settings"]
    k20 = s["main_k"]
    out: dict[str, tuple[str, bytes]] = {}

    groups = plots.get("item_groups")
    names = plots.get("group_names") or []
    for kind in [k for k in kinds if k in plots["maps"]]:  # models without item vectors have no map
        m = plots["maps"][kind]
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.subplots()
        xy = m["xy"]
        if groups is not None:
            g = groups[m["items"]]
            for gi, col in zip(range(len(names)), _colors(len(names)), strict=False):
                sel = g == gi
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, color=col, label=names[gi], linewidths=0)
            ax.legend(title="item group", markerscale=2.5, fontsize=8, loc="best")
        else:
            ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, color=MODEL_COLORS.get(kind), linewidths=0)
        ev = m["explained"]
        ax.set_title(f"{_label(kind)}: item embeddings, PCA to 2-D")
        ax.set_xlabel(f"PC1 ({ev[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%} of variance)")
        out[f"map_{kind}"] = (f"{_label(kind)} item embeddings coloured by item group: separated clusters = "
                              "groups kept apart; mixed clusters = folding.", _png(fig))

    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    cold = list(models[kinds[0]]["cold"])
    pops = ["warm"] + cold[-1:]
    for kind in kinds:
        for pop, ls in zip(pops, ("-", "--"), strict=False):
            sec = models[kind]["warm"] if pop == "warm" else models[kind]["cold"][pop]
            y = [sec[f"recall@{k}"] for k in s["ks"]]
            lo = [sec[f"recall@{k}_ci"][0] for k in s["ks"]]
            hi = [sec[f"recall@{k}_ci"][1] for k in s["ks"]]
            lab = f"{_label(kind)}, " + ("warm users" if pop == "warm" else f"cold, {pop[2:]} revealed")
            ax.plot(s["ks"], y, ls, marker="o", color=MODEL_COLORS.get(kind), label=lab)
            ax.fill_between(s["ks"], lo, hi, color=MODEL_COLORS.get(kind), alpha=0.15)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title("recall@k (bands: 95% bootstrap intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out["recall_at_k"] = ("Recall@k for warm users (solid) and the most-revealed cold users (dashed).", _png(fig))

    if cold:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        rs = [int(p[2:]) for p in cold]
        for kind in kinds:
            secs = [models[kind]["cold"][p] for p in cold]
            y = [c[f"recall@{k20}"] for c in secs]
            ax.plot(rs, y, "-o", color=MODEL_COLORS.get(kind), label=f"{_label(kind)}, cold users")
            ax.fill_between(rs, [c[f"recall@{k20}_ci"][0] for c in secs], [c[f"recall@{k20}_ci"][1] for c in secs],
                            color=MODEL_COLORS.get(kind), alpha=0.15)
            ax.axhline(models[kind]["warm"][f"recall@{k20}"], color=MODEL_COLORS.get(kind), ls=":", lw=1,
                       label=f"{_label(kind)}, warm users")
        ax.set_xticks(rs)
        ax.set_xlabel("revealed interactions r (0 = features only)")
        ax.set_ylabel(f"recall@{k20}")
        ax.set_title(f"Cold start: recall@{k20} against revealed history")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out["cold_start"] = ("The cold-start curve: how fast each model recovers as a new user reveals "
                             "interactions (dotted: warm users).", _png(fig))

    key = f"leakage@{k20}"
    if key in models[kinds[0]]["warm"]:
        import numpy as np

        pops = ["warm"] + cold
        fig = Figure(figsize=(max(6, 1.3 * len(pops) + 2), 4.2))
        ax = fig.subplots()
        x = np.arange(len(pops))
        width = 0.8 / (len(kinds) + 1)
        for i, kind in enumerate(kinds):
            secs = [models[kind]["warm"] if p == "warm" else models[kind]["cold"][p] for p in pops]
            y = np.array([c[key] for c in secs])
            err = np.array([[c[key] - c[f"{key}_ci"][0], c[f"{key}_ci"][1] - c[key]] for c in secs]).T
            ax.bar(x + i * width, y, width, yerr=np.nan_to_num(err), capsize=3, color=MODEL_COLORS.get(kind),
                   label=f"{_label(kind)} leakage@{k20}")
        nat = [(models[kinds[0]]["warm"] if p == "warm" else models[kinds[0]]["cold"][p])["natural_cross_rate"]
               for p in pops]
        ax.bar(x + len(kinds) * width, nat, width, color="#bbbbbb", label="natural cross-group rate")
        ax.set_xticks(x + width * len(kinds) / 2)
        ax.set_xticklabels(["warm" if p == "warm" else f"cold {p}" for p in pops])
        ax.set_ylabel("share of recommendations outside the user's group")
        ax.set_title("Folding: cross-group leakage against the natural rate")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
        out["leakage"] = ("Leakage above the grey bar (the users' own held-out cross-group rate) is folding.",
                          _png(fig))
    return out


_HTML_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,td:nth-child(2),th:first-child{text-align:left}
figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:560px}
figcaption{font-size:12px;color:#555}img{max-width:100%}
.axis td{background:#eef5fb;font-weight:bold;text-align:left}
"""


def compare_html(report: dict, plots: dict) -> str:
    """report.html: one self-contained file (plots embedded as data:image/png;base64 URIs)."""
    import base64
    import html

    kinds = list(report["models"])
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>mfvsdnn compare: {esc(str(report['dataset'].get('source')))}</title>",
             f"<style>{_HTML_STYLE}</style></head><body>",
             f"<h1>{' vs '.join(_label(k) for k in kinds)} on {esc(str(report['dataset'].get('source')))}</h1>",
             f"<p>Seed {report['settings']['seed']}; split fingerprint <code>{esc(report['split']['fingerprint'])}"
             f"</code>; 95% bootstrap intervals over users ({report['settings']['bootstrap']} resamples); "
             "differences paired over the same users. Better = higher recall/NDCG, lower cost, leakage "
             "closer to the natural cross-group rate.</p>"]
    tables = compare_tables(report)
    for i, (title, header, rows) in enumerate(tables):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header[1 if i == 0 else 0:])
                     + "</tr>")
        axis = None
        for r in rows:
            cells = r
            if i == 0:
                if r[0] != axis:
                    axis = r[0]
                    parts.append(f"<tr class='axis'><td colspan='{len(header) - 1}'>{esc(axis)}</td></tr>")
                cells = r[1:]
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
        if i == 0:
            parts.append("<h2>Plots</h2>")
            for name, (caption, png) in compare_plots(report, plots).items():
                b64 = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure id='{name}'><img alt='{esc(name)}' src='data:image/png;base64,{b64}'>"
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
    rows = report.get("tradeoff") or []
    if rows:
        parts.append("<h2>The trade-off table, measured on this data</h2><table><tr><th>row</th><th>claim</th>"
                     "<th>evidence from this run</th><th>this data</th></tr>")
        colors = {"agrees": "#1a7f37", "disagrees": "#c0392b", "cannot tell": "#9a6700"}
        for r in rows:
            parts.append(f"<tr><td>{esc(r['axis'])}</td><td>{esc(r['claim'])}</td><td>{esc(r['evidence'])}</td>"
                         f"<td style='color:{colors.get(r['verdict'], '#000')};font-weight:bold'>"
                         f"{esc(r['verdict'])}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
        title = f"Top {result['k']} for user {q['user']}"
        caption = f"{q['known_items']} known items excluded"
    else:
        feats = ", ".join(f"{k}={v}" for k, v in q["features"].items())
        title = f"Top {result['k']} for a new user"
        caption = f"history: {len(q['history'])} items (excluded)" + (f"; features: {feats}" if feats else "")
    t = Table(title=title, caption=f"{caption}; {result['kind']} run {result['run']}", title_justify="left",
              caption_justify="left")
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


# ---------------------------------------------------------------------------------------------
# train-wals --engine spark (issue 7)


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


def render_spark_compare(report: dict, console: Console, paths: dict | None = None) -> None:
    """Table for ``compare --engine spark``: warm-user means per model, then what this mode leaves out."""
    models = report.get("models") or {}
    kinds = list(models)
    t = Table(title=f"Warm users, scored in Spark ({report.get('spark', {}).get('master', '?')})", title_justify="left")
    t.add_column("metric", style="bold")
    for kind in kinds:
        t.add_column(f"{_label(kind)} ({models[kind].get('engine', 'local')})", justify="right")
    names = list(dict.fromkeys(n for m in models.values() for n in m["warm"]["means"]))
    for n in names:
        t.add_row(n, *[fmt(models[kind]["warm"]["means"].get(n)) for kind in kinds])
    t.add_row("users scored", *[fmt(models[kind]["warm"]["users"]) for kind in kinds])
    console.print(t)
    console.print(f"Not in this mode: {report.get('not_available', '')}.", highlight=False)
    for what, p in (paths or {}).items():
        console.print(f"{what}: {p}", highlight=False)
