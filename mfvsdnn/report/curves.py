"""Rendering of ``sweep`` and ``scale`` results: rich tables, Markdown, self-contained HTML plots.

Like the compare report it never computes a metric: it reads sweep.json / scale.json content.
"""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ..experiment.results import WARM, PopulationId, PopulationResult, cold
from ..experiment.spec import PREFERRED_MAIN_K
from .format import fmt
from .html import html_page
from .plots import DPI, MODEL_COLORS, legible, outside_legend, png

#: each small multiple of the sweep page is at least this wide on the page (pixels at the PNG's DPI)
PANEL_WIDTH_PX = 400

FAMILY_COLORS = {("wals", "w0"): "#1b9e77", ("softmax", "negatives"): "#7570b3",
                 ("softmax", "sampler"): "#d95f02", ("softmax", "gravity"): "#e7298a"}


def main_k(doc: dict) -> int:
    """The cut-off the sweep's tables and plots show: 20 when swept, else the middle k."""
    ks = sorted(doc.get("config", {}).get("ks") or [PREFERRED_MAIN_K])
    return PREFERRED_MAIN_K if PREFERRED_MAIN_K in ks else ks[(len(ks) - 1) // 2]


def _population(point: dict, pid: PopulationId | None) -> PopulationResult | None:
    if pid is None:
        return None
    for p in point.get("populations", []):
        if PopulationId.from_dict(p["population"]) == pid:
            return PopulationResult.from_dict(p)
    return None


def _mean(point: dict, pid: PopulationId | None, metric: str, k: int | None = None) -> float:
    p = _population(point, pid)
    return float("nan") if p is None else p.mean(metric, k)


def _cold_id(doc: dict) -> PopulationId | None:
    revealed = doc.get("split", {}).get("config", {}).get("revealed") or []
    return cold(min(revealed)) if revealed else None


def _cold_label(pid: PopulationId | None) -> str:
    return "cold" if pid is None else f"cold r={pid.revealed}"


def sweep_rows(doc: dict, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the sweep table (one row per point); ``compact`` for the terminal."""
    ck, k = _cold_id(doc), main_k(doc)
    header = ["family", "value", f"recall@{k}", "95% CI", f"ndcg@{k}", f"leakage@{k}", "natural",
              f"{_cold_label(ck)} recall@{k}", "train s", "model bytes"]
    rows = []
    for p in doc["points"]:
        warm = _population(p, WARM)
        v = warm.get("recall", k) if warm is not None else None
        ci = v.ci if v is not None and v.ci else (float("nan"), float("nan"))
        rows.append([f"{p['model']} {p['knob']}", str(p["value"]), fmt(_mean(p, WARM, "recall", k)),
                     f"{fmt(ci[0], 3)}–{fmt(ci[1], 3)}", fmt(_mean(p, WARM, "ndcg", k)),
                     fmt(_mean(p, WARM, "leakage", k)), fmt(_mean(p, WARM, "natural_cross_rate")),
                     fmt(_mean(p, ck, "recall", k)), f"{p['train_seconds']:.1f}", fmt(p.get("model_bytes"))])
    if compact:  # fits 80 columns: one "point" column, the natural rate goes to the caption
        header = ["point", f"recall@{k}", "95% CI", f"leak@{k}", _cold_label(ck), "train s"]
        short = {"wals": "WALS", "softmax": "DNN"}
        rows = [[f"{short.get(p['model'], p['model'])} {p['knob']}={p['value']}",
                 f"{_mean(p, WARM, 'recall', k):.3f}", r[3], f"{_mean(p, WARM, 'leakage', k):.3f}",
                 f"{_mean(p, ck, 'recall', k):.3f}", r[8]]
                for p, r in zip(doc["points"], rows, strict=True)]
    return header, rows


def render_sweep(doc: dict, console: Console, paths: dict | None = None) -> None:
    header, rows = sweep_rows(doc, compact=True)
    nat = _natural(doc)
    t = Table(title=f"Sweep on {doc['dataset']['source']} (seed {doc['seed']}, split {doc['split']['fingerprint']})",
              title_justify="left", box=box.SIMPLE_HEAD)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i in (0, 2),
                     min_width=max(len(w) for w in h.split()))
    last = None
    for r in rows:
        family = r[0].split("=")[0]
        if last is not None and family != last:
            t.add_section()
        last = family
        t.add_row(*r)
    console.print(t)
    if not math.isnan(nat):  # printed, not a table caption: rich crops a caption line at the table's width
        console.print(f"natural cross-group rate of the held-out interactions: {nat:.4f}; leakage above it is "
                      f"folding. Cold: recall@{main_k(doc)} of users known by their features only.", highlight=False)
    resumed = sum(1 for p in doc["points"] if p.get("resumed"))
    if resumed:
        console.print(f"[dim]{resumed} point(s) reused from an earlier run of this sweep.[/dim]")
    if not doc["dataset"].get("groups"):
        console.print("[dim]No item groups in the data: leakage (folding) cannot be measured.[/dim]")
    if doc.get("command"):
        console.print(f"reproduce: {doc['command']}", highlight=False, markup=False, soft_wrap=True)
    if paths:
        console.print("reports: " + ", ".join(str(p) for p in paths.values()))


def _reproduce_md(doc: dict) -> list[str]:
    return ["Reproduce with:", "", "```", doc["command"], "```", ""] if doc.get("command") else []


def _reproduce_html(doc: dict) -> str:
    return f" Reproduce with: `{doc['command']}`" if doc.get("command") else ""


def sweep_markdown(doc: dict) -> str:
    header, rows = sweep_rows(doc)
    lines = [f"# mfvsdnn sweep: {doc['dataset']['source']}", "",
             f"Seed {doc['seed']}; split fingerprint `{doc['split']['fingerprint']}`; every point trained and "
             "evaluated on the same split by the shared evaluator.", "", *_reproduce_md(doc),
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _families(doc: dict) -> dict[tuple[str, str], list[dict]]:
    fam: dict[tuple[str, str], list[dict]] = {}
    for p in doc["points"]:
        fam.setdefault((p["model"], p["knob"]), []).append(p)
    return fam


def _natural(doc: dict) -> float:
    vals = [_mean(p, WARM, "natural_cross_rate") for p in doc["points"]]
    vals = [v for v in vals if not math.isnan(v)]
    return vals[0] if vals else float("nan")


def _categorical(pts: list[dict]) -> bool:
    """A knob whose values are names (a sampler) has no order between them: drawn as points, not lines."""
    return not all(isinstance(p["value"], int | float) and not isinstance(p["value"], bool) for p in pts)


def _no_negative(ax: Any, axis: str) -> None:
    """A share (leakage) cannot be negative: the axis starts at 0 and shows no tick below it."""
    if axis == "x":
        ax.set_xlim(left=0)
        ax.set_xticks([t for t in ax.get_xticks() if t >= 0])
        ax.set_xlim(left=0)
    else:
        ax.set_ylim(bottom=0)
        top = ax.get_ylim()[1]
        ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])
        ax.set_ylim(0, top)


def sweep_plots(doc: dict) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG): the frontier, then each metric against each knob."""
    with legible():  # ticks made while drawing read the sizes too
        return {name: (caption, png(fig)) for name, (caption, fig) in sweep_figures(doc).items()}


def sweep_figures(doc: dict) -> dict[str, tuple[str, Any]]:
    """name -> (caption, matplotlib Figure) of :func:`sweep_plots`."""
    with legible():
        return _sweep_figures(doc)


def _sweep_figures(doc: dict) -> dict[str, tuple[str, Any]]:
    from matplotlib.figure import Figure

    out: dict[str, tuple[str, Any]] = {}
    fam = _families(doc)
    nat = _natural(doc)
    k = main_k(doc)
    has_groups = not math.isnan(nat)
    if has_groups:
        fig = Figure(figsize=(6.2, 4.4), layout="constrained")
        ax = fig.subplots()
        for (model, knob), pts in fam.items():
            xs = [_mean(p, WARM, "leakage", k) for p in pts]
            ys = [_mean(p, WARM, "recall", k) for p in pts]
            c = FAMILY_COLORS.get((model, knob), MODEL_COLORS.get(model))
            ax.plot(xs, ys, "o" if _categorical(pts) else "o-", color=c, label=f"{model}: {knob}", alpha=0.85)
            for p, x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(str(p["value"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=9)
        ax.axvline(nat, color="grey", ls="--", lw=1, label=f"natural cross-group rate {nat:.3f}")
        ax.set_xscale("symlog", linthresh=max(nat / 2, 1e-3), linscale=0.5)
        _no_negative(ax, "x")
        ax.set_xlabel(f"warm cross-group leakage@{k}\n(symlog axis; right of the dashed line = folding)")
        ax.set_ylabel(f"warm recall@{k}")
        ax.set_title("Trade-off frontier: recall against leakage")
        outside_legend(ax)
        out["frontier"] = ("Each family's points from its knob's values: up and to the left is better; "
                           "leakage at the dashed line is the data's own cross-group rate, above it is folding. "
                           "Families with named values (samplers) are points, not lines: their values have no order.",
                           fig)
    ck = _cold_id(doc)
    metrics = [(WARM, "recall", f"warm recall@{k}")]
    if has_groups:
        metrics.append((WARM, "leakage", f"warm leakage@{k}"))
    if ck:
        metrics.append((ck, "recall", f"{_cold_label(ck)} recall@{k}"))
    for (model, knob), pts in fam.items():
        width = PANEL_WIDTH_PX / DPI
        fig = Figure(figsize=(width * len(metrics), 3.6), layout="constrained")
        axes = fig.subplots(1, len(metrics))
        axes = list(axes) if len(metrics) > 1 else [axes]
        labels = [str(p["value"]) for p in pts]
        numeric = not _categorical(pts)
        xs = [float(p["value"]) for p in pts] if numeric else list(range(len(pts)))
        symlog = numeric and knob in ("w0", "gravity") and max(xs) > 0
        for ax, (pid, metric, title) in zip(axes, metrics, strict=True):
            ys = [_mean(p, pid, metric, k) for p in pts]
            ax.plot(xs, ys, "o-" if numeric else "o", color=FAMILY_COLORS.get((model, knob), "#333"), ms=7)
            if symlog:
                pos = [x for x in xs if x > 0]
                ax.set_xscale("symlog", linthresh=min(pos) if pos else 1e-3)
            if not numeric:
                ax.set_xticks(xs, labels)
                ax.set_xlim(-0.5, len(xs) - 0.5)
            if metric == "leakage":
                ax.axhline(nat, color="grey", ls="--", lw=1, label="natural cross-group rate")
                _no_negative(ax, "y")
                outside_legend(ax, below=True)
            ax.set_title(title)
            ax.set_xlabel(knob)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{model}: metrics against {knob}")
        out[f"{model}-{knob}"] = (f"{model}: warm recall@{k}, leakage@{k} (dashed: natural cross-group rate) "
                                  f"and cold recall@{k} against {knob}"
                                  + (" (named values: points, not lines)." if not numeric else "."), fig)
    return out


def sweep_html(doc: dict) -> str:
    header, rows = sweep_rows(doc)
    return html_page(f"mfvsdnn sweep: {doc['dataset']['source']}",
                      f"Seed {doc['seed']}; split fingerprint {doc['split']['fingerprint']}. Every point trained "
                      "and evaluated on the same split by the shared evaluator (95% bootstrap intervals over users)."
                      + _reproduce_html(doc), [("Points", header, rows)], sweep_plots(doc))


# ---------------------------------------------------------------------------------------------
# scale


def _curves(doc: dict) -> dict[str, str]:
    """The curves this scale run measured (the index curves only with --index), in CURVES order."""
    from ..experiment.scale import CURVES

    return {k: label for k, label in CURVES.items() if k in doc["fits"]}


def scale_rows(doc: dict) -> tuple[list[str], list[list[str]]]:
    curves = _curves(doc)
    header = ["items", "users", "interactions", *[curves[k] for k in curves]]
    rows = [[fmt(p["items"]), fmt(p["users"]), fmt(p["interactions"]),
             *[fmt(p.get(k), 3) for k in curves]] for p in doc["points"]]
    rows.append(["growth exponent b", "", "", *[fmt(doc["fits"][k]["exponent"], 3) for k in curves]])
    return header, rows


def render_scale(doc: dict, console: Console, paths: dict | None = None) -> None:
    curves = _curves(doc)

    t = Table(title=f"Cost against corpus size (x = {doc['x']})", title_justify="left")
    for c in ("curve", *[fmt(p["items"]) + " items" for p in doc["points"]], "growth b", "R²"):
        t.add_column(c, justify="left" if c == "curve" else "right")
    for key, label in curves.items():
        f = doc["fits"][key]
        t.add_row(label, *[fmt(p.get(key), 3) for p in doc["points"]], fmt(f["exponent"], 3), fmt(f["r2"], 3))
    console.print(t)
    console.print("[dim]t = a·n^b fitted on log-log axes; b ≈ 1 linear, ≈ 2 quadratic, ≈ 0 flat. Softmax epochs "
                  "are timed on a subsample of examples and scaled to a full epoch (see scale.json).[/dim]")
    if doc.get("command"):
        console.print(f"reproduce: {doc['command']}", highlight=False, markup=False, soft_wrap=True)
    if paths:
        console.print("reports: " + ", ".join(str(p) for p in paths.values()))


def tick_text(value: float, _pos: Any = None) -> str:
    """The one number format of the scale plots' axes: plain figures, thousands separated, 3 significant."""
    if value == 0 or not math.isfinite(value):
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def scale_plots(doc: dict) -> dict[str, tuple[str, bytes]]:
    with legible():  # ticks made while drawing read the sizes too
        return {name: (caption, png(fig)) for name, (caption, fig) in scale_figures(doc).items()}


def scale_figures(doc: dict) -> dict[str, tuple[str, Any]]:
    """name -> (caption, Figure) of :func:`scale_plots`."""
    with legible():
        return _scale_figures(doc)


def _scale_figures(doc: dict) -> dict[str, tuple[str, Any]]:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    curves = _curves(doc)
    items = [p["items"] for p in doc["points"]]
    out: dict[str, tuple[str, Any]] = {}
    groups = {"training": [k for k in curves if "seconds_per" in k], "serving": [k for k in curves if "_ms_" in k]}
    for name, keys in groups.items():
        if not keys:
            continue
        fig = Figure(figsize=(6.2, 4.4))
        ax = fig.subplots()
        for key in keys:
            ys = [p.get(key) for p in doc["points"]]
            f = doc["fits"][key]
            ax.loglog(items, ys, "o-", label=f"{curves[key]} (b = {f['exponent']:.2f}, R² = {f['r2']:.2f})")
        ax.set_xticks(items)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(tick_text))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("items (users and interactions grow in proportion)")
        ax.set_ylabel("seconds" if name == "training" else "milliseconds per query")
        ax.set_title(f"{name.capitalize()} cost against corpus size (log-log)")
        ax.grid(alpha=0.3, which="both")
        outside_legend(ax, below=True)
        out[name] = (f"{name.capitalize()} cost; the slope b of each line is its growth exponent, R² how well "
                     "the straight line fits.", fig)
    return out


def scale_markdown(doc: dict) -> str:
    header, rows = scale_rows(doc)
    lines = ["# mfvsdnn scale", "", f"x = {doc['x']}; seed {doc['config']['seed']}.", "", *_reproduce_md(doc),
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def scale_html(doc: dict) -> str:
    header, rows = scale_rows(doc)
    return html_page("mfvsdnn scale: cost against corpus size",
                      f"x = {doc['x']}; seed {doc['config']['seed']}. Growth exponents b of t = a·n^b fitted on "
                      "log-log axes." + _reproduce_html(doc), [("Measurements", header, rows)], scale_plots(doc))


def curve_files(kind: str, doc: dict) -> dict[str, str]:
    """file name -> text for ``sweep`` or ``scale`` (the JSON is written by the caller)."""
    if kind == "sweep":
        return {"sweep.md": sweep_markdown(doc), "sweep.html": sweep_html(doc)}
    return {"scale.md": scale_markdown(doc), "scale.html": scale_html(doc)}
