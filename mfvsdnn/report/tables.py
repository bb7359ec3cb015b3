"""The compare report's tables as (title, header, rows of strings): one source for Markdown and HTML,
and the row labels and notes the terminal uses too. Reads :class:`Results`; computes nothing."""

from __future__ import annotations

import math

from ..experiment.results import ComparisonRow, ModelResult, PopulationId, Results
from .format import fmt, fmt_ci, fmt_p, fmt_value

#: display names of the built-in kinds; any other model shows its own name
KIND_LABELS = {"wals": "WALS", "softmax": "softmax DNN", "popularity": "most popular",
               "group-popularity": "group popular", "random": "random"}

METRIC_LABELS = {"recall": "recall", "ndcg": "NDCG", "precision": "precision", "hit_rate": "hit rate",
                 "coverage": "catalog coverage", "popularity": "popularity percentile", "leakage": "leakage",
                 "natural_cross_rate": "natural cross-group rate",
                 "candidate_recall": "candidate recall (pipeline ceiling)", "recall_truncated": "recall"}

#: what follows "@k" in a metric's label, for metrics that share a display name with another
METRIC_SUFFIXES = {"recall_truncated": " (truncated)"}

COST_LABELS = {
    "seconds": "training time", "seconds_per_iteration": "time per iteration/epoch",
    "iterations": "iterations/epochs run", "query_ms_p50": "query embed, 1 request, p50",
    "query_ms_p99": "query embed, 1 request, p99", "cold_query_ms_p50": "cold query embed, p50",
    "cold_query_ms_p99": "cold query embed, p99", "topk_ms_p50": "score + top-k, 1 request, p50",
    "topk_ms_p99": "score + top-k, 1 request, p99", "batch_ms_per_query": "batched embed + top-k / query",
    "cache_build_seconds": "candidate cache build", "cache_bytes": "candidate cache size",
    "model_bytes": "model size", "sample_users": "requests timed", "cache_users": "users in the cache",
}

COST_NOTES = {
    "seconds_per_iteration": "iterations for WALS, epochs for the DNN; growth with corpus size: mfvsdnn scale",
    "query_ms_p50": "a warm user's query vector (WALS: a stored row; DNN: a tower forward pass)",
    "cold_query_ms_p50": "a new user at the largest r (WALS: fold-in solve; DNN: forward pass)",
    "topk_ms_p50": "score every item, exclude known ones, keep the top max(k)",
    "cache_build_seconds": "precompute-and-store top-k of every warm user; only for models whose query vector "
                           "of a known user is fixed after training (not the DNN: its query depends on the request)",
}


def pipeline_note(m: ModelResult) -> str:
    """How a pipeline was built, e.g. "the softmax scoring wals's top 200"; '' for any other model."""
    st = m.stages
    return "" if not st else f"the {st['scorer']} scoring {st['retriever']}'s top {st['candidates']}"


def model_label(m: ModelResult) -> str:
    """How a model is named in tables: the built-in kind's display name when the name is the kind."""
    return KIND_LABELS.get(m.kind, m.name) if m.name == m.kind else m.name


def labels(results: Results) -> dict[str, str]:
    return {m.name: model_label(m) for m in results.models}


def population_label(pid: PopulationId) -> str:
    if pid.is_warm:
        return "warm"
    return "cold r=0 (features only)" if pid.revealed == 0 else f"cold r={pid.revealed}"


def metric_label(metric: str, k: int | None) -> str:
    name = METRIC_LABELS.get(metric, metric)
    return name if k is None else f"{name}@{k}{METRIC_SUFFIXES.get(metric, '')}"


def row_label(row: ComparisonRow, results: Results) -> str:
    """The row's name, e.g. "recall@20, cold r=3" or "leakage@20, warm (natural 0.050)"."""
    if row.source in ("training", "serving"):
        return COST_LABELS.get(row.quantity, row.quantity)
    text = metric_label(row.quantity, row.k)
    if row.population is not None and not (row.population.is_warm and row.quantity != "leakage"):
        text += f", {population_label(row.population)}"
    if row.quantity == "leakage" and row.target is not None:
        text += f" (natural {row.target:.3f})"
    return text


def row_note(row: ComparisonRow, results: Results) -> str:
    if row.source in ("training", "serving"):
        return COST_NOTES.get(row.quantity, "")
    if row.quantity == "coverage":
        return "share of items recommended to anyone; no interval (a catalogue-level count)"
    if row.quantity == "popularity":
        return "mean popularity percentile of recommended items; 1 = the most popular item"
    if row.quantity == "leakage":
        return ("natural cross-group rate of the same users' held-out interactions; leakage above it is folding")
    if row.population is not None and row.population.revealed == 0:
        feats = results.settings.user_features
        return (f"features used: {', '.join(feats)}" if feats
                else "no user features given (pass --user-features): r=0 queries carry no information")
    return ""


def better_and_significance(row: ComparisonRow, results: Results) -> tuple[str, str]:
    """(better, significance) text of a comparison row."""
    names = labels(results)
    if row.direction == "info" or row.better is None:
        better = "—"
    elif row.better == "tie":
        better = "tie"
    else:
        better = names.get(row.better, row.better)
    if row.significant is None:
        sig = "—"
    else:
        p = fmt_p(row.p)
        sig = ("yes" if row.significant else "no") + (f" ({p})" if p else "")
    return better, sig


def _metric_cell(m: ModelResult, pid: PopulationId, metric: str, k: int | None) -> str:
    p = m.population(pid)
    v = p.get(metric, k) if p is not None else None
    if v is None or math.isnan(v.mean):
        return "n/a"
    return f"{v.mean:.4f}{fmt_ci(v.ci)}"


def compare_tables(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every table of the compare report, every model a column."""
    names = labels(results)
    models = results.models
    a, b = (results.settings.contrast + ["", ""])[:2]
    tables: list[tuple[str, list[str], list[list[str]]]] = []

    header = ["axis", "metric"] + [names[m.name] for m in models] + ["better", "significant"]
    rows = []
    for r in results.comparison:
        cells = [fmt_value(r.values.get(m.name), r.unit) + fmt_ci(r.ci.get(m.name), 3) for m in models]
        rows.append([r.axis, row_label(r, results)] + cells + list(better_and_significance(r, results)))
    contrast = f"{names.get(a, a)} vs {names.get(b, b)}" if a and b else "no contrast"
    tables.append((f"Along the trade-off axes ({contrast}; 95% bootstrap intervals over users)", header, rows))

    ks = results.settings.ks
    for pid in results.population_ids():
        present = [m for m in models if m.population(pid) is not None]
        keys = [(metric, k) for metric in ("recall", "recall_truncated", "ndcg", "precision", "hit_rate", "coverage",
                                           "popularity", "leakage") for k in ks]
        keys.append(("natural_cross_rate", None))
        keys = [key for key in keys if present[0].population(pid).get(*key) is not None]
        keys += list(dict.fromkeys((v.metric, v.k) for m in present for v in m.population(pid).values
                                   if v.metric == "candidate_recall"))
        rows = []
        for metric, k in keys:
            t = results.paired_test(pid, metric, k)
            diff = f"{t.diff:+.4f}{fmt_ci(t.ci)} {fmt_p(t.p)}" if t is not None and not math.isnan(t.diff) else ""
            rows.append([metric_label(metric, k)] + [_metric_cell(m, pid, metric, k) for m in present] + [diff])
        users = present[0].population(pid).users
        title = ("Warm users" if pid.is_warm else f"Cold users, {pid.revealed} revealed") + f" ({users:,} users)"
        tables.append((title, ["metric"] + [names[m.name] for m in present]
                       + [f"difference {names.get(a, a)} − {names.get(b, b)}"], rows))

    warm = [m for m in models if m.warm is not None and m.warm.by_group]
    if warm:
        k = results.settings.main_k
        header = ["group", "users"] + [f"{names[m.name]} {metric_label(x, k)}" for m in warm
                                       for x in ("recall", "leakage")] + ["natural cross rate"]
        rows = []
        for g in warm[0].warm.by_group:
            cells = []
            for m in warm:
                gm = next((x for x in m.warm.by_group if x.group == g.group), None)
                for metric in ("recall", "leakage"):
                    v = next((x.mean for x in gm.values if x.metric == metric and x.k == k), float("nan")) \
                        if gm else float("nan")
                    cells.append(f"{v:.4f}")
            nat = next((x.mean for x in g.values if x.metric == "natural_cross_rate"), float("nan"))
            rows.append([g.group, fmt(g.users)] + cells + [f"{nat:.4f}"])
        tables.append((f"Warm users by group (group = {warm[0].warm.group_source or ''})", header, rows))

    tables += serving_tables(results)
    served = [m for m in models if m.serving is not None]
    if served:
        rows = [[COST_LABELS[key]] + [fmt_value(getattr(m.serving, key), "ms") for m in served]
                for key in ("cold_query_ms_p50", "cold_query_ms_p99")]
        rows.append([COST_LABELS["model_bytes"]] + [fmt_value(m.serving.model_bytes, "bytes") for m in served])
        rows.append([COST_LABELS["seconds"]] + [fmt_value(m.training.seconds, "s") for m in served])
        rows.append([COST_LABELS["seconds_per_iteration"]]
                    + [fmt_value(m.training.seconds_per_iteration, "s") for m in served])
        rows.append([COST_LABELS["iterations"]] + [fmt(m.training.iterations) for m in served])
        tables.append(("Training and model cost", ["what"] + [names[m.name] for m in served], rows))

    rows = [[names[m.name], m.kind, m.run_dir or "", str(m.seed),
             pipeline_note(m) or ", ".join(f"{p}={v}" for p, v in m.params.items())] for m in models]
    tables.append(("Models: kind, run directory, seed, hyper-parameters",
                   ["model", "kind", "run", "seed", "hyper-parameters"], rows))
    split = results.split
    s = results.settings
    rows = [[k, str(v)] for k, v in split["config"].items()] + [
        ["fingerprint", split["fingerprint"]], ["data", str(results.dataset.get("source"))],
        ["warm users evaluated", fmt(split["warm_eval_users"])], ["cold users evaluated", fmt(split["cold_eval_users"])],
        ["user features", ", ".join(s.user_features) or "none"], ["bootstrap resamples", fmt(s.bootstrap)],
        ["cut-offs k", ", ".join(map(str, s.ks))], ["reproduce with", s.command or "(not recorded)"]]
    tables.append(("Split and settings", ["setting", "value"], rows))
    return tables


SERVING_HEADER = ["model", "served by", "embed p50", "retrieve p50", "retrieve p99", "batch / query", "memory",
                  "freshness", "recall@{k} (vs exact)"]


def _ms(x: float | None) -> str:
    return fmt_value(x, "ms")


def serving_rows(m: ModelResult, k: int) -> list[list[str]]:
    """What a serving engineer chooses between for one model: exact search, the approximate index (when
    measured), the precomputed candidate cache (when the model's known-user queries are fixed).

    Latencies are one request (p50/p99 over the timed requests) and per query in a batch; memory is
    what serving holds (item vectors, the index, or the cache table); freshness is what must be redone
    when the model's vectors change; recall is the warm users' recall@k and what the option loses.
    """
    sv, ix = m.serving, m.index
    if sv is None:
        return []
    label = model_label(m)
    exact_recall = ix.exact_recall if ix is not None else (m.warm.mean("recall", k) if m.warm else float("nan"))
    rows = [[label, "exact", _ms(sv.query_ms_p50), _ms(sv.topk_ms_p50), _ms(sv.topk_ms_p99),
             _ms(sv.batch_ms_per_query), fmt_value(sv.model_bytes, "bytes"),
             "always current (scores the current vectors)", f"{exact_recall:.4f}"]]
    if ix is not None and ix.kind != "exact" and ix.default is not None:
        d = ix.default
        setting = f" {ix.param}={d.value}" if ix.param else ""
        rows.append([label, f"{ix.kind}{setting}", _ms(sv.query_ms_p50), _ms(d.single_ms_p50),
                     _ms(d.single_ms_p99), _ms(d.batch_ms_per_query), fmt_value(ix.index_bytes, "bytes"),
                     f"rebuild when item vectors V change ({fmt_value(ix.build_seconds, 's')})",
                     f"{d.recall:.4f} ({-d.recall_loss:+.4f})"])
    if sv.cache_bytes is not None:
        rows.append([label, "candidate cache", "none", "a row read", "a row read", "—", fmt_value(sv.cache_bytes, "bytes"),
                     f"recompute when U or V change ({fmt_value(sv.cache_build_seconds, 's')}, "
                     f"{fmt(sv.cache_users)} users); new users: exact or index",
                     f"{exact_recall:.4f} (= exact)"])
    return rows


def serving_tables(results: Results) -> list[tuple[str, list[str], list[list[str]]]]:
    """The serving section: per model, exact vs approximate index vs candidate cache; then the index's
    speed/accuracy curve (efSearch / nprobe) when one was measured."""
    k = results.settings.main_k
    served = [m for m in results.models if m.serving is not None]
    if not served:
        return []
    rows = [r for m in served for r in serving_rows(m, k)]
    header = [h.format(k=k) for h in SERVING_HEADER]
    zeros = [f"{model_label(m)} {m.index.zero_norm_items:,}" for m in served
             if m.index is not None and m.index.zero_norm_items]
    note = f"; all-zero item vectors (score 0 for every query): {', '.join(zeros)}" if zeros else ""
    out = [(f"Serving: exact vs approximate index vs candidate cache (latencies over "
            f"{served[0].serving.sample_users} single requests; cache = top-{k} of every known user{note})",
            header, rows)]
    indexed = [m for m in served if m.index is not None and m.index.kind != "exact"]
    if indexed:
        ix0 = indexed[0].index
        curve = []
        for m in indexed:
            ix = m.index
            curve.append([model_label(m), "exact", "1.000", f"{ix.exact_recall:.4f}", "+0.0000",
                          _ms(ix.exact_single_ms_p50), _ms(ix.exact_single_ms_p99), _ms(ix.exact_batch_ms_per_query)])
            for st in ix.settings:
                curve.append([model_label(m), f"{ix.kind} {ix.param}={st.value}" + (" (default)" if st.is_default else ""),
                              f"{st.index_recall:.3f}", f"{st.recall:.4f}", f"{-st.recall_loss:+.4f}",
                              _ms(st.single_ms_p50), _ms(st.single_ms_p99), _ms(st.batch_ms_per_query)])
        out.append((f"Serving: {ix0.kind} speed/accuracy settings (search only, {ix0.queries:,} warm users; index "
                    f"recall = share of the exact top-{ix0.k} returned)",
                    ["model", "search", f"index recall@{ix0.k}", f"recall@{ix0.k}", "vs exact", "1 query p50",
                     "1 query p99", "batch / query"], curve))
    return out
