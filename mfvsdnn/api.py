"""Library functions behind the CLI commands: each command parses options, calls one of these, renders."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import DataError, EvaluationError, MfvsdnnError
from .core.fsutil import absolute, claim_output, claim_unless_staged, os_errors, write_new
from .core.progress import ProgressFactory, ProgressFn, no_progress, silent
from .data import ColumnSpec, read_interactions, summarize
from .data.split import Split, SplitConfig
from .data.split import make_split as make_split_of
from .data.synthetic import SyntheticConfig, write_csv
from .experiment.results import Results
from .experiment.spec import DataSpec, ExperimentSpec, ModelSpec, PipelineSpec
from .models.registry import check_params


def prepare_split(data: str | Path, columns: ColumnSpec, split: SplitConfig,
                  test_path: str | Path | None = None) -> Split:
    """Read the CSV (and an explicit test file) and split it deterministically."""
    return make_split_of(read_interactions(data, columns, test_path=test_path), split)


def info(data: str | Path, columns: ColumnSpec, split: SplitConfig,
         test_path: str | Path | None = None) -> dict:
    """Dataset summary, the split summary and the columns that could serve as groups or features
    (what ``mfvsdnn info`` shows)."""
    from .data.suggest import suggest_columns

    sp_ = prepare_split(data, columns, split, test_path)
    out = summarize(sp_.dataset)
    out["split"] = sp_.summary()
    out["suggestions"] = suggest_columns(data, sp_.dataset.columns, sp_.dataset)
    return out


def make_data(out: str | Path, config: SyntheticConfig, overwrite: bool = False) -> dict:
    """Write grouped synthetic data to ``out``; returns a summary of the file written.

    An existing ``out`` is replaced only if mfvsdnn wrote it (its exact header) or ``overwrite``.
    """
    t0 = time.perf_counter()
    try:
        rows = write_csv(config, out, overwrite=overwrite)
    except ValueError as e:
        raise DataError(str(e)) from None
    ds = read_interactions(out)
    s = summarize(ds)
    s["seconds"] = time.perf_counter() - t0
    s["rows_written"] = rows
    s["config"] = dict(config.__dict__)
    return s


@dataclass
class TrainResult:
    model: Any
    split: Split
    run_dir: Path | None
    train_seconds: float
    valid_recall20: float
    summary: dict


def train_model(kind: str, split: Split, params: dict[str, Any], seed: int, out: str | Path | None,
                progress: ProgressFn = no_progress) -> TrainResult:
    """Fit a model of ``kind`` with ``params`` on ``split``, report validation recall@20, save to ``out``.

    Seeded by the experiment runner's rule (``generator(seed, "fit", kind, 0)``), so the model is the
    one ``compare`` trains with the same seed; the seed and every hyper-parameter are recorded in the
    run's ``model.json``.
    """
    from .experiment.runner import fit_model
    from .experiment.spec import ModelSpec

    fitted = fit_model(ModelSpec(kind, dict(params)), split, seed, progress, Path(out) if out else None)
    model = fitted.model
    summary = {
        "kind": kind,
        "run_dir": str(fitted.run_dir) if fitted.run_dir else None,
        "params": model.get_params(),
        "seed": seed,
        "train_seconds": float(model.train_seconds_),
        "valid_recall@20": fitted.validation_recall,
        "history": list(getattr(model, "history_", [])),
        "best_epoch": getattr(model, "best_epoch_", None),  # the epoch whose parameters were kept
        "split": split.summary(),
        "notes": list(getattr(model, "notes_", [])),
    }
    return TrainResult(model, split, fitted.run_dir, float(model.train_seconds_), fitted.validation_recall, summary)


# ---------------------------------------------------------------------------------------------
# compare: any set of models on one split, one evaluator, three reports

DEFAULT_MODELS = ("wals", "softmax")
ENGINES = ("local", "spark")
BASELINES = ("popularity", "group-popularity", "random")


@dataclass
class CompareResult:
    """What ``compare`` produced: the typed results, the embedding maps for the plots, the files written."""

    results: Results
    maps: dict
    paths: dict[str, Path]

    @property
    def report(self) -> dict:
        """report.json's content."""
        return self.results.to_dict()


def _drop_group_popularity(spec: ExperimentSpec, split: Split) -> list[str]:
    """Leave out the group-popularity baseline on data without item groups (it would equal most-popular)."""
    if split.dataset.item_groups is not None:
        return []
    dropped = [m for m in spec.models if m.kind == "group-popularity" and m.run_dir is None]
    if not dropped:
        return []
    spec.models = [m for m in spec.models if m not in dropped]
    return ["the data has no item groups, so the group-popularity baseline (most popular within the "
            "user's group) was left out: it would equal most-popular"]


def _compare_on_spark(spec: ExperimentSpec, data: str, master: str, conf: dict[str, str] | None, reader: str,
                      spark: Any, progress_factory: ProgressFactory, drop_baselines: bool,
                      save_paths: dict[str, tuple[Path, Path]], loaded: dict[str, Any]) -> tuple[Any, list[str]]:
    """``compare --engine spark``: the runner with the Spark reader, the Spark WALS fit and SparkTopK.

    Everything Spark cannot express is refused before Spark starts. Returns (outcome, notes).
    """
    from .engines.spark import reader as spark_read
    from .engines.spark import session as spark_env
    from .engines.spark import train as spark_train
    from .engines.spark.evaluate import SparkTopK
    from .experiment import runner

    spark_train.check_models(spec.models)
    test_path = spec.data.test_path
    spark_read.choose_reader(data, reader, test_path)
    with spark_env.session_or(spark, master, conf) as session:
        split, route = spark_read.read_split(session, data, spec.data.columns, spec.split, test_path, reader)
        notes = _drop_group_popularity(spec, split) if drop_baselines else []
        fit = spark_train.fit_on_spark(session, master=master, conf=conf, reader=route)
        outcome = runner.run(spec, split=split, progress_factory=progress_factory, topk_backend=SparkTopK(session),
                             fit=fit, save_paths=save_paths, loaded=loaded)
        where = spark_env.session_info(session)
    notes.append(f"engine spark ({where['master']}, Spark {where['version']}): DATA read by the {route} reader; "
                 "the evaluator's batch scoring and top-k ran in Spark tasks (its per-query times include "
                 "Spark's scheduling); serving latencies (p50/p99) and the candidate cache are measured "
                 "locally on the driver, not in Spark")
    for name, meta in fit.meta.items():
        ap = meta["als_params"]
        notes.append(f"{name}: trained as Spark MLlib implicit ALS (alpha = 1/w0 - 1 = {ap['alpha']:g}, "
                     f"regParam {ap['regParam']:.4g}: Spark regularises each row by regParam * its positives, "
                     "so the regularisation is not exactly --reg; see spark.lambda_relation in its model.json); "
                     "its training time is Spark's ALS fit, without moving the data in and the factors out")
    trained_locally = [m.label for m in spec.models if m.run_dir is None and m.label not in fit.meta]
    if trained_locally:
        notes.append(f"trained locally on the driver (no Spark version of these models): {', '.join(trained_locally)}")
    return outcome, notes


def model_specs(models: tuple[str, ...] | list[str], params: dict[str, dict] | None = None,
                runs: dict[str, str | Path | None] | None = None, baselines: bool = True) -> list[ModelSpec]:
    """ModelSpecs for ``compare --models`` (+ the baselines unless ``baselines`` is False): each kind once,
    with its parameter overrides and, where given, the run directory to load instead of training."""
    from .models import registry

    params, runs = dict(params or {}), dict(runs or {})
    kinds = list(dict.fromkeys(models))
    for kind in kinds:  # an unknown kind or hyper-parameter is refused here, before any data is read
        registry.get(kind)
        check_params(kind, params.get(kind, {}), f"--{kind}-param" if kind in ("wals", "softmax") else
                     f"{kind} hyper-parameters")
    if baselines:
        kinds += [b for b in BASELINES if b not in kinds]
    unused = sorted(k for k in set(params) | {k for k, v in runs.items() if v} if k not in kinds)
    if unused:
        raise EvaluationError(f"parameters or runs given for {', '.join(unused)}, which is not among the "
                              f"models compared ({', '.join(kinds)}); add it to --models")
    return [ModelSpec(kind, dict(params.get(kind, {})), run_dir=Path(runs[kind]) if runs.get(kind) else None)
            for kind in kinds]


MAX_CANDIDATES = 100_000


def pipeline_specs(pipelines: list[str] | tuple[str, ...], candidates: tuple[int, ...] = (200,),
                   retriever_params: dict[str, Any] | None = None,
                   scorer_params: dict[str, Any] | None = None) -> list[PipelineSpec]:
    """``compare --pipeline``: "retriever>scorer" registry kinds (comma-separated or one per item), each with
    every N of ``candidates`` and the stage parameters. Refuses unknown kinds and N outside [1, 100,000]."""
    from .models import registry

    names = [x.strip() for text in pipelines for x in str(text).split(",") if x.strip()]
    if (retriever_params or scorer_params) and not names:
        raise EvaluationError("--retriever-param/--scorer-param set a pipeline's stages; pass --pipeline too")
    bad = [n for n in candidates if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES]
    if bad or not candidates:
        raise EvaluationError(f"--candidates expects comma-separated integers in [1, {MAX_CANDIDATES:,}], "
                              f"got {', '.join(map(str, candidates)) or 'nothing'}")
    out = []
    for name in dict.fromkeys(names):
        parts = [x.strip() for x in name.split(">")]
        if len(parts) != 2 or not all(parts):
            raise EvaluationError(f"--pipeline expects RETRIEVER>SCORER registry kinds (quoted in a shell), "
                                  f"e.g. 'wals>softmax'; got {name!r}")
        for kind in parts:
            if kind not in registry.kinds():
                raise EvaluationError(f"--pipeline {name}: unknown model kind {kind!r}; registered kinds: "
                                      f"{', '.join(registry.kinds())}")
        out.append(PipelineSpec(parts[0], parts[1], tuple(dict.fromkeys(candidates)), dict(retriever_params or {}),
                                dict(scorer_params or {})))
    return out


def compare(data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig, test_path: str | Path | None = None,
            *, models: tuple[str, ...] | list[str] = DEFAULT_MODELS, baselines: bool = True,
            runs: dict[str, str | Path | None] | None = None, params: dict[str, dict] | None = None,
            ks: tuple[int, ...] = (10, 20, 50), n_boot: int = 1000, report_dir: str | Path = "reports",
            runs_dir: str | Path | None = None, serving_sample: int = 200, index: str = "exact",
            index_settings: tuple[int, ...] = (), progress_factory: ProgressFactory | None = None, command: str = "",
            model_list: list[ModelSpec] | None = None, engine: str = "local", spark_master: str = "local[*]",
            spark_conf: dict[str, str] | None = None, spark_reader: str = "auto",
            spark: Any = None, pipelines: list[PipelineSpec] | None = None, repeats: int = 3, tune: int = 4,
            folding_contrasts: bool = True, map_fold_in: bool = True, growth_repeats: int = 3,
            per_user: str | None = None) -> CompareResult:
    """Train (or load) every model on one split, evaluate them alike, write the three reports.

    Parameters
    ----------
    models : registry kinds compared (default WALS and the softmax DNN); ``baselines`` adds
        most-popular, most-popular within the user's group (when the data has groups) and random.
    runs : kind -> run directory to load instead of training (refused if its split fingerprint
        differs from another run's or from DATA's with these options).
    params : kind -> hyper-parameter overrides for the models trained here (defaults otherwise).
    ks : cut-offs; every metric at each. n_boot : bootstrap resamples over users (0 = no intervals).
    report_dir : where report.json, report.md, report.html go. runs_dir : where trained runs are saved
        (default ``report_dir/runs``). serving_sample : users timed one request at a time.
    index : "exact", or "hnsw"/"ivf": every model with item vectors is also served from that index
        (build time, bytes, its recall against exact top-k, the recall@main-k lost, latency) at each of
        ``index_settings`` (efSearch / nprobe; empty = the index's default curve).
    progress_factory : ``description -> context manager yielding a ProgressFn``; None shows nothing.
    command : the command line that reproduces the run (recorded in every report).
    model_list : explicit ModelSpecs instead of ``models``/``baselines``/``runs``/``params``.
    engine : "local", or "spark": DATA is read by the Spark engine's reader (``spark_reader``: auto,
        pandas or spark), WALS models trained here are trained as Spark MLlib implicit ALS, every other
        model locally, and the evaluator's scoring + top-k runs in Spark tasks (``SparkTopK``); the
        results and the three reports are the same as locally, with ``settings.engine == "spark"``.
    spark_master, spark_conf : the session started for ``engine="spark"`` (unless ``spark``, an open
        SparkSession, is given; it is left running).
    pipelines : two-stage pipelines (:func:`pipeline_specs`) evaluated beside the models; a stage reuses
        the compared model of its kind (not retrained) unless it has parameters of its own.
    repeats : model seeds per model (intervals and tests combine seed and user variance).
    tune : random-search trials on validation per learned model, the same for each (1 = none).
    folding_contrasts : also train WALS at w0 = 0 and the DNN without negatives (data with item groups).
    map_fold_in : also report WALS with the MAP fold-in for cold users.
    growth_repeats : timed fits per training subsample for the growth exponents (0 = not measured).
    per_user : also write every per-user metric value (model, seed, population, user id, metric, k,
        value) as this file inside ``report_dir`` (a name ending .csv or .parquet).

    The seed (``split_cfg.seed``) drives the split, the models' generators and the bootstrap.
    """
    from .experiment import runner
    from .experiment.per_user import check_name, per_user_bytes, per_user_table
    from .report.html import compare_html
    from .report.markdown import compare_markdown
    from .report.plots import compare_plots

    if engine not in ENGINES:
        raise EvaluationError(f"--engine must be 'local' or 'spark', got {engine!r}")
    per_user = check_name(per_user)
    specs = model_list if model_list is not None else model_specs(models, params, runs, baselines)
    spec = ExperimentSpec(DataSpec(Path(data), columns, Path(test_path) if test_path else None), split_cfg, specs,
                          ks=tuple(ks), bootstrap=n_boot, serving_sample=serving_sample, command=command,
                          engine=engine, pipelines=list(pipelines or []), index=index,
                          index_settings=tuple(index_settings), repeats=repeats, tune=tune,
                          folding_contrasts=folding_contrasts, fold_in_prior=map_fold_in,
                          growth=growth_repeats > 0, growth_repeats=max(growth_repeats, 1))
    spec.check()
    runner.plan_pipelines(spec)  # stage models join spec.models here, so they are saved like any model
    runner.check_models(spec.models)
    with contextlib.ExitStack() as held:
        claim = held.enter_context(claim_output(report_dir, "compare", option="--report-dir",
                                                inputs=(data, test_path)))
        loaded = {s.label: runner.load_model(s) for s in spec.models if s.run_dir is not None}
        runner.check_runs({name: run for name, (_, run) in loaded.items()}, None, data)
        stage = claim.staging()
        outs = run_outputs(claim, stage, held, {name: run for name, (_, run) in loaded.items()},
                           [s.label for s in spec.models if s.run_dir is None],
                           Path(runs_dir) if runs_dir else Path(report_dir) / "runs", (data, test_path))
        progress = progress_factory or silent
        if engine == "spark":
            outcome, notes = _compare_on_spark(spec, str(data), spark_master, spark_conf, spark_reader, spark,
                                               progress, model_list is None, outs, loaded)
        else:
            split = prepare_split(data, columns, split_cfg, test_path)
            notes = _drop_group_popularity(spec, split) if model_list is None else []
            outcome = runner.run(spec, split=split, progress_factory=progress, save_paths=outs, loaded=loaded)
        split = outcome.split
        results = outcome.results
        results.notes += notes
        ds = split.dataset
        maps = {name: {**m, "item_groups": None if ds.item_groups is None else ds.item_groups[m["items"]],
                       "group_names": list(ds.group_names)} for name, m in outcome.maps.items()}
        out = Path(report_dir)
        paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
        with os_errors(str(report_dir)):
            write_new(stage / "report.json", results.to_json())
            write_new(stage / "report.md", compare_markdown(results))
            write_new(stage / "report.html", compare_html(results, compare_plots(results, maps)))
            if per_user is not None:
                write_new(stage / per_user, per_user_bytes(per_user_table(outcome.evals, ds.user_ids), per_user))
                paths["per_user"] = out / per_user
        claim.commit(stage)
    return CompareResult(results, maps, paths)


def run_outputs(claim: Any, stage: Path, held: contextlib.ExitStack, loaded: dict[str, Any], names: list[str],
                runs_dir: Path, inputs: tuple) -> dict[str, tuple[Path, Path]]:
    """Where compare saves each model of ``names`` it trains: (path written now, final path).

    A run inside the report folder is written into its staging folder and switched in with the
    reports; one outside it is claimed on its own (held in ``held``). A run compare loads must not
    be where it would write one.
    """
    from .core.errors import StoreError

    outs: dict[str, tuple[Path, Path]] = {}
    for name in names:
        final = runs_dir / name
        rel = claim.relative(final)
        if rel == Path("."):
            raise StoreError(f"--runs-dir {runs_dir}: would save the {name} run as the report folder itself")
        if rel is None:
            held.enter_context(claim_output(final, "run", option="--runs-dir", inputs=inputs))
            outs[name] = (final, final)
        else:
            outs[name] = (stage / rel, final)
        for other, r2 in loaded.items():
            a, b = absolute(r2.path), absolute(final)
            if a == b or a in b.parents or b in a.parents:
                raise StoreError(f"--{other} {r2.path}: compare would save the {name} run it trains at {final}, "
                                 "over the run it loads; pass another --runs-dir")
    return outs


# ---------------------------------------------------------------------------------------------
# recommend: serve any saved run (WALS or softmax) through the shared Retriever interface


def serving_index(run: Any, kind: str, notes: list[str] | None = None) -> Any:
    """The item-vector index ``run`` is served from: exact, or the run's stored HNSW/IVF index (built and
    stored in the run folder on first use, rebuilt when the model's item vectors changed)."""
    import warnings

    from .models.index import check_kind
    from .models.store import run_index

    check_kind(kind)
    if not run.model.capabilities.item_vectors:
        raise EvaluationError(f"--index {kind}: a {run.kind!r} model has no item vectors to index")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        index, built = run_index(run, kind)
    if notes is not None and kind != "exact":
        notes.append(f"served from the {kind} index ({'built now and stored' if built else 'stored'} in {run.path})")
        notes += [f"{w.message}" for w in caught]
    return index


def _rank(run: Any, queries: np.ndarray, exclude: Any, k: int, index: Any = None) -> list[list[dict]]:
    """Top-k rows of dicts (rank, item_id, score, item_group) for (q, d) query vectors (exact unless
    ``index``, a built ``models.index`` index of the run's item vectors)."""
    from .core.topk import top_k_with_scores

    if index is None:
        idx, scores = top_k_with_scores(queries, run.model.item_vectors, exclude, k)
    else:
        idx, scores = index.search(queries, k, exclude)
    out = []
    for row_i, row_s in zip(idx, scores, strict=True):
        recs = []
        for rank, (j, s) in enumerate(zip(row_i, row_s, strict=True), start=1):
            if j < 0:
                break
            rec = {"rank": rank, "item_id": str(run.item_ids[j]), "score": float(s)}
            if run.item_groups is not None and run.group_names:
                g = int(run.item_groups[j])
                rec["item_group"] = run.group_names[g] if 0 <= g < len(run.group_names) else None
            recs.append(rec)
        out.append(recs)
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise DataError(f"--k must be a positive integer, got {k}")


def recommend_user(run_dir: str | Path, user_id: str, k: int = 10, index: str = "exact") -> dict:
    """Top-k items for a user of the run's data set, excluding the items the user already has.

    ``index``: "exact" (every item scored), or "hnsw"/"ivf": served from the run's stored index.

    A held-out (cold) user of the split has no training items: the model embeds them from their
    stored features only, and the result says so in ``notes``.
    """
    from .models.store import load_run

    _check_k(k)
    run = load_run(run_dir)
    idx = run.user_index().get(str(user_id))
    if idx is None:
        raise DataError(f"user {user_id!r} is not in run {run.path} ({len(run.user_ids):,} users); "
                        "for a new user pass --history ITEM,ITEM,... and/or --feature NAME=VALUE")
    hist = run.known[[idx]]
    feats = {f: c[[idx]] for f, c in run.features.items()}
    notes: list[str] = []
    served = serving_index(run, index, notes)
    if hist.nnz == 0:
        notes.append(f"user {user_id!r} has no training interactions (held out as a cold user); "
                     "recommendations come from the user's features only")
    q = np.asarray(run.model.query_vectors(hist, feats, users=np.array([idx])), dtype=np.float32)
    return {"run": str(run.path), "kind": run.kind, "query": {"user": str(user_id), "known_items": int(hist.nnz)},
            "k": k, "notes": notes, "recommendations": _rank(run, q, hist, k, served)[0]}


def recommend_new(run_dir: str | Path, history: list[str], features: dict[str, str], k: int = 10,
                  index: str = "exact") -> dict:
    """Top-k items for a new user, not in the training data, from a history of item ids and features.

    ``index`` as for :func:`recommend_user`.

    Unknown item ids or feature names are errors (the message names them); an unknown feature value
    is treated as unknown (code -1) with a note.
    """
    import scipy.sparse as sp

    from .models.store import load_run

    _check_k(k)
    run = load_run(run_dir)
    item_of = run.item_index()
    history = list(dict.fromkeys(str(h).strip() for h in history if str(h).strip()))
    unknown = [h for h in history if h not in item_of]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise DataError(f"--history: {len(unknown)} item id(s) not in run {run.path}: {shown}")
    notes: list[str] = []
    served = serving_index(run, index, notes)
    codes: dict[str, np.ndarray] = {}
    valid_names = sorted(run.feature_values)
    for name, value in features.items():
        if name not in run.feature_values:
            have = ", ".join(valid_names) if valid_names else "none (the run was trained without --user-features)"
            raise DataError(f"--feature {name}=...: unknown feature {name!r}; this run's features: {have}")
        values = run.feature_values[name]
        if value in values:
            codes[name] = np.array([values.index(value)], dtype=np.int32)
        else:
            codes[name] = np.array([-1], dtype=np.int32)
            some = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
            notes.append(f"feature value {name}={value!r} was not seen in training; treated as unknown "
                         f"(known values: {some})")
    cols = np.array([item_of[h] for h in history], dtype=np.int64)
    hist = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
                         shape=(1, len(run.item_ids)))
    q = np.asarray(run.model.query_vectors(hist, codes or None, users=None), dtype=np.float32)
    prior = getattr(run.model, "fold_in_prior", None)  # WALS: whether features join a history's fold-in
    if history and codes and prior is not None:
        notes.append(f"WALS run with fold_in_prior = {prior:g}: " + (
            "the features are ignored when a history is given (only the history is folded in)" if prior == 0
            else "the history is folded in with a prior toward the features' mean embedding (MAP fold-in)"))
    if not history:
        backoff = getattr(run.model, "feature_backoff", None)
        if backoff is not None:
            _, used, support = backoff(codes or None, 1)
            names = [n for n, u in zip(run.model.feature_names_, used[0], strict=True) if u]
            if names:
                shared = ", ".join(f"{n}={run.feature_values[n][int(codes[n][0])]}" for n in names)
                notes.append(f"no history: mean embedding of the {int(support[0]):,} training users with {shared}")
            else:
                notes.append(f"no history and no usable feature: mean embedding of all {int(support[0]):,} "
                             "training users")
    return {"run": str(run.path), "kind": run.kind,
            "query": {"history": history, "features": dict(features)}, "k": k, "notes": notes,
            "recommendations": _rank(run, q, hist, k, served)[0]}


def recommend_all(run_dir: str | Path, k: int, out: str | Path, progress: ProgressFn = no_progress,
                  chunk_size: int = 4096, overwrite: bool = False, index: str = "exact") -> dict:
    """Write ``user_id,item_id,rank,score`` (top-k, known items excluded) for every training user.

    Users are processed ``chunk_size`` at a time; the CSV is written to a temporary file beside
    ``out`` and renamed into place, so an interrupted run leaves no partial file. An existing
    ``out`` is replaced only if mfvsdnn wrote it (its exact header line) or ``overwrite``. ``index``
    as for :func:`recommend_user`.
    """
    import csv

    from .core.fsutil import write_file_atomic
    from .models.store import load_run

    _check_k(k)
    t0 = time.perf_counter()
    run = load_run(run_dir)
    served = serving_index(run, index)
    users = np.flatnonzero(np.diff(run.known.indptr) > 0)
    n_chunks = max(1, -(-len(users) // chunk_size))

    def write(f: Any) -> int:
        rows = 0
        writer = csv.writer(f, lineterminator="\n")  # quotes ids that contain the delimiter
        writer.writerow(RECS_HEADER.split(","))
        for c in range(n_chunks):
            u = users[c * chunk_size:(c + 1) * chunk_size]
            hist = run.known[u]
            feats = {name: codes[u] for name, codes in run.features.items()}
            q = np.asarray(run.model.query_vectors(hist, feats, users=u), dtype=np.float32)
            idx, scores = served.search(q, k, hist)
            r, col = np.nonzero(idx >= 0)
            uid = run.user_ids[u][r]
            iid = run.item_ids[idx[r, col]]
            writer.writerows(zip(uid.tolist(), iid.tolist(), (col + 1).tolist(),
                                 [f"{s:.6g}" for s in scores[r, col].tolist()], strict=True))
            rows += len(r)
            progress(c + 1, n_chunks, {"users": float(min(len(users), (c + 1) * chunk_size))})
        return rows

    rows = write_file_atomic(out, write, option="--out", header=RECS_HEADER, overwrite=overwrite)
    return {"run": str(run.path), "kind": run.kind, "path": str(out), "users": int(len(users)), "k": k,
            "index": index, "rows": rows, "seconds": time.perf_counter() - t0}


RECS_HEADER = "user_id,item_id,rank,score"


def train_from_csv(kind: str, data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig,
                   test_path: str | Path | None, params: dict[str, Any], out: str | Path | None,
                   progress: ProgressFn = no_progress) -> TrainResult:
    """Read and split the CSV, then :func:`train_model` with the split's seed (train-wals / train-*).

    ``out`` is claimed first (:func:`mfvsdnn.core.fsutil.claim_output`), so a folder that may not be
    replaced, or one another process is writing, is refused before the data is read or trained on.
    """
    with claim_unless_staged(out, "run", option="--out", inputs=(data, test_path)):
        split = prepare_split(data, columns, split_cfg, test_path)
        return train_model(kind, split, params, split_cfg.seed, out, progress)


def train_wals_spark(data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig, test_path: str | Path | None,
                     params: dict[str, Any], out: str | Path | None, *, master: str = "local[*]",
                     conf: dict[str, str] | None = None, reader: str = "auto", reg_param: float | None = None,
                     num_blocks: int | None = None, spark: Any = None,
                     progress: ProgressFn = no_progress) -> TrainResult:
    """``train-wals --engine spark``: read and split DATA with the Spark engine's reader, fit WALS as
    Spark MLlib implicit ALS with the same fit ``compare --engine spark`` uses, save the run to ``out``.

    The run is the local format (kind "wals") plus ``engine: "spark"`` and a ``spark`` entry in
    model.json, which the summary repeats under ``"spark"``. Parameters are validated, and w0 checked
    against Spark, before Spark starts.

    master, conf : the session to start (ignored when ``spark``, an open SparkSession, is given).
    reader : "auto", "pandas" or "spark". reg_param : Spark ``regParam`` as given instead of the mapping.
    num_blocks : ALS numUserBlocks = numItemBlocks (default: Spark's default parallelism, at least 2).
    """
    from .engines.spark import reader as spark_read
    from .engines.spark import session as spark_env
    from .engines.spark import train as spark_train

    spec = ModelSpec("wals", dict(params))
    spark_train.check_models([spec])
    spark_read.choose_reader(str(data), reader, test_path)  # refuse bad combinations before Spark starts
    with claim_unless_staged(out, "run", option="--out", inputs=(data, test_path)):  # before Spark starts
        with spark_env.session_or(spark, master, conf) as session:
            split, route = spark_read.read_split(session, str(data), columns, split_cfg, test_path, reader)
            fit = spark_train.fit_on_spark(session, master=master, conf=conf, reader=route, reg_param=reg_param,
                                           num_blocks=num_blocks)
            fitted = fit(spec, split, split_cfg.seed, progress, Path(out) if out else None)
    model = fitted.model
    summary = {
        "kind": "wals", "engine": "spark", "run_dir": str(fitted.run_dir) if fitted.run_dir else None,
        "params": model.get_params(), "seed": split_cfg.seed, "train_seconds": float(model.train_seconds_),
        "valid_recall@20": fitted.validation_recall, "history": list(model.history_), "split": split.summary(),
        "spark": fit.meta[spec.label],
    }
    return TrainResult(model, split, fitted.run_dir, float(model.train_seconds_), fitted.validation_recall, summary)


# ---------------------------------------------------------------------------------------------
# sweep and scale


def sweep(data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig, test_path: str | Path | None,
          cfg: Any, report_dir: str | Path, jobs: int = 1, progress_factory: Any = None,
          on_point: Any = None, command: str = "") -> tuple[dict, dict[str, Path]]:
    """Run (or resume) a sweep on one split; write sweep.json, sweep.md and sweep.html to ``report_dir``.

    sweep.json is replaced after every point (the resume file); at the end the three files are
    switched into place as one set.
    """
    from .experiment.sweep import run_sweep
    from .models.store import json_text
    from .report.curves import curve_files

    if jobs < 1:
        raise MfvsdnnError(f"--jobs must be >= 1, got {jobs}")
    with claim_output(report_dir, "sweep", option="--report-dir", inputs=(data, test_path)) as claim:
        split = prepare_split(data, columns, split_cfg, test_path)
        data_args = (str(data), columns.as_dict(), split_cfg.as_dict(), str(test_path) if test_path else None)
        doc = run_sweep(split, cfg, report_dir, jobs=jobs, data_args=data_args, on_point=on_point,
                        progress_factory=progress_factory)
        doc["command"] = command  # the command line that reproduces it (recorded in the report)
        paths = _write_set(claim, "sweep", json_text(doc), curve_files("sweep", doc))
    return doc, paths


def _write_set(claim: Any, stem: str, json_doc: str, others: dict[str, str | bytes]) -> dict[str, Path]:
    """Stage STEM.json and the other report files, then switch them into place as one set."""
    stage = claim.staging()
    out = Path(claim.display)
    paths = {"json": out / f"{stem}.json"}
    with os_errors(claim.display):
        write_new(stage / f"{stem}.json", json_doc)
        for name, text in others.items():
            write_new(stage / name, text)
            paths[name.split(".")[-1]] = out / name
    claim.commit(stage)
    return paths


def scale(cfg: Any, report_dir: str | Path, progress: ProgressFn = no_progress,
          command: str = "") -> tuple[dict, dict[str, Path]]:
    """Measure cost against corpus size; write scale.json, scale.md and scale.html to ``report_dir``.

    The report folder is claimed before the (long) measurement starts.
    """
    from .experiment.scale import run_scale
    from .models.store import json_text
    from .report.curves import curve_files

    cfg.check_memory()  # the largest size, before any data is generated
    with claim_output(report_dir, "scale", option="--report-dir") as claim:
        doc = run_scale(cfg, progress)
        doc["command"] = command  # the command line that reproduces it (recorded in the report)
        paths = _write_set(claim, "scale", json_text(doc), curve_files("scale", doc))
    return doc, paths


# ---------------------------------------------------------------------------------------------
# the Python API: the same core, with keyword arguments instead of option objects


def datasets_list(directory: str | Path | None = None) -> dict:
    """The public data sets ``datasets fetch`` knows, and which are in the cache folder ``directory``
    (default ``$MFVSDNN_DATA`` or ``~/.cache/mfvsdnn/datasets``)."""
    from .data import datasets

    return datasets.listing(directory)


def datasets_fetch(name: str, directory: str | Path | None = None, *, progress_factory: ProgressFactory = silent,
                   on_terms: Any = None, on_trust: Any = None) -> dict:
    """Download (resumably), check and convert data set ``name`` into the cache folder; returns its record
    with ``path`` (the CSV) and ``compare`` (the command line to run on it). ``on_terms(entry)`` is called
    before a download, ``on_trust(sha256)`` when a download had no hash to check against."""
    from .data import datasets

    return datasets.fetch(name, directory, progress_factory=progress_factory,
                          on_terms=on_terms or (lambda entry: None), on_trust=on_trust or (lambda sha: None))


def load_interactions(path: str | Path, *, user_col: str | None = None, item_col: str | None = None,
                      weight_col: str | None = None, min_weight: float | None = None, time_col: str | None = None,
                      item_group_col: str | None = None, user_group_col: str | None = None,
                      user_features: tuple[str, ...] | list[str] = (), sep: str = ",",
                      test_path: str | Path | None = None, user_file: str | Path | None = None,
                      item_file: str | Path | None = None) -> Any:
    """Read an interaction file (the CLI's input contract) into a Dataset; ids stay strings."""
    columns = ColumnSpec(user_col=user_col, item_col=item_col, weight_col=weight_col, min_weight=min_weight,
                         time_col=time_col, item_group_col=item_group_col, user_group_col=user_group_col,
                         user_features=tuple(user_features), sep=sep,
                         user_file=str(user_file) if user_file else None,
                         item_file=str(item_file) if item_file else None)
    return read_interactions(path, columns, test_path=test_path)


def make_split(dataset: Any, *, seed: int = 42, cold_users: float = 0.1, test_frac: float = 0.2,
               valid_frac: float = 0.1, strategy: str = "random", revealed: tuple[int, ...] = (0, 1, 3, 5)) -> Split:
    """Split a Dataset deterministically (the CLI's split options as keywords)."""
    return make_split_of(dataset, SplitConfig(seed=seed, cold_users=cold_users, test_frac=test_frac,
                                              valid_frac=valid_frac, strategy=strategy, revealed=tuple(revealed)))


def compare_models(split: Split, models: list[Any], *, ks: tuple[int, ...] = (10, 20, 50), bootstrap: int = 1000,
                   serving_sample: int = 200, contrast: tuple[str, str] | None = None, index: str = "exact",
                   index_settings: tuple[int, ...] = (), progress_factory: ProgressFactory | None = None,
                   repeats: int = 3, tune: int = 4, folding_contrasts: bool = True, map_fold_in: bool = True,
                   growth_repeats: int = 3, pipelines: list[PipelineSpec] | None = None) -> Results:
    """Fit every model on ``split`` and measure them alike; the typed Results (``to_frame()`` for a table).

    models : unfitted model objects (``WALS(factors=16)``, ``MostPopular()``, ...) or registry kinds
        ("wals"); each is refitted with the seeding rule from its constructor keywords, so the numbers
        are those ``mfvsdnn compare`` gives for the same data, split and parameters. Names are the kinds,
        suffixed ``-2``, ``-3`` when a kind repeats.
    index, index_settings, repeats, tune, folding_contrasts, map_fold_in, growth_repeats, pipelines : as for
        :func:`compare` (the same defaults, so the numbers are those of the command line).
    """
    from .experiment import runner

    specs: list[ModelSpec] = []
    for m in models:
        kind, params = (m, {}) if isinstance(m, str) else (m.kind, m.get_params())
        taken = sum(1 for s in specs if s.kind == kind)
        specs.append(ModelSpec(kind, params, name=kind if not taken else f"{kind}-{taken + 1}"))
    spec = ExperimentSpec(None, split.config, specs, ks=tuple(ks), bootstrap=bootstrap,
                          serving_sample=serving_sample, contrast=contrast, index=index,
                          index_settings=tuple(index_settings), repeats=repeats, tune=tune,
                          folding_contrasts=folding_contrasts, fold_in_prior=map_fold_in, growth=growth_repeats > 0,
                          growth_repeats=max(growth_repeats, 1), pipelines=list(pipelines or []))
    return runner.run(spec, split=split, progress_factory=progress_factory or silent).results
