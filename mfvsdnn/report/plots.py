"""The compare report's plots (matplotlib's object API: no global state, no display needed)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..experiment.results import WARM, Results
from ..experiment.verdicts import FOLD_MARGIN
from .tables import MAIN_ROLES, fmt_pvalue, folding_order, folding_test, labels, ordered_models

MODEL_COLORS = {"wals": "#1b9e77", "softmax": "#7570b3", "popularity": "#666666", "group-popularity": "#a6761d",
                "random": "#bbbbbb"}
OTHER_COLORS = ("#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#1f78b4")
#: Okabe & Ito's palette, told apart with the common colour-vision deficiencies; "other" is light grey
GROUP_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
OTHER_GROUP_COLOR = "#BBBBBB"
MAX_MAP_GROUPS = len(GROUP_COLORS)
DPI = 110
#: text sizes in points: nothing in a plot smaller than 9 pt
FONT_SIZES = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
              "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11}


def legible() -> Any:
    """A context in which figures are built with FONT_SIZES (matplotlib reads them when text is made)."""
    from matplotlib import rc_context

    return rc_context(FONT_SIZES)


def outside_legend(ax: Any, below: bool = False, **kwargs: Any) -> Any:
    """A legend beside (or under) the axes, never over the data."""
    if below:
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), borderaxespad=0, **kwargs)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, **kwargs)


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def map_groups(groups: np.ndarray, group_names: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(label, colour, item mask) per drawn group: the MAX_MAP_GROUPS largest groups in the palette's
    colours, every other group pooled as "other" (drawn first, so underneath)."""
    counts = np.bincount(groups[groups >= 0], minlength=len(group_names))
    order = [int(g) for g in np.argsort(-counts, kind="stable") if counts[g] > 0]
    shown, rest = order[:MAX_MAP_GROUPS], order[MAX_MAP_GROUPS:]
    out = []
    if rest or (groups < 0).any():
        pooled = np.isin(groups, rest) | (groups < 0)
        out.append((f"other ({len(rest)} groups)" if rest else "no group", OTHER_GROUP_COLOR, pooled))
    out += [(group_names[g], GROUP_COLORS[i], groups == g) for i, g in enumerate(shown)]
    return out


def model_colors(results: Results) -> dict[str, str]:
    out, extra = {}, iter(OTHER_COLORS * 4)
    for m in results.models:
        out[m.name] = MODEL_COLORS.get(m.kind) if m.name == m.kind and m.kind in MODEL_COLORS else next(extra)
    return out


def compare_plots(results: Results, maps: dict[str, dict]) -> dict[str, tuple[str, bytes]]:
    """name -> (caption, PNG bytes) for every plot of the HTML report."""
    names = labels(results)
    colors = model_colors(results)
    ks = results.settings.ks
    k = results.settings.main_k
    with legible():
        return _compare_plots(results, maps, names, colors, ks, k)


def _compare_plots(results: Results, maps: dict[str, dict], names: dict[str, str], colors: dict[str, str],
                   ks: list[int], k: int) -> dict[str, tuple[str, bytes]]:
    from matplotlib.figure import Figure

    out: dict[str, tuple[str, bytes]] = {}
    for name, m in maps.items():
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.subplots()
        xy = m["xy"]
        groups, group_names = m.get("item_groups"), m.get("group_names") or []
        if groups is not None and group_names:
            for label, col, sel in map_groups(np.asarray(groups), list(group_names)):
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, color=col, label=label, linewidths=0)
            outside_legend(ax, title="item group", markerscale=2.5)
        else:
            ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, color=colors.get(name), linewidths=0)
        explained = m["explained"]
        ax.set_title(f"{names.get(name, name)}: item embeddings, PCA to 2-D")
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
        out[f"map_{name}"] = (f"{names.get(name, name)} item embeddings coloured by item group: separated clusters = "
                              "groups kept apart; mixed clusters = folding.", png(fig))

    pids = results.population_ids()
    cold_ids = [p for p in pids if not p.is_warm]
    main = ordered_models(results, MAIN_ROLES)
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for m in main:
        for pid, style in zip([WARM] + cold_ids[-1:], ("-", "--"), strict=False):
            p = m.population(pid)
            if p is None:
                continue
            vals = [p.get("recall", kk) for kk in ks]
            y = [v.mean if v else np.nan for v in vals]
            lo = [v.ci[0] if v and v.ci else np.nan for v in vals]
            hi = [v.ci[1] if v and v.ci else np.nan for v in vals]
            where = "warm users" if pid.is_warm else f"cold, {pid.revealed} revealed"
            ax.plot(ks, y, style, marker="o", color=colors[m.name], label=f"{names[m.name]}, {where}")
            ax.fill_between(ks, lo, hi, color=colors[m.name], alpha=0.15)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title("recall@k (bands: 95% bootstrap intervals)")
    ax.grid(alpha=0.3)
    outside_legend(ax)
    out["recall_at_k"] = ("Recall@k for warm users (solid) and the most-revealed cold users (dashed).", png(fig))

    if cold_ids:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        rs = [p.revealed for p in cold_ids]
        for m in ordered_models(results, MAIN_ROLES + ("variant",)):
            vals = [m.population(p).get("recall", k) if m.population(p) else None for p in cold_ids]
            color = colors.get(m.variant_of, colors[m.name]) if m.role == "variant" else colors[m.name]
            ax.plot(rs, [v.mean if v else np.nan for v in vals], "--s" if m.role == "variant" else "-o",
                    color=color, label=f"{names[m.name]}, cold users")
            ax.fill_between(rs, [v.ci[0] if v and v.ci else np.nan for v in vals],
                            [v.ci[1] if v and v.ci else np.nan for v in vals], color=color, alpha=0.15)
            if m.warm is not None and m.role != "variant":
                ax.axhline(m.warm.mean("recall", k), color=colors[m.name], ls=":", lw=1)
        ax.set_xticks(rs)
        ax.set_xlabel("revealed interactions r (0 = features only)")
        ax.set_ylabel(f"recall@{k}")
        ax.set_title(f"Cold start: recall@{k} against revealed history")
        ax.grid(alpha=0.3)
        outside_legend(ax)
        out["cold_start"] = ("The cold-start curve: how fast each model recovers as a new user reveals "
                             "interactions (dotted: the same model on warm users; dashed squares: a variant such as "
                             "the MAP fold-in).", png(fig))

    first = results.models[0].warm
    if first is not None and first.get("leakage", k) is not None:
        fig = Figure(figsize=(max(6, 1.5 * len(pids) + 2), 4.2))
        ax = fig.subplots()
        x = np.arange(len(pids))
        width = 0.8 / (len(main) + 1)
        for i, m in enumerate(main):
            vals = [m.population(p).get("leakage", k) if m.population(p) else None for p in pids]
            y = np.array([v.mean if v else np.nan for v in vals])
            err = np.array([[v.mean - v.ci[0], v.ci[1] - v.mean] if v and v.ci else [np.nan, np.nan]
                            for v in vals]).T
            ax.bar(x + i * width, y, width, yerr=np.nan_to_num(err), capsize=3, color=colors[m.name],
                   label=f"{names[m.name]}")
        nat = [results.models[0].population(p).mean("natural_cross_rate") for p in pids]
        ax.bar(x + len(main) * width, nat, width, color="#dddddd", edgecolor="#999999",
               label="natural cross-group rate")
        ax.set_xticks(x + width * len(main) / 2)
        ax.set_xticklabels(["warm" if p.is_warm else f"cold r={p.revealed}" for p in pids])
        ax.set_ylabel(f"leakage@{k}: share outside the user's group")
        ax.set_ylim(bottom=0)
        ax.set_title("Folding: cross-group leakage against the natural rate")
        ax.grid(alpha=0.3, axis="y")
        outside_legend(ax)
        out["leakage"] = ("Leakage above the light bar (the users' own held-out cross-group rate) is folding.",
                          png(fig))

    if results.folding:
        out["folding_index"] = (folding_caption(), png(folding_figure(results, colors)))
    if results.growth:
        out["growth"] = ("Training seconds per iteration/epoch against the number of training interactions "
                         "(subsamples of this training set, both axes log); the legend gives the fitted exponent b of "
                         "seconds ~ interactions^b and its R². Timings on a shared machine are indicative.",
                         png(growth_figure(results, colors)))

    indexed = [m for m in results.models if m.index is not None and m.index.kind != "exact" and m.index.settings]
    if indexed:
        fig = Figure(figsize=(6, 4.2))
        ax = fig.subplots()
        for m in indexed:
            ix = m.index
            xs = [st.single_ms_p50 for st in ix.settings]
            ys = [st.index_recall for st in ix.settings]
            ax.plot(xs, ys, "-o", color=colors[m.name], label=f"{names[m.name]}, {ix.kind}")
            for st, x, y in zip(ix.settings, xs, ys, strict=True):
                ax.annotate(f"{ix.param}={st.value}", (x, y), textcoords="offset points", xytext=(4, -10),
                            fontsize=9)
            ax.plot([ix.exact_single_ms_p50], [1.0], "s", color=colors[m.name], mfc="none",
                    label=f"{names[m.name]}, exact")
        ax.set_xscale("log")
        ax.set_xlabel("search latency, 1 query, p50 (ms, log)")
        ax.set_ylabel(f"index recall@{indexed[0].index.k} (share of the exact top-k)")
        ax.set_title("Approximate index: speed against accuracy")
        ax.grid(alpha=0.3)
        outside_legend(ax)
        out["index_curve"] = ("Each point is one search setting (efSearch for HNSW, nprobe for IVF); squares are "
                              "exact search. Up and left is better.", png(fig))
    return out


def folding_caption() -> str:
    return ("What the folding verdict reads: each model's folding index (0 = the data's natural cross-group rate, "
            "1 = random recommendations) with its 95% interval; hollow markers are contrasts (the model above "
            "without its folding knob: WALS at w0 = 0, the DNN with no negatives). A knob reduces folding when its "
            "contrast's index is significantly above its model's (adjusted p); it does not when the difference's "
            f"whole interval lies below {FOLD_MARGIN}: the short bar on a contrast's row is its model's index + "
            f"{FOLD_MARGIN}.")


def folding_figure(results: Results, colors: dict[str, str]) -> Any:
    """Folding index per model with its interval, contrasts right under the model they vary, reference
    lines at 0 (natural rate) and 1 (random); each contrast annotated with its paired test and marked
    with the verdict's threshold (its model's index + FOLD_MARGIN)."""
    from matplotlib.figure import Figure

    names = labels(results)
    roles = {m.name: m for m in results.models}
    # a variant shares its model's fitted factors, so its index repeats its model's
    rows = [f for f in folding_order(results) if f.model not in roles or roles[f.model].role != "variant"]
    fig = Figure(figsize=(6, 0.55 * len(rows) + 1.6))
    ax = fig.subplots()
    ys = np.arange(len(rows))[::-1]
    for y, f in zip(ys, rows, strict=True):
        m = roles.get(f.model)
        contrast = m is not None and m.role == "contrast"
        color = colors.get(m.variant_of if contrast and m.variant_of in colors else f.model, "#444444")
        err = None
        if f.ci is not None and not any(np.isnan(c) for c in f.ci):
            err = [[max(f.index - f.ci[0], 0.0)], [max(f.ci[1] - f.index, 0.0)]]
        ax.errorbar([f.index], [y], xerr=err, fmt="o", color=color, mfc="white" if contrast else color, ms=7,
                    capsize=3)
    by_model = {f.model: f for f in rows}
    threshold_label = f"verdict threshold: the contrast's model + {FOLD_MARGIN}"
    for y, f in zip(ys, rows, strict=True):
        m = roles.get(f.model)
        base = by_model.get(m.variant_of) if m is not None and m.role == "contrast" else None
        if base is not None and not np.isnan(base.index):
            ax.plot([base.index + FOLD_MARGIN] * 2, [y - 0.3, y + 0.3], color="#9a6700", lw=2,
                    label=threshold_label)
            threshold_label = "_nolegend_"
    ticks = []
    for f in rows:
        m = roles.get(f.model)
        label = ("↳ " if m is not None and m.role == "contrast" else "") + names.get(f.model, f.model)
        t = folding_test(results, f)
        if t is not None:  # the verdict's test, under the contrast's name
            label += f"\n{t.diff:+.2f}, adj. p {fmt_pvalue(t.p_adjusted)}" + ("" if t.significant else " (n.s.)")
        ticks.append(label)
    ax.set_yticks(ys)
    ax.set_yticklabels(ticks)
    ax.axvline(0.0, color="#1a7f37", ls="--", lw=1, label=f"0: natural cross-group rate ({rows[0].natural:.3f})")
    ax.axvline(1.0, color="#c0392b", ls="--", lw=1, label=f"1: random (leakage {rows[0].random_leakage:.3f})")
    ax.set_xlabel(f"folding index at k = {rows[0].k}, warm users (95% interval)")
    ax.set_title("Folding index: how far towards random each model mixes the groups")
    ax.grid(alpha=0.3, axis="x")
    outside_legend(ax, below=True)
    return fig


def growth_figure(results: Results, colors: dict[str, str]) -> Any:
    """Seconds per iteration/epoch against training interactions, log-log, one line per model."""
    from matplotlib.figure import Figure

    names = labels(results)
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for g in results.growth:
        ax.plot(g.interactions, g.seconds, "-o", color=colors.get(g.model, "#444444"),
                label=f"{names.get(g.model, g.model)}: b = {g.exponent:.2f}, R² = {g.r2:.2f} (per {g.unit})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training interactions (log)")
    ax.set_ylabel("median seconds per iteration/epoch (log)")
    ax.set_title("Training growth on subsamples")
    ax.grid(alpha=0.3, which="both")
    outside_legend(ax)
    return fig
