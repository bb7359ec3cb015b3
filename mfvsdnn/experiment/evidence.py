"""The evidence the verdicts decide with, gathered by the runner around fitting and evaluation.

- **Equal tuning budget**: every learned model gets the same number of random-search trials on
  validation (:mod:`.tuning`); baselines have nothing to tune.
- **Contrasts the claims name**: the folding claim is a contrast (w0 = 0 against the chosen w0; no
  negatives against the chosen negatives), so those models are trained on the same split, seeds alike.
- **MAP fold-in**: each MF model is also reported with its cold users folded in under a prior toward
  the feature-mean embedding (weight chosen on validation), beside the plain fold-in, from the same fit.
- **Paired tests in named families** with Holm–Bonferroni adjusted p-values: "comparison" (the
  contrasted pair, every metric at the main k on every population: the rows of the comparison table),
  "verdicts" (each learned model against the best baseline, feature use against the feature-blind
  most-popular, the DNN against the MAP fold-in, the folding contrasts) and "pipelines" (each pipeline
  against each of its stages, recall at the main k on every population). "Significant" always means
  the adjusted p.
- **Folding indices** with intervals, **training growth** on subsamples, and **warnings**.
"""

from __future__ import annotations

import math
from typing import Any

from ..core.progress import ProgressFactory
from ..core.seeding import generator
from ..data.split import Split
from ..evaluation import uncertainty
from ..evaluation.evaluator import PopulationEval
from ..models import registry
from .fitted import FittedModel, population_id
from .results import (
    WARM,
    FoldingResult,
    GrowthResult,
    ModelResult,
    PairedTest,
    PopulationId,
    Results,
    TestFamily,
    best_baseline,
    cold,
)
from .spec import CONFIDENCE_LEVEL, ExperimentSpec, ModelSpec

#: a population with fewer evaluated users than this gets a warning (its intervals are wide)
MIN_USERS = 50
LEARNED = ("mf", "dnn")
FEATURE_BLIND = "popularity"
RANDOM = "random"

Evals = dict[str, list[dict[str, PopulationEval]]]


# ---------------------------------------------------------------------------------------------
# before and around fitting


def tune_models(spec: ExperimentSpec, split: Split, progress_factory: ProgressFactory, fit: Any
                ) -> tuple[dict[str, dict], dict[str, Any]]:
    """Tune every learned model trained here with ``spec.tune`` trials on validation (the same budget for
    each); replaces its ``params`` by the best trial's. Returns (model name -> the tuning record, model
    name -> the winning trial's fitted model: the seed-0 fit of the chosen parameters, not fitted again)."""
    records: dict[str, dict] = {}
    winners: dict[str, Any] = {}
    if spec.tune <= 1:
        return records, winners
    from . import tuning

    for s in spec.models:
        if s.run_dir is not None or registry.family_of(s.kind) not in LEARNED or s.kind not in tuning.SEARCH_SPACES:
            continue
        result = tuning.tune(s, split, spec.seed, spec.tune, lambda ms, sp, seed: fit(ms, sp, seed),
                             progress_factory=progress_factory)
        s.params = dict(result.best_params)
        records[s.label] = result.to_dict()
        if result.best_fitted is not None:
            winners[s.label] = result.best_fitted
    return records, winners


def _first(fitted: list[Any], family: str) -> Any:
    return next((fm for fm in fitted if fm.role == "model" and fm.model.family == family), None)


def contrast_specs(spec: ExperimentSpec, fitted: list[Any]) -> list[tuple[ModelSpec, str]]:
    """The folding contrasts of the claim, as (spec, name of the model it varies): the first MF model
    refitted at w0 = 0 (when its w0 > 0), the first DNN model with no negatives and no gravity (when it
    has either). Parameters are the fitted model's own (after tuning)."""
    out = []
    taken = {fm.name for fm in fitted} | {m.label for m in spec.models}
    mf, dnn = _first(fitted, "mf"), _first(fitted, "dnn")
    if mf is not None and float(mf.model.get_params().get("w0", 0.0) or 0.0) > 0:
        name = f"{mf.name}(w0=0)"
        if name not in taken:
            out.append((ModelSpec(mf.model.kind, {**mf.model.get_params(), "w0": 0.0}, name=name), mf.name))
    if dnn is not None:
        p = dnn.model.get_params()
        neg, grav = p.get("negatives"), float(p.get("gravity", 0.0) or 0.0)
        if neg == "all" or (isinstance(neg, int) and neg > 0) or grav > 0:
            name = f"{dnn.name}(negatives=0)"
            if name not in taken:
                out.append((ModelSpec(dnn.model.kind, {**p, "negatives": 0, "gravity": 0.0}, name=name), dnn.name))
    return out


def map_variants(fitted: list[Any], split: Split, seed: int) -> list[Any]:
    """Each MF model that supports it, also with the MAP fold-in (prior weight chosen on validation
    pseudo-cold users), as a "variant" sharing the fitted factors (no refit)."""
    from .coldstart import choose_fold_in_prior

    out = []
    train = split.train_set()
    for fm in [f for f in fitted if f.role == "model" and f.model.family == "mf"]:
        if not hasattr(fm.model, "with_fold_in_prior"):
            continue
        choice = choose_fold_in_prior(fm.model, train, tuple(split.config.revealed), generator(seed, "fold-in prior"))
        lam = float(choice.lam) if not math.isnan(float(choice.lam)) else 0.0
        members = [m.with_fold_in_prior(lam) for m in fm.all_models]
        out.append(FittedModel(f"{fm.name}+map", members[0], fm.seed, None, fm.trained_here, fm.validation_recall,
                               others=members[1:], role="variant", variant_of=fm.name,
                               tuning={"fold_in_prior": lam, "grid": [[float(a), float(b)] for a, b in choice.table],
                                       "chosen_on": "validation pseudo-cold users"},
                               validation_recalls=list(fm.validation_recalls)))
    return out


# ---------------------------------------------------------------------------------------------
# paired tests in families


def _tests(a: str, b: str, evals: Evals, spec: ExperimentSpec, family: str, metrics: tuple[str, ...] | None = None,
           pops: tuple[PopulationId, ...] | None = None, salt: str = "") -> list[PairedTest]:
    """Paired two-level bootstrap of a − b at the main k (and k-free metrics), one shared resampling."""
    rng = generator(spec.seed, "paired", family, a, b, salt)
    out = []
    for pop_name in evals[a][0]:
        if pop_name not in evals[b][0]:
            continue
        pid = population_id(evals[a][0][pop_name])
        if pops is not None and pid not in pops:
            continue
        ests = uncertainty.repeat_paired([e[pop_name] for e in evals[a]], [e[pop_name] for e in evals[b]],
                                         spec.bootstrap, rng, CONFIDENCE_LEVEL)
        for (metric, k), est in ests.items():
            if metric == "natural_cross_rate" or (k is not None and k != spec.main_k and metric != "candidate_recall"):
                continue
            if metrics is not None and metric not in metrics:
                continue
            out.append(PairedTest(a, b, pid, metric, k, est.diff, (est.low, est.high), est.p, False, family=family,
                                  se=est.se))
    return out


def _folding_contrast(a: str, b: str, evals: Evals, models: list[ModelResult], spec: ExperimentSpec) -> PairedTest | None:
    rnd = next((m for m in models if m.kind == RANDOM and m.role == "baseline"), None)
    if rnd is None or "warm" not in evals[a][0] or ("leakage", spec.main_k) not in evals[a][0]["warm"].per_user:
        return None
    est = uncertainty.folding_contrast([e["warm"] for e in evals[a]], [e["warm"] for e in evals[b]],
                                       [e["warm"] for e in evals[rnd.name]], spec.main_k, spec.bootstrap,
                                       generator(spec.seed, "folding contrast", a, b), CONFIDENCE_LEVEL)
    return PairedTest(a, b, WARM, "folding_index", spec.main_k, est.diff, (est.low, est.high), est.p, False,
                      family="verdicts", se=est.se)


def paired_families(models: list[ModelResult], evals: Evals, contrast: list[str], plans: list[Any],
                    spec: ExperimentSpec) -> tuple[list[PairedTest], list[TestFamily]]:
    """Every paired test of the report in its family, Holm–Bonferroni adjusted within the family."""
    k = spec.main_k
    tests: list[PairedTest] = []
    if len(contrast) == 2:
        tests += _tests(contrast[0], contrast[1], evals, spec, "comparison")
    by = {m.name: m for m in models}
    verdict_tests: list[PairedTest] = []
    learned = [m for m in models if m.role in ("model", "variant") and m.family in LEARNED]
    pids = sorted({p.population for m in models for p in m.populations},
                  key=lambda p: (0 if p.is_warm else 1, p.revealed or 0))
    for m in learned:  # does each learned model beat the best baseline, population by population?
        for pid in pids:
            base = best_baseline(models, pid, k)
            if base is not None and m.population(pid) is not None:
                verdict_tests += _tests(m.name, base.name, evals, spec, "verdicts", ("recall",), (pid,), "baseline")
    blind = next((m for m in models if m.kind == FEATURE_BLIND and m.role == "baseline"), None)
    if blind is not None and cold(0) in pids:  # feature use is credited only above the feature-blind baseline
        for m in learned:
            if m.role == "model" and not any(t.a == m.name and t.b == blind.name and t.population == cold(0)
                                             for t in verdict_tests):
                verdict_tests += _tests(m.name, blind.name, evals, spec, "verdicts", ("recall",), (cold(0),), "blind")
    dnn = next((m for m in models if m.role == "model" and m.family == "dnn"), None)
    for v in [m for m in models if m.role == "variant"]:
        if dnn is not None:
            revealed = tuple(p for p in pids if not p.is_warm and p.revealed)
            verdict_tests += _tests(dnn.name, v.name, evals, spec, "verdicts", ("recall",), revealed, "fold-in")
    for c in [m for m in models if m.role == "contrast" and m.variant_of in by]:
        t = _folding_contrast(c.name, c.variant_of, evals, models, spec)
        if t is not None:
            verdict_tests.append(t)
    tests += verdict_tests
    for plan in plans:  # each pipeline against each of its stages alone, on the metric its verdict reads
        for stage in dict.fromkeys((plan.retriever, plan.scorer)):
            tests += _tests(plan.name, stage, evals, spec, "pipelines", ("recall",))
    described = {
        "comparison": (f"{' − '.join(contrast)}: every metric at k = {k} on every population "
                       "(the rows of the comparison table)") if len(contrast) == 2 else "",
        "verdicts": ("the tests the verdicts decide with: each learned model against the best baseline on each "
                     "population, feature use against the feature-blind most-popular, the DNN against the MAP "
                     "fold-in, and the folding contrasts"),
        "pipelines": f"each pipeline against each of its stages alone: recall@{k} on every population",
    }
    families = []
    for name, text in described.items():
        members = [t for t in tests if t.family == name]
        if not members:
            continue
        adjusted = uncertainty.holm([t.p for t in members])
        for t, p_adj in zip(members, adjusted):
            t.p_adjusted = float(p_adj)
            t.significant = uncertainty.is_significant(float(p_adj), CONFIDENCE_LEVEL)
        families.append(TestFamily(name, text, len(members)))
    return tests, families


# ---------------------------------------------------------------------------------------------
# folding indices, growth, warnings


def folding_results(models: list[ModelResult], evals: Evals, spec: ExperimentSpec) -> list[FoldingResult]:
    """The folding index of every non-baseline model on the warm users (needs item groups and random)."""
    rnd = next((m for m in models if m.kind == RANDOM and m.role == "baseline"), None)
    k = spec.main_k
    if rnd is None or "warm" not in evals[rnd.name][0] or ("leakage", k) not in evals[rnd.name][0]["warm"].per_user:
        return []
    random_evs = [e["warm"] for e in evals[rnd.name]]
    out = []
    for m in models:
        if m.role == "baseline" and m.kind == RANDOM:
            continue
        est = uncertainty.folding_estimate([e["warm"] for e in evals[m.name]], random_evs, k, spec.bootstrap,
                                           generator(spec.seed, "folding", m.name), CONFIDENCE_LEVEL)
        out.append(FoldingResult(m.name, WARM, k, est.index, (est.low, est.high), est.leak, est.natural,
                                 (est.natural_low, est.natural_high), est.random_leak,
                                 (est.random_low, est.random_high), bool(est.weak_groups)))
    return out


def training_growth(spec: ExperimentSpec, fitted: list[Any], split: Split,
                    progress_factory: ProgressFactory) -> list[GrowthResult]:
    """Training seconds per iteration/epoch on subsamples of this training set, for the first MF and
    the first DNN model (with their final parameters), and the fitted growth exponents."""
    from . import growth

    chosen = [fm for fm in (_first(fitted, "mf"), _first(fitted, "dnn")) if fm is not None]
    if not chosen:
        return []
    specs = [ModelSpec(fm.model.kind, fm.model.get_params(), name=fm.name) for fm in chosen]
    with progress_factory("measuring training growth on subsamples") as prog:
        found = growth.training_growth(specs, split.train_set(), spec.seed, tuple(spec.growth_fractions),
                                       spec.growth_repeats, prog)
    return [GrowthResult(g.model, g.kind, g.unit, [float(f) for f in g.fractions], [int(x) for x in g.interactions],
                         [float(x) for x in g.seconds], float(g.exponent), float(g.r2), spec.growth_repeats)
            for g in found]


def warnings(results: Results) -> list[str]:
    """What a reader must not miss: a learned model that does not beat the best baseline on warm users,
    a population with fewer than MIN_USERS evaluated users, early stopping before the step budget."""
    k = results.settings.main_k
    out = []
    base = best_baseline(results.models, WARM, k)
    for m in results.models:
        if m.role not in ("model", "pipeline") or m.family == "baseline" or m.warm is None:
            continue
        if base is not None and not m.warm.mean("recall", k) > base.warm.mean("recall", k):
            out.append(f"{m.name} does not beat the best baseline on warm users (recall@{k} "
                       f"{m.warm.mean('recall', k):.3f} vs {base.name} {base.warm.mean('recall', k):.3f}): "
                       "verdicts about it are 'cannot tell'")
        t = m.training
        if t.stopped_early and t.steps is not None and t.min_steps is not None and t.steps < t.min_steps:
            out.append(f"{m.name}: early stopping fired after {t.steps:,} optimiser steps, before the step budget "
                       f"of {t.min_steps:,}; it may be undertrained")
    seen = set()
    for m in results.models:
        for p in m.populations:
            if p.population not in seen and p.users < MIN_USERS:
                seen.add(p.population)
                what = "warm users" if p.population.is_warm else f"cold users with r = {p.population.revealed}"
                out.append(f"{what}: only {p.users} users evaluated (fewer than {MIN_USERS}); intervals are wide and "
                           "differences rarely significant")
    return out
