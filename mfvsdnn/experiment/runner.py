"""The one path from data to results: read, split, fit (or load) every model, evaluate, summarise.

``compare``, ``sweep``, ``scale`` and ``compare --engine spark`` all come through :func:`run` (or its
parts :func:`fit_model` / :func:`evaluate_models`), so every model is trained, seeded and measured
the same way:

- the split is ``make_split(data, spec.split)``;
- model ``m`` of kind ``K`` fits with ``generator(seed, "fit", K, 0)`` (see ``core.seeding``), so the
  same seed gives the same model in train-wals, compare and sweep;
- every model is evaluated by the same evaluator on the same populations, and the bootstrap draws the
  same resamples of users for every model (``generator(seed, "bootstrap")``), so intervals are comparable
  and differences paired.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import EvaluationError
from ..core.progress import ProgressFactory, ProgressFn, no_progress, silent
from ..core.seeding import generator
from ..data import read_interactions, summarize
from ..data.split import Split, SplitConfig, make_split
from ..evaluation import evaluator, uncertainty
from ..evaluation.cost import index_cost, serving_cost, training_cost
from ..evaluation.evaluator import PopulationEval
from ..evaluation.maps import embedding_map
from ..evaluation.populations import populations as population_sets
from ..models import registry
from ..models.memory import check_model_memory
from ..models.pipeline import Pipeline, pipeline_name
from .comparison import comparison_rows
from .fitted import FittedModel, population_id
from .results import (
    GroupBreakdown,
    IndexCost,
    MetricValue,
    ModelResult,
    PopulationId,
    PopulationResult,
    Results,
    ServingCost,
    Settings,
    TrainingCost,
)
from .spec import CONFIDENCE_LEVEL, DataSpec, ExperimentSpec, ModelSpec

VALIDATION_K = 20


@dataclass
class PipelinePlan:
    """One pipeline to assemble after fitting: its name, the names of its stage models, its N."""

    name: str
    retriever: str
    scorer: str
    candidates: int


@dataclass
class Outcome:
    """What :func:`run` returns: the typed results, the fitted models, and the embedding maps for plots
    (2-D projections of each model's item vectors; kept out of report.json for their size)."""

    results: Results
    models: dict[str, FittedModel]
    maps: dict[str, dict] = field(default_factory=dict)
    split: Split | None = None
    #: model name -> one ``{population: PopulationEval}`` per model seed (the per-user values)
    evals: dict[str, list[dict[str, PopulationEval]]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# data and models


def prepare_split(data: DataSpec, split_config: SplitConfig) -> Split:
    """Read the interaction file (and an explicit test file) and split it deterministically."""
    dataset = read_interactions(data.path, data.columns, test_path=data.test_path)
    return make_split(dataset, split_config)


def check_models(specs: list[ModelSpec]) -> None:
    """Refuse unknown kinds and invalid parameters before any data is read."""
    for s in specs:
        registry.get(s.kind)
        if s.run_dir is None:
            registry.check_params(s.kind, s.params, f"{s.label} hyper-parameters")


def _stage_model(spec: ExperimentSpec, kind: str, extra: dict[str, Any], option: str) -> str:
    """The name of the model of ``spec.models`` a pipeline stage is: the experiment's own model of
    ``kind`` when ``extra`` is empty, else one of that kind with the same full hyper-parameters; a
    missing one is appended (so it is fitted once, with the seeding rule, and reported alone too)."""
    registry.get(kind)
    base = next((m for m in spec.models if m.kind == kind), None)
    if not extra and base is not None:
        return base.label
    wanted = {**(base.params if base is not None and base.run_dir is None else {}), **extra}
    full = registry.check_params(kind, wanted, option)
    for m in spec.models:
        if m.kind == kind and m.run_dir is None and registry.check_params(kind, m.params, option) == full:
            return m.label
    name = kind if not extra else f"{kind}({','.join(f'{k}={v}' for k, v in extra.items())})"
    if name in {m.label for m in spec.models}:
        raise EvaluationError(f"pipeline stage {name}: a model of that name is already compared with other "
                              "hyper-parameters")
    spec.models.append(ModelSpec(kind, wanted, name=name))
    return name


def plan_pipelines(spec: ExperimentSpec) -> list[PipelinePlan]:
    """Resolve every pipeline of ``spec`` to the stage models it reuses (appending missing ones to
    ``spec.models``; calling it again changes nothing). Refuses unknown kinds, bad stage parameters and
    names taken by a model, before any data is read."""
    plans: list[PipelinePlan] = []
    for p in spec.pipelines:
        retriever = _stage_model(spec, p.retriever, p.retriever_params, "--retriever-param")
        scorer = _stage_model(spec, p.scorer, p.scorer_params, "--scorer-param")
        for n in dict.fromkeys(p.candidates):
            name = pipeline_name(retriever, scorer, n if len(set(p.candidates)) > 1 else None)
            if name not in {x.name for x in plans}:
                plans.append(PipelinePlan(name, retriever, scorer, int(n)))
    taken = {m.label for m in spec.models} & {x.name for x in plans}
    if taken:
        raise EvaluationError(f"pipeline name(s) {', '.join(sorted(taken))} are taken by a compared model")
    return plans


def fit_pipeline(plan: PipelinePlan, fitted: dict[str, FittedModel], split: Split, seed: int) -> FittedModel:
    """The pipeline of two already fitted stage models (nothing is retrained), with its validation recall."""
    r, s = fitted[plan.retriever], fitted[plan.scorer]
    # repeat i of the pipeline chains repeat i of each stage (a stage with fewer repeats, e.g. a loaded
    # run, contributes its last one)
    n = max(len(r.all_models), len(s.all_models))
    models = [Pipeline(r.all_models[min(i, len(r.all_models) - 1)], s.all_models[min(i, len(s.all_models) - 1)],
                       plan.candidates) for i in range(n)]
    return FittedModel(plan.name, models[0], seed, None, r.trained_here or s.trained_here,
                       validation_recall(models[0], split, seed),
                       {"retriever": plan.retriever, "scorer": plan.scorer, "candidates": plan.candidates},
                       others=models[1:], role="pipeline")


def validator(train: Any, seed: int) -> Any:
    """The early-stopping callback: ``model -> recall@20 on the validation slice`` (same users every call)."""
    return lambda model: float(evaluator.validation_recall(model, train, k=VALIDATION_K,
                                                           rng=generator(seed, "validation")))


def validation_recall(model: Any, split: Split, seed: int) -> float:
    """recall@20 on the validation slice (NaN without one), on the same seeded users for every model."""
    return validator(split.train_set(), seed)(model)


def fit_model(spec: ModelSpec, split: Split, seed: int, progress: ProgressFn = no_progress,
              save_to: Path | None = None, repeat: int = 0) -> FittedModel:
    """Fit one model on the split with the seeding rule, measure validation recall, save if asked."""
    from ..models.store import save_run

    model = registry.get(spec.kind)(**spec.params)
    train = split.train_set()
    if hasattr(model, "estimate_bytes"):
        check_model_memory(model, train)  # before fit allocates anything large
    t0 = time.perf_counter()
    rng = generator(seed, "fit", spec.kind, repeat)
    if "validate" in inspect.signature(model.fit).parameters:  # early stopping on validation, as a callback
        model.fit(train, rng, progress, validate=validator(train, seed))
    else:
        model.fit(train, rng, progress)
    if not getattr(model, "train_seconds_", 0.0):
        model.train_seconds_ = time.perf_counter() - t0
    recall = validation_recall(model, split, seed)
    run_dir = None
    if save_to is not None:
        run_dir = save_run(save_to, model, split, seed, extra={"valid_recall@20": recall})
    return FittedModel(spec.label, model, seed, run_dir, True, recall)


def load_model(spec: ModelSpec) -> tuple[FittedModel, Any]:
    """Load a trained run (its split is checked by :func:`check_runs`). Returns (fitted, run)."""
    from ..models.store import load_run

    run = load_run(spec.run_dir)
    if run.kind != spec.kind:
        raise EvaluationError(f"{spec.run_dir}: this run is a {run.kind!r} model, not {spec.kind!r}")
    fitted = FittedModel(spec.label, run.model, run.meta.get("seed"), run.path, False,
                         float(run.meta.get("valid_recall@20", float("nan")) or float("nan")))
    return fitted, run


def check_runs(runs: dict[str, Any], split: Split | None, data: Path | str | None) -> None:
    """Refuse loaded runs trained on another split than each other, or than DATA with these options."""
    items = list(runs.items())
    for (name_a, a), (name_b, b) in zip(items, items[1:]):
        if a.fingerprint != b.fingerprint:
            raise EvaluationError(
                f"the runs were trained on different splits: {name_a} {a.path} has split fingerprint "
                f"{a.fingerprint} ({a.meta['split'].get('source')}), {name_b} {b.path} has {b.fingerprint} "
                f"({b.meta['split'].get('source')}); retrain both on the same data and split options")
    if split is None:
        return
    for name, r in items:
        if r.fingerprint == split.fingerprint:
            continue
        run_cfg, cfg = r.meta["split"].get("config", {}), split.config.as_dict()
        diff = [f"{k}={run_cfg.get(k)!r} vs {cfg.get(k)!r}" for k in cfg if run_cfg.get(k) != cfg.get(k)]
        run_cols, cols = r.meta["split"].get("columns", {}), split.dataset.columns.as_dict()
        col_diff = [f"{k}={run_cols.get(k)!r} vs {cols.get(k)!r}" for k in cols if run_cols.get(k) != cols.get(k)]
        diff += col_diff or (["column options differ"] if run_cols != cols else [])
        why = "; ".join(diff) if diff else "the data file's bytes differ"
        raise EvaluationError(
            f"{name} {r.path}: split fingerprint {r.fingerprint} does not match {data} with these options "
            f"({split.fingerprint}): {why}. Pass the same data and split options the run was trained with, "
            "or retrain")


# ---------------------------------------------------------------------------------------------
# from per-user values to typed results


def population_result(ev: PopulationEval | list[PopulationEval], pid: PopulationId, n_boot: int,
                      rng: np.random.Generator, group_names: list[str]) -> PopulationResult:
    """Means with intervals of every metric of one evaluated population (one evaluation per model seed:
    a two-level bootstrap over seeds, then users), the between-seed spread and the by-group breakdown."""
    evs = ev if isinstance(ev, list) else [ev]
    estimates = uncertainty.repeat_estimates(evs, n_boot, rng, CONFIDENCE_LEVEL)
    values = [MetricValue(metric, k, e.mean, (e.low, e.high), None if len(evs) < 2 else e.seed_sd)
              for (metric, k), e in estimates.items()]
    values += [MetricValue(metric, k, float(np.mean([e.scalars[metric, k] for e in evs])))
               for (metric, k) in evs[0].scalars]
    first = evs[0]
    q = max(len(first.users), 1)
    breakdowns = [uncertainty.group_means(e, group_names) for e in evs]
    groups = []
    for g, (name, users, means) in enumerate(breakdowns[0]):
        avg = {key: float(np.nanmean([b[g][2][key] for b in breakdowns])) for key in means}
        groups.append(GroupBreakdown(name, users, [MetricValue(metric, k, mean) for (metric, k), mean in avg.items()]))
    embed = float(np.median([e.embed_seconds for e in evs]))
    topk = float(np.median([e.topk_seconds for e in evs]))
    return PopulationResult(pid, int(len(first.users)), values, 1000.0 * embed / q, 1000.0 * topk / q,
                            first.group_source or None, groups)


def serving_result(model: Any, split: Split, k: int, seed: int, n_sample: int, warm: PopulationResult) -> ServingCost:
    cost = serving_cost(model, split, k, generator(seed, "serving"), n_sample)
    return ServingCost(
        sample_users=int(cost["sample_users"]), query_ms_p50=cost["query_ms_p50"], query_ms_p99=cost["query_ms_p99"],
        topk_ms_p50=cost["topk_ms_p50"], topk_ms_p99=cost["topk_ms_p99"],
        cold_query_ms_p50=cost["cold_query_ms_p50"], cold_query_ms_p99=cost["cold_query_ms_p99"],
        batch_ms_per_query=warm.embed_ms_per_query + warm.topk_ms_per_query, model_bytes=int(cost["model_bytes"]),
        cache_build_seconds=cost["cache_build_seconds"], cache_bytes=cost["cache_bytes"], cache_users=cost["cache_users"])


def index_result(model: Any, split: Split, spec: ExperimentSpec) -> IndexCost | None:
    """Serving from ``spec.index`` measured against exact search at the main k (None: nothing to index)."""
    cost = index_cost(model, split, spec.index, spec.index_settings, spec.main_k, generator(spec.seed, "index"),
                      max(spec.serving_sample, 1))
    return None if cost is None else IndexCost.from_dict(cost)


def training_result(models: list[Any]) -> TrainingCost:
    """Training cost over the model seeds: median seconds (and their range), iterations of seed 0, the
    DNN's optimiser steps against its step budget (None for models without one)."""
    costs = [training_cost(m) for m in models]
    secs = [c["train_seconds"] for c in costs]
    first = models[0]
    steps = getattr(first, "steps_", None)
    budget = getattr(first, "min_steps_", None)
    stopped = getattr(first, "stopped_early_", None)
    return TrainingCost(float(np.median(secs)), int(costs[0]["iterations"]),
                        float(np.median([c["seconds_per_iteration"] for c in costs])),
                        (float(min(secs)), float(max(secs))) if len(secs) > 1 else None,
                        None if steps is None else int(steps), None if budget is None else int(budget),
                        None if stopped is None else bool(stopped))


def default_contrast(models: list[ModelResult]) -> list[str]:
    """The head-to-head pair: the first MF and the first DNN model by family, else the first two models."""
    by_family = {}
    for m in models:
        by_family.setdefault(m.family, m.name)
    if "mf" in by_family and "dnn" in by_family:
        return [by_family["mf"], by_family["dnn"]]
    return [m.name for m in models[:2]]


# ---------------------------------------------------------------------------------------------
# the runner


def evaluate_models(fitted: list[FittedModel], split: Split, spec: ExperimentSpec,
                    progress_factory: ProgressFactory = silent, topk_backend: Any = None
                    ) -> tuple[list[ModelResult], dict[str, list[dict[str, PopulationEval]]]]:
    """Evaluate every fitted model (each of its seeds) on the same populations; typed results and the
    per-user values (model name -> one ``{population: PopulationEval}`` per model seed)."""
    pops = population_sets(split)
    if not spec.cold:
        pops = [p for p in pops if p.name == "warm"]
    group_names = list(split.dataset.group_names)
    results: list[ModelResult] = []
    evals: dict[str, list[dict[str, PopulationEval]]] = {}
    for fm in fitted:
        with progress_factory(f"evaluating {fm.name}") as prog:
            members = fm.all_models
            evals[fm.name] = []
            for i, member in enumerate(members):
                evals[fm.name].append(evaluator.evaluate_model(
                    member, split, spec.ks, pops=pops, topk_backend=topk_backend,
                    progress=lambda done, total, info, i=i, n=len(members): prog(i * total + done, n * total, info)))
        rng = generator(spec.seed, "bootstrap")  # the same resamples of users for every model
        populations = [population_result([e[name] for e in evals[fm.name]], population_id(ev), spec.bootstrap, rng,
                                         group_names) for name, ev in evals[fm.name][0].items()]
        warm = next(p for p in populations if p.population.is_warm)
        serving = None
        if spec.serving_sample > 0 and fm.role != "variant":
            with progress_factory(f"timing {fm.name} serving") as prog:
                serving = serving_result(fm.model, split, max(spec.ks), spec.seed, spec.serving_sample, warm)
                prog(1, 1, {})
        index = None
        if spec.index != "exact" and fm.role != "variant":
            with progress_factory(f"indexing {fm.name} ({spec.index})") as prog:
                index = index_result(fm.model, split, spec)
                prog(1, 1, {})
        model = fm.model
        recalls = fm.validation_recalls or [fm.validation_recall]
        valid = MetricValue("recall", VALIDATION_K, float(np.mean(recalls)),
                            seed_sd=float(np.std(recalls, ddof=1)) if len(recalls) > 1 else None)
        role = "baseline" if fm.role == "model" and model.family == "baseline" else fm.role
        results.append(ModelResult(
            name=fm.name, kind=model.kind, family=model.family, capabilities=asdict(model.capabilities),
            params=model.get_params(), seed=fm.seed, run_dir=None if fm.run_dir is None else str(fm.run_dir),
            trained_here=fm.trained_here, validation=valid, training=training_result(members), serving=serving,
            populations=populations, stages=fm.stages, index=index, role=role, variant_of=fm.variant_of,
            repeats=len(members), tuning=fm.tuning))
    return results, evals


def save_fitted(fm: FittedModel, split: Split, seed: int, save_to: Path | None) -> FittedModel:
    """Save an already fitted model as a run (what :func:`fit_model` does with ``save_to``)."""
    from ..models.store import save_run

    if save_to is not None:
        fm.run_dir = save_run(save_to, fm.model, split, seed, extra={"valid_recall@20": fm.validation_recall})
    return fm


def fit_repeats(s: ModelSpec, split: Split, spec: ExperimentSpec, progress_factory: ProgressFactory,
                fit: Any, write_to: Path | None, first: FittedModel | None = None) -> FittedModel:
    """Fit one model with model seeds 0..R-1 (``spec.repeats``); seed 0 is the one saved. ``first``: the
    seed-0 fit already made (the winning tuning trial), reused instead of fitting it again."""
    if first is not None and fit is None:
        fm = save_fitted(first, split, spec.seed, write_to)
    else:
        with progress_factory(f"training {s.label}" + (f" (seed 1 of {spec.repeats})" if spec.repeats > 1 else "")
                              ) as prog:
            fm = (fit or fit_model)(s, split, spec.seed, prog, write_to)
    fm.validation_recalls = [fm.validation_recall]
    for r in range(1, spec.repeats):
        with progress_factory(f"training {s.label} (seed {r + 1} of {spec.repeats})") as prog:
            other = (fit or fit_model)(s, split, spec.seed, prog, None, repeat=r)
        fm.others.append(other.model)
        fm.validation_recalls.append(other.validation_recall)
    return fm


def run(spec: ExperimentSpec, split: Split | None = None, progress_factory: ProgressFactory = silent,
        topk_backend: Any = None, fit: Any = None, save_paths: dict[str, tuple[Path, Path]] | None = None,
        loaded: dict[str, tuple[FittedModel, Any]] | None = None) -> Outcome:
    """Run an experiment: every model of ``spec`` fitted (or loaded) on one split and measured alike.

    split : an already prepared split (sweeps reuse one); else ``spec.data`` is read and split.
    topk_backend : where the scoring + top-k runs (None = here; the Spark engine passes its own).
    fit : ``(ModelSpec, Split, seed, progress, save_to, repeat=0) -> FittedModel`` replacing
        :func:`fit_model` for some models (the Spark engine trains WALS on Spark); None = :func:`fit_model`.
    save_paths : model name -> (folder written now, folder it ends up in) for the models trained here
        (compare writes runs inside its staged report set); default ``spec.runs_dir / name``.
    loaded : model name -> (FittedModel, Run) already loaded by the caller (from ``load_model``);
        default: the specs' ``run_dir`` are loaded here.

    In order: tuning (``spec.tune`` trials per learned model on validation), fitting every model with
    ``spec.repeats`` model seeds, the folding contrasts and the MAP fold-in variant (when asked), the
    pipelines, evaluation, the paired tests in their families (Holm–Bonferroni), the folding indices,
    the training growth on subsamples (when asked), warnings, comparison rows and verdicts.
    """
    from ..core.version import __version__
    from . import evidence
    from .verdicts import measured_table

    spec.check()
    plans = plan_pipelines(spec)
    check_models(spec.models)
    if loaded is None:
        loaded = {s.label: load_model(s) for s in spec.models if s.run_dir is not None}
    runs = {name: run_ for name, (_, run_) in loaded.items()}
    check_runs(runs, None, None)
    if split is None:
        if spec.data is None:
            raise EvaluationError("the experiment names no data and was given no split")
        split = prepare_split(spec.data, spec.split)
    check_runs(runs, split, spec.data.path if spec.data is not None else split.dataset.source)

    tunings, winners = evidence.tune_models(spec, split, progress_factory, fit_model)
    fitted: list[FittedModel] = []
    for s in spec.models:
        if s.label in loaded:
            fitted.append(loaded[s.label][0])
            continue
        if save_paths is not None and s.label in save_paths:
            write_to, final = save_paths[s.label]
        else:
            write_to = final = spec.runs_dir / s.label if spec.runs_dir is not None else None
        fm = fit_repeats(s, split, spec, progress_factory, fit, write_to, winners.get(s.label))
        fm.run_dir = final
        fm.tuning = tunings.get(s.label)
        fitted.append(fm)
    if spec.folding_contrasts and split.dataset.item_groups is not None:
        for s, of in evidence.contrast_specs(spec, fitted):
            fm = fit_repeats(s, split, spec, progress_factory, fit, None)
            fm.role, fm.variant_of = "contrast", of
            fitted.append(fm)
    if spec.fold_in_prior and spec.cold:
        with progress_factory("choosing the MAP fold-in prior on validation") as prog:
            fitted += evidence.map_variants(fitted, split, spec.seed)
            prog(1, 1, {})
    by_name = {fm.name: fm for fm in fitted}
    fitted += [fit_pipeline(plan, by_name, split, spec.seed) for plan in plans]

    models, evals = evaluate_models(fitted, split, spec, progress_factory, topk_backend)
    contrast = list(spec.contrast) if spec.contrast else default_contrast(models)
    paired, families = evidence.paired_families(models, evals, contrast, plans, spec)
    settings = Settings(seed=spec.seed, ks=list(spec.ks), main_k=spec.main_k, bootstrap=spec.bootstrap,
                        confidence_level=CONFIDENCE_LEVEL, serving_sample=spec.serving_sample,
                        user_features=list(split.dataset.features), contrast=contrast, engine=spec.engine,
                        package_version=__version__, command=spec.command, repeats=spec.repeats, tune=spec.tune)
    results = Results(dataset=summarize(split.dataset), split=split.summary(), settings=settings, models=models,
                      paired=paired, families=families)
    results.folding = evidence.folding_results(models, evals, spec)
    if spec.growth:
        results.growth = evidence.training_growth(spec, fitted, split, progress_factory)
    results.warnings = evidence.warnings(results)
    results.comparison = comparison_rows(results)
    results.verdicts = measured_table(results)
    # the folding picture is for learned embeddings: a baseline's item vectors are counts (popularity: one
    # coordinate), whose 2-D projection shows nothing
    maps = {fm.name: embedding_map(fm.model.item_vectors, generator(spec.seed, "maps"))
            for fm in fitted if fm.model.capabilities.item_vectors and fm.model.family != "baseline"
            and fm.role in ("model", "contrast")}
    return Outcome(results, {fm.name: fm for fm in fitted}, maps, split, evals)
