"""The compare report's tables as (title, header, rows of strings): one source for Markdown and HTML,
and the row labels and notes the terminal uses too. Reads :class:`Results`; computes nothing."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..experiment.results import (
    ComparisonRow,
    FoldingResult,
    ModelResult,
    PairedTest,
    PopulationId,
    Results,
    Verdict,
)
from ..experiment.verdicts import BY_DESIGN, FOLD_MARGIN
from .format import fmt, fmt_ci, fmt_value

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


class ReportTable(NamedTuple):
    """One table of the compare report. ``note`` goes under it (e.g. the test family its p-values were
    adjusted in); with ``grouped`` the first cell of each row names the group (trade-off axis) it is in."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    grouped: bool = False


#: the order models appear in: the compared models first, then what is measured beside them
ROLE_ORDER = ("model", "pipeline", "baseline", "contrast", "variant")
#: roles the terminal's main tables show; contrasts and variants go to the sections they test
MAIN_ROLES = ("model", "pipeline", "baseline")


def ordered_models(results: Results, roles: tuple[str, ...] = ROLE_ORDER) -> list[ModelResult]:
    """The models with one of ``roles``, grouped by role in :data:`ROLE_ORDER` (stable within a role);
    a model with a role this report does not know comes last."""
    rank = {r: i for i, r in enumerate(ROLE_ORDER)}
    chosen = [m for m in results.models if m.role in roles or (m.role not in rank and roles == ROLE_ORDER)]
    return sorted(chosen, key=lambda m: rank.get(m.role, len(rank)))


def column_label(m: ModelResult) -> str:
    """A model's column header in the reports: its name, and its role unless it is a compared model,
    e.g. "wals(w0=0) (contrast of wals)"."""
    label = model_label(m)
    if m.role == "model":
        return label
    if m.role in ("contrast", "variant") and m.variant_of:
        return f"{label} ({m.role} of {m.variant_of})"
    return f"{label} ({m.role})"


def fmt_pvalue(p: Any) -> str:
    """A p-value: three decimals, scientific below 0.001, and "< 1e-6" below that (a bootstrap or normal
    approximation says nothing finer)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    p = float(p)
    if p < 1e-6:
        return "< 1e-6"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def fmt_p_pair(p: Any, p_adjusted: Any) -> str:
    """Raw and adjusted p, e.g. "p 0.012, adj. 0.048"; '' without a raw p."""
    raw = fmt_pvalue(p)
    if not raw:
        return ""
    adj = fmt_pvalue(p_adjusted)
    return f"p {raw}" + (f", adj. {adj}" if adj else "")


def seed_spread_shown(sd: float | None) -> bool:
    """Whether a between-seed spread is worth printing: there are several seeds and it is not 0 at four decimals."""
    return sd is not None and not math.isnan(sd) and round(sd, 4) != 0


def fmt_seed_sd(v: Any) -> str:
    """The between-seed spread of a metric, e.g. "±0.0040 seeds"; '' with one seed, and where the seeds'
    means agree to four decimals (a deterministic baseline: "±0.0000" on every row would only hide the others)."""
    sd = getattr(v, "seed_sd", None)
    if not seed_spread_shown(sd):
        return ""
    return f"±{sd:.4f} seeds"


def better_and_significance(row: ComparisonRow, results: Results) -> tuple[str, str]:
    """(better, significance) text of a comparison row; significance is decided by the adjusted p and
    shows the raw and the adjusted p."""
    better, significant, ps = better_significance_parts(row, results)
    return better, significant + (f" ({ps})" if ps else "")


def better_significance_parts(row: ComparisonRow, results: Results) -> tuple[str, str, str]:
    """(better, "yes"/"no"/"—", raw and adjusted p) of a comparison row, for renderers that lay them out."""
    names = labels(results)
    if row.direction == "info" or row.better is None:
        better = "—"
    elif row.better == "tie":
        better = "tie"
    else:
        better = names.get(row.better, row.better)
    if row.significant is None:
        return better, "—", ""
    return better, "yes" if row.significant else "no", fmt_p_pair(row.p, row.p_adjusted)


def _metric_cell(m: ModelResult, pid: PopulationId, metric: str, k: int | None) -> str:
    p = m.population(pid)
    v = p.get(metric, k) if p is not None else None
    if v is None or math.isnan(v.mean):
        return "n/a"
    sd = fmt_seed_sd(v)
    return f"{v.mean:.4f}{fmt_ci(v.ci)}" + (f" {sd}" if sd else "")


def family_note(results: Results, name: str) -> str:
    """The sentence naming a test family under the table whose p-values it adjusted; '' if absent."""
    fam = next((f for f in results.families if f.name == name), None)
    if fam is None:
        return ""
    method = "Holm–Bonferroni" if fam.method == "holm" else fam.method
    return (f"Test family \"{fam.name}\" ({fam.size} paired tests, {method} adjusted p; significant = adjusted "
            f"p below {1 - results.settings.confidence_level:.2g}): {fam.description}.")


def paired_text(t: PairedTest | None) -> str:
    """A paired test as one cell: difference, interval, raw and adjusted p, e.g.
    "+0.0120 [0.0040, 0.0200] p 0.003, adj. 0.012"."""
    if t is None or math.isnan(t.diff):
        return ""
    return f"{t.diff:+.4f}{fmt_ci(t.ci)} {fmt_p_pair(t.p, t.p_adjusted)}".strip()


def folding_order(results: Results) -> list[FoldingResult]:
    """Folding results with each contrast right after the model it varies."""
    by = {f.model: f for f in results.folding}
    out: list[FoldingResult] = []
    for m in ordered_models(results, MAIN_ROLES + ("variant",)):
        if m.name in by:
            out.append(by[m.name])
        out += [by[c.name] for c in results.models if c.role == "contrast" and c.variant_of == m.name
                and c.name in by]
    return out + [f for f in results.folding if f not in out]


def folding_test(results: Results, f: FoldingResult) -> PairedTest | None:
    """The paired test of a contrast's folding index against its model's (None for other models)."""
    m = next((x for x in results.models if x.name == f.model), None)
    if m is None or m.role != "contrast" or not m.variant_of:
        return None
    return next((t for t in results.paired if t.metric == "folding_index" and t.population == f.population
                 and (t.a, t.b) == (m.name, m.variant_of)), None)


def folding_note(results: Results) -> str:
    """What the folding index's ends are on this data, and how the verdict reads the contrasts."""
    if not results.folding:
        return ""
    f0 = results.folding[0]
    text = (f"Folding index = (leakage − natural) / (random's leakage − natural) at k = {f0.k} on warm users: 0 = "
            f"the data's natural cross-group rate {f0.natural:.4f}{fmt_ci(f0.natural_ci)}, 1 = as mixed as random "
            f"recommendations, whose leakage is {f0.random_leakage:.4f}{fmt_ci(f0.random_ci)}. A knob reduces "
            "folding when the contrast without it has a significantly higher index than its model (adjusted p); "
            f"it does not when the whole interval of the difference lies below {FOLD_MARGIN}.")
    if any(f.weak_groups for f in results.folding):
        text += (" Warning: random's leakage lies inside the natural rate's interval: the groups are too weak "
                 "to see folding on this data.")
    return text


def folding_table(results: Results) -> ReportTable | None:
    if not results.folding:
        return None
    models = {m.name: m for m in results.models}
    k = results.folding[0].k
    rows = []
    for f in folding_order(results):
        m = models.get(f.model)
        name = column_label(m) if m is not None else f.model
        ci = f" [{f.ci[0]:.3f}, {f.ci[1]:.3f}]" if f.ci is not None and not any(math.isnan(c) for c in f.ci) else ""
        rows.append([name, f"{f.leakage:.4f}", f"{f.index:.3f}{ci}", paired_text(folding_test(results, f)) or "—"])
    return ReportTable(f"Folding (warm users, k = {k})",
                       ["model", f"leakage@{k}", "folding index [95% CI]", "contrast − its model (index)"], rows,
                       folding_note(results))


def growth_table(results: Results) -> ReportTable | None:
    if not results.growth:
        return None
    first = results.growth[0]
    header = ["model", "per"] + [f"{fr:.0%} ({n:,})" for fr, n in zip(first.fractions, first.interactions, strict=False)]
    header += ["exponent b", "R²", "repeats"]
    rows = []
    for g in results.growth:
        at = dict(zip(g.fractions, g.seconds, strict=False))
        cells = [fmt_value(at.get(fr), "s") for fr in first.fractions]
        rows.append([g.model, g.unit] + cells + [f"{g.exponent:.2f}", f"{g.r2:.2f}", fmt(g.repeats)])
    return ReportTable("Training growth on subsamples of this training set", header, rows,
                       "Median seconds per iteration/epoch on each fraction of the training interactions (their "
                       "number in brackets); b is the fitted exponent of seconds ~ interactions^b (1 = linear). "
                       "Timings on a shared machine are indicative.")


def tuning_summary(tuning: dict[str, Any]) -> tuple[str, str, str]:
    """(trials, chosen parameters, best validation recall) of a tuning record, read generically."""
    trials = tuning.get("trials")
    count = fmt(len(trials)) if isinstance(trials, list) else fmt(tuning.get("n_trials"))
    best = tuning.get("best_params")
    index = tuning.get("best_trial")
    winner = trials[index] if isinstance(trials, list) and isinstance(index, int) and 0 <= index < len(trials) \
        else None
    if isinstance(winner, dict) and isinstance(winner.get("params"), dict):
        best = winner["params"]  # what was fitted: best_params holds only what differs from the spec
    chosen = ", ".join(f"{p}={v}" for p, v in best.items()) if isinstance(best, dict) else fmt(best)
    if index == 0:
        chosen += " (trial 0: the parameters as given)"
    if tuning.get("tuned") is False:
        chosen = f"not tuned ({tuning.get('reason') or 'no reason recorded'}); {chosen}"
    score = next((tuning[key] for key in ("best_valid_recall", "best_recall", "best_value", "best_score")
                  if isinstance(tuning.get(key), int | float)), None)
    if score is None and isinstance(trials, list):
        found = [v for t in trials if isinstance(t, dict) for key, v in t.items()
                 if "recall" in key and isinstance(v, int | float) and not math.isnan(float(v))]
        score = max(found) if found else None
    return count, chosen, fmt(float(score)) if score is not None else "n/a"


def tuning_table(results: Results) -> ReportTable | None:
    tuned = [m for m in ordered_models(results) if m.tuning and m.role != "variant"]
    if not tuned:
        return None
    rows = [[column_label(m), *tuning_summary(m.tuning)] for m in tuned]
    return ReportTable("Tuning on validation (random search, the same budget per learned model)",
                       ["model", "trials", "chosen parameters", "best validation recall"], rows)


def fold_in_prior_table(results: Results) -> ReportTable | None:
    variants = [m for m in results.models if m.role == "variant" and m.tuning and "fold_in_prior" in m.tuning]
    if not variants:
        return None
    rows = []
    for m in variants:
        grid = m.tuning.get("grid") or []
        rows.append([column_label(m), f"{float(m.tuning['fold_in_prior']):g}",
                     ", ".join(f"{float(lam):g}: {float(rec):.4f}" for lam, rec in grid) or "—",
                     str(m.tuning.get("chosen_on", "validation"))])
    return ReportTable("Cold start: the MAP fold-in's prior weight λ", ["variant", "λ chosen", "grid (λ: recall)",
                                                                       "chosen on"], rows,
                       "The variant folds cold users in with a prior toward the feature-mean embedding (weight λ); "
                       "it shares its model's fitted factors.")


def family_table(results: Results, name: str) -> ReportTable | None:
    """Every paired test of one family: a − b, population, metric, difference, raw and adjusted p."""
    tests = [t for t in results.paired if t.family == name]
    if not tests:
        return None
    names = labels(results)
    rows = [[f"{names.get(t.a, t.a)} − {names.get(t.b, t.b)}", population_label(t.population),
             metric_label(t.metric if t.metric != "folding_index" else "folding index", t.k),
             f"{t.diff:+.4f}{fmt_ci(t.ci)}", fmt_pvalue(t.p), fmt_pvalue(t.p_adjusted),
             "yes" if t.significant else "no"] for t in tests]
    return ReportTable(f"Paired tests: {name}", ["a − b", "population", "metric", "difference [95% CI]", "p",
                                                 "adjusted p", "significant"], rows, family_note(results, name))


def compare_tables(results: Results) -> list[ReportTable]:
    """Every table of the compare report, every model a column (grouped by role: compared models,
    pipelines, baselines, contrasts, variants)."""
    names = labels(results)
    models = ordered_models(results)
    a, b = (results.settings.contrast + ["", ""])[:2]
    tables: list[ReportTable] = []

    header = ["axis", "metric"] + [column_label(m) for m in models] + ["better", "significant"]
    rows = []
    for r in results.comparison:
        cells = [fmt_value(r.values.get(m.name), r.unit) + fmt_ci(r.ci.get(m.name), 3) for m in models]
        rows.append([r.axis, row_label(r, results)] + cells + list(better_and_significance(r, results)))
    contrast = f"{names.get(a, a)} vs {names.get(b, b)}" if a and b else "no contrast"
    tables.append(ReportTable(f"Along the trade-off axes ({contrast}; 95% intervals)", header, rows,
                              family_note(results, "comparison"), grouped=True))

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
            rows.append([metric_label(metric, k)] + [_metric_cell(m, pid, metric, k) for m in present]
                        + [paired_text(results.paired_test(pid, metric, k))])
        users = present[0].population(pid).users
        title = ("Warm users" if pid.is_warm else f"Cold users, {pid.revealed} revealed") + f" ({users:,} users)"
        note = family_note(results, "comparison")
        if results.settings.repeats > 1:
            note = (f"±: standard deviation between the {results.settings.repeats} model seeds' means (left out where "
                    "they agree to four decimals). " + note)
        tables.append(ReportTable(title, ["metric"] + [column_label(m) for m in present]
                                  + [f"difference {names.get(a, a)} − {names.get(b, b)}"], rows, note.strip()))
        if not pid.is_warm and pid == results.population_ids()[-1]:
            prior = fold_in_prior_table(results)
            if prior is not None:
                tables.append(prior)

    fold = folding_table(results)
    if fold is not None:
        tables.append(fold)

    warm = [m for m in ordered_models(results, MAIN_ROLES) if m.warm is not None and m.warm.by_group]
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
        tables.append(ReportTable(f"Warm users by group (group = {warm[0].warm.group_source or ''})", header, rows))

    for name in ("verdicts", "pipelines"):
        fam = family_table(results, name)
        if fam is not None:
            tables.append(fam)

    tables += [ReportTable(*t) for t in serving_tables(results)]
    served = [m for m in models if m.serving is not None]
    if served:
        rows = [[COST_LABELS[key]] + [fmt_value(getattr(m.serving, key), "ms") for m in served]
                for key in ("cold_query_ms_p50", "cold_query_ms_p99")]
        rows.append([COST_LABELS["model_bytes"]] + [fmt_value(m.serving.model_bytes, "bytes") for m in served])
        rows.append([COST_LABELS["seconds"]] + [fmt_value(m.training.seconds, "s") for m in served])
        rows.append([COST_LABELS["seconds_per_iteration"]]
                    + [fmt_value(m.training.seconds_per_iteration, "s") for m in served])
        rows.append([COST_LABELS["iterations"]] + [fmt(m.training.iterations) for m in served])
        tables.append(ReportTable("Training and model cost", ["what"] + [column_label(m) for m in served], rows))
    growth = growth_table(results)
    if growth is not None:
        tables.append(growth)

    tuned = tuning_table(results)
    if tuned is not None:
        tables.append(tuned)
    rows = [[names[m.name], m.role + (f" of {m.variant_of}" if m.variant_of else ""), m.kind, m.run_dir or "",
             str(m.seed), fmt(m.repeats), pipeline_note(m) or ", ".join(f"{p}={v}" for p, v in m.params.items())]
            for m in models]
    tables.append(ReportTable("Models: role, kind, run directory, seed, model seeds, hyper-parameters",
                              ["model", "role", "kind", "run", "seed", "model seeds", "hyper-parameters"], rows))
    split = results.split
    s = results.settings
    rows = [[k, str(v)] for k, v in split["config"].items()] + [
        ["fingerprint", split["fingerprint"]], ["data", str(results.dataset.get("source"))],
        ["warm users evaluated", fmt(split.get("warm_eval_users"))],
        ["cold users evaluated", fmt(split.get("cold_eval_users"))],
        ["user features", ", ".join(s.user_features) or "none"], ["bootstrap resamples", fmt(s.bootstrap)],
        ["model seeds per model", fmt(s.repeats)], ["tuning trials per learned model", fmt(s.tune)],
        ["cut-offs k", ", ".join(map(str, s.ks))], ["reproduce with", s.command or "(not recorded)"]]
    tables.append(ReportTable("Split and settings", ["setting", "value"], rows))
    return tables


def verdict_text(v: Verdict) -> str:
    """The verdict as a reader sees it: "agrees (by design)" when the claim holds by construction."""
    return v.verdict + (" (by design)" if v.basis == BY_DESIGN else "")


def method_text(results: Results) -> str:
    """The intro sentence on seeds, intervals and tuning, e.g. "3 model seeds per model; intervals: ..."."""
    s = results.settings
    seeds = f"{s.repeats} model seeds per model" if s.repeats > 1 else "one model seed per model"
    how = ("two-level bootstrap over seeds, then users" if s.repeats > 1 else "bootstrap over users")
    tune = (f"{s.tune} random-search trials per learned model on validation" if s.tune > 1
            else "none (default hyper-parameters)")
    return (f"{seeds}; intervals: {how} ({s.bootstrap} resamples, {s.confidence_level:.0%}), differences paired "
            f"over the same users; tuning: {tune}")


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
