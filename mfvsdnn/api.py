"""Library functions behind the CLI commands: each command parses options, calls one of these, renders."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import ColumnSpec, read_interactions, summarize
from .errors import DataError, MfvsdnnError
from .fsutil import absolute, claim_output, claim_unless_staged, os_errors, write_new
from .models.base import ProgressFn, check_model_memory, check_params, model_class, no_progress
from .split import Split, SplitConfig, make_split
from .store import save_run
from .synthetic import SyntheticConfig, write_csv


def prepare_split(data: str | Path, columns: ColumnSpec, split: SplitConfig,
                  test_path: str | Path | None = None) -> Split:
    """Read the CSV (and an explicit test file) and split it deterministically."""
    ds = read_interactions(data, columns, test_path=test_path)
    return make_split(ds, split)


def info(data: str | Path, columns: ColumnSpec, split: SplitConfig,
         test_path: str | Path | None = None) -> dict:
    """Dataset summary plus the split summary (what ``mfvsdnn info`` shows)."""
    sp_ = prepare_split(data, columns, split, test_path)
    out = summarize(sp_.dataset)
    out["split"] = sp_.summary()
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

    The model's random generator is ``np.random.default_rng(seed)``; the seed and every
    hyper-parameter are recorded in the run's ``model.json``.
    """
    from .evaluate import validation_recall

    check_params(kind, params, f"{kind} hyper-parameters")
    model = model_class(kind)(**params)
    rng = np.random.default_rng(seed)
    train = split.train_set()
    check_model_memory(model, train)  # before fit allocates anything large
    t0 = time.perf_counter()
    model.fit(train, rng, progress)
    if not getattr(model, "train_seconds_", 0.0):
        model.train_seconds_ = time.perf_counter() - t0
    vr = validation_recall(model, train, k=20, rng=np.random.default_rng(seed + 1))
    run_dir = save_run(out, model, split, seed, extra={"valid_recall@20": vr}) if out else None
    summary = {
        "kind": kind,
        "run_dir": str(run_dir) if run_dir else None,
        "params": model.get_params(),
        "seed": seed,
        "train_seconds": float(model.train_seconds_),
        "valid_recall@20": vr,
        "history": list(getattr(model, "history_", [])),
        "split": split.summary(),
        "notes": list(getattr(model, "notes_", [])),
    }
    return TrainResult(model, split, run_dir, float(model.train_seconds_), vr, summary)


# ---------------------------------------------------------------------------------------------
# compare: both models on one split, one evaluator, three reports

COMPARE_KINDS = ("wals", "softmax")


@dataclass
class CompareResult:
    """What ``compare`` produced: the report.json content, arrays for the plots, and the files written."""

    report: dict
    plots: dict
    paths: dict[str, Path]


def _null_bar(description: str):  # a progress-bar factory that shows nothing
    import contextlib

    return contextlib.nullcontext(no_progress)


def _check_runs(runs: dict[str, Any], split: Split | None, data: str | Path) -> None:
    """Refuse runs trained on a different split than each other or than DATA with the given options."""
    from .errors import EvaluationError

    loaded = {k: r for k, r in runs.items() if r is not None}
    for kind, r in loaded.items():
        if r.kind != kind:
            raise EvaluationError(f"--{kind} {r.path}: this run is a {r.kind!r} model, not {kind!r}")
    if len(loaded) == 2:
        (ka, ra), (kb, rb) = loaded.items()
        if ra.fingerprint != rb.fingerprint:
            raise EvaluationError(
                f"the runs were trained on different splits: --{ka} {ra.path} has split fingerprint "
                f"{ra.fingerprint} ({ra.meta['split'].get('source')}), --{kb} {rb.path} has {rb.fingerprint} "
                f"({rb.meta['split'].get('source')}); retrain both on the same data and split options")
    for kind, r in loaded.items():
        if split is not None and r.fingerprint != split.fingerprint:
            rc, sc = r.meta["split"].get("config", {}), split.config.as_dict()
            diff = [f"{k}={rc.get(k)!r} vs {sc.get(k)!r}" for k in sc if rc.get(k) != sc.get(k)]
            cols = r.meta["split"].get("columns", {})
            if cols != split.dataset.columns.as_dict():
                diff.append("column options differ")
            why = "; ".join(diff) if diff else "the data file's bytes differ"
            raise EvaluationError(
                f"--{kind} {r.path}: split fingerprint {r.fingerprint} does not match {data} with these "
                f"options ({split.fingerprint}): {why}. Pass the same data and split options the run was "
                "trained with, or retrain")


def compare(data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig, test_path: str | Path | None = None,
            *, runs: dict[str, str | Path | None] | None = None, params: dict[str, dict] | None = None,
            ks: tuple[int, ...] = (10, 20, 50), n_boot: int = 1000, report_dir: str | Path = "reports",
            runs_dir: str | Path | None = None, serving_sample: int = 200,
            progress_factory: Any = None) -> CompareResult:
    """Train (or load) WALS and the softmax DNN on one split, evaluate both, write the three reports.

    Parameters
    ----------
    runs : kind -> run directory to load instead of training (refused if its split fingerprint
        differs from the other run's or from DATA's with these options).
    params : kind -> hyper-parameter overrides for the models trained here (defaults otherwise).
    ks : cut-offs; every metric at each. n_boot : bootstrap resamples over users (0 = no intervals).
    report_dir : where report.json, report.md, report.html go. runs_dir : where trained runs are saved
        (default ``report_dir/runs``). serving_sample : users timed one request at a time.
    progress_factory : ``description -> context manager yielding a ProgressFn`` (e.g.
        ``report.progress_bar``); None shows nothing.

    The seed (``split_cfg.seed``) drives the split, the models' generators and the bootstrap.
    """
    from . import evaluate as E
    from .errors import EvaluationError
    from .report import compare_html, compare_markdown
    from .store import json_text, load_run

    bar = progress_factory or _null_bar
    runs = dict(runs or {})
    params = dict(params or {})
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise EvaluationError(f"--k must be positive integers, got {ks}")
    if n_boot < 0:
        raise EvaluationError(f"--bootstrap must be >= 0, got {n_boot}")
    if serving_sample < 1:
        raise EvaluationError(f"--serving-sample must be >= 1, got {serving_sample}")
    for kind in COMPARE_KINDS:  # before any file is read or any model trained
        check_params(kind, params.get(kind, {}), f"--{kind}-param")
    main_k = E.MAIN_K if E.MAIN_K in ks else ks[len(ks) // 2]
    with contextlib.ExitStack() as held:
        claim = held.enter_context(claim_output(report_dir, "compare", option="--report-dir",
                                                inputs=(data, test_path)))
        loaded = {kind: (load_run(runs[kind]) if runs.get(kind) else None) for kind in COMPARE_KINDS}
        _check_runs(loaded, None, data)  # runs against each other, before the (slower) data read
        stage = claim.staging()
        outs = run_outputs(claim, stage, held, loaded, [k for k in COMPARE_KINDS if loaded[k] is None],
                           Path(runs_dir) if runs_dir else Path(report_dir) / "runs", (data, test_path))
        split = prepare_split(data, columns, split_cfg, test_path)
        _check_runs(loaded, split, data)
        result = _compare_split(split, loaded, outs, params, ks, main_k, n_boot, serving_sample, bar)
        out = Path(report_dir)
        paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
        with os_errors(str(report_dir)):
            write_new(stage / "report.json", json_text(result.report))
            write_new(stage / "report.md", compare_markdown(result.report))
            write_new(stage / "report.html", compare_html(result.report, result.plots))
        claim.commit(stage)
    return CompareResult(result.report, result.plots, paths)


def run_outputs(claim: Any, stage: Path, held: contextlib.ExitStack, loaded: dict[str, Any], kinds: list[str],
                runs_dir: Path, inputs: tuple) -> dict[str, tuple[Path, Path]]:
    """Where compare saves each model of ``kinds`` it trains: (path written now, final path).

    A run inside the report folder is written into its staging folder and switched in with the
    reports; one outside it is claimed on its own (held in ``held``). A run compare loads must not
    be where it would write one.
    """
    from .errors import StoreError

    outs: dict[str, tuple[Path, Path]] = {}
    for kind in kinds:
        final = runs_dir / kind
        rel = claim.relative(final)
        if rel == Path("."):
            raise StoreError(f"--runs-dir {runs_dir}: would save the {kind} run as the report folder itself")
        if rel is None:
            held.enter_context(claim_output(final, "run", option="--runs-dir", inputs=inputs))
            outs[kind] = (final, final)
        else:
            outs[kind] = (stage / rel, final)
        for other, r2 in loaded.items():
            if r2 is not None:
                a, b = absolute(r2.path), absolute(final)
                if a == b or a in b.parents or b in a.parents:
                    raise StoreError(f"--{other} {r2.path}: compare would save the {kind} run it trains at {final}, "
                                     "over the run it loads; pass another --runs-dir")
    return outs


@dataclass
class _Compared:
    report: dict
    plots: dict


def _compare_split(split: Split, loaded: dict[str, Any], outs: dict[str, tuple[Path, Path]],
                   params: dict[str, dict], ks: tuple[int, ...], main_k: int, n_boot: int, serving_sample: int,
                   bar: Any) -> _Compared:
    """Train what is not loaded, evaluate both, build report.json's content and the plots' arrays."""
    from . import evaluate as E

    ds = split.dataset
    seed = split.config.seed

    models: dict[str, Any] = {}
    info_: dict[str, dict] = {}
    for kind in COMPARE_KINDS:
        if loaded[kind] is not None:
            r = loaded[kind]
            models[kind] = r.model
            info_[kind] = {"run_dir": str(r.path), "trained_here": False, "seed": r.meta.get("seed"),
                           "valid_recall@20": r.meta.get("valid_recall@20")}
        else:
            with bar(f"training {kind}") as prog:
                res = train_model(kind, split, params.get(kind, {}), seed, outs[kind][0], prog)
            models[kind] = res.model
            info_[kind] = {"run_dir": str(outs[kind][1]), "trained_here": True, "seed": seed,
                           "valid_recall@20": res.valid_recall20}

    pops = E.populations(split)
    evals: dict[str, dict] = {}
    for kind in COMPARE_KINDS:
        with bar(f"evaluating {kind}") as prog:
            evals[kind] = E.evaluate_model(models[kind], split, ks, pops=pops, progress=prog)

    ss = np.random.SeedSequence(seed)
    boot_seed, pair_seed, serve_seed, map_seed = ss.spawn(4)
    section: dict[str, dict] = {}
    for kind in COMPARE_KINDS:
        m = models[kind]
        ev = evals[kind]
        rng = np.random.default_rng(boot_seed)  # the same resamples for both models
        summaries = {name: E.summarize_population(pe, n_boot, rng, ds.group_names, ks) for name, pe in ev.items()}
        with bar(f"timing {kind} serving") as prog:
            serving = E.serving_cost(m, split, max(ks), np.random.default_rng(serve_seed), serving_sample)
            prog(1, 1, {})
        w = summaries["warm"]
        serving["batch_ms_per_query"] = w["embed_ms_per_query"] + w["topk_ms_per_query"]
        training = E.training_cost(m)
        section[kind] = {
            "kind": kind, **info_[kind], "params": m.get_params(),
            "train_seconds": training["train_seconds"], "training": training,
            "warm": w, "cold": {n: s for n, s in summaries.items() if n != "warm"}, "serving": serving,
        }
    rng = np.random.default_rng(pair_seed)
    a, b = COMPARE_KINDS
    paired = {name: E.compare_models(evals[a][name], evals[b][name], n_boot, rng) for name in evals[a]}
    features = list(ds.features)
    rows = E.comparison_rows(section, paired, features, k=main_k)
    dataset = summarize(ds)
    report = {
        "dataset": dataset,
        "split": split.summary(),
        "settings": {"seed": seed, "ks": list(ks), "main_k": main_k, "bootstrap": n_boot,
                     "confidence_level": 0.95, "serving_sample": serving_sample, "user_features": features,
                     "package_version": _version()},
        "models": section,
        "comparison": {"a": a, "b": b, "difference": f"{a} - {b}", "paired": paired, "rows": rows,
                       "significance": "paired bootstrap over the same users; significant = the 95% interval "
                                       "of the difference excludes 0"},
    }
    from .tradeoff import measured_table

    report["tradeoff"] = measured_table(report)
    plots = {"maps": {kind: E.embedding_map(models[kind].item_vectors, np.random.default_rng(map_seed))
                      for kind in COMPARE_KINDS},
             "item_groups": ds.item_groups, "group_names": list(ds.group_names)}
    return _Compared(report, plots)


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# recommend: serve any saved run (WALS or softmax) through the shared Retriever interface


def _rank(run: Any, queries: np.ndarray, exclude: Any, k: int) -> list[list[dict]]:
    """Top-k rows of dicts (rank, item_id, score, item_group) for (q, d) query vectors."""
    from .evaluate import top_k_with_scores

    idx, scores = top_k_with_scores(queries, run.model.item_vectors, exclude, k)
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


def recommend_user(run_dir: str | Path, user_id: str, k: int = 10) -> dict:
    """Top-k items for a user of the run's data set, excluding the items the user already has.

    A held-out (cold) user of the split has no training items: the model embeds them from their
    stored features only, and the result says so in ``notes``.
    """
    from .store import load_run

    _check_k(k)
    run = load_run(run_dir)
    idx = run.user_index().get(str(user_id))
    if idx is None:
        raise DataError(f"user {user_id!r} is not in run {run.path} ({len(run.user_ids):,} users); "
                        "for a new user pass --history ITEM,ITEM,... and/or --feature NAME=VALUE")
    hist = run.known[[idx]]
    feats = {f: c[[idx]] for f, c in run.features.items()}
    notes = []
    if hist.nnz == 0:
        notes.append(f"user {user_id!r} has no training interactions (held out as a cold user); "
                     "recommendations come from the user's features only")
    q = np.asarray(run.model.query_vectors(hist, feats, users=np.array([idx])), dtype=np.float32)
    return {"run": str(run.path), "kind": run.kind, "query": {"user": str(user_id), "known_items": int(hist.nnz)},
            "k": k, "notes": notes, "recommendations": _rank(run, q, hist, k)[0]}


def recommend_new(run_dir: str | Path, history: list[str], features: dict[str, str], k: int = 10) -> dict:
    """Top-k items for a new user, not in the training data, from a history of item ids and features.

    Unknown item ids or feature names are errors (the message names them); an unknown feature value
    is treated as unknown (code -1) with a note.
    """
    import scipy.sparse as sp

    from .store import load_run

    _check_k(k)
    run = load_run(run_dir)
    index = run.item_index()
    history = list(dict.fromkeys(str(h).strip() for h in history if str(h).strip()))
    unknown = [h for h in history if h not in index]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise DataError(f"--history: {len(unknown)} item id(s) not in run {run.path}: {shown}")
    notes: list[str] = []
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
    cols = np.array([index[h] for h in history], dtype=np.int64)
    hist = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), cols)),
                         shape=(1, len(run.item_ids)))
    q = np.asarray(run.model.query_vectors(hist, codes or None, users=None), dtype=np.float32)
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
            "recommendations": _rank(run, q, hist, k)[0]}


def recommend_all(run_dir: str | Path, k: int, out: str | Path, progress: ProgressFn = no_progress,
                  chunk_size: int = 4096, overwrite: bool = False) -> dict:
    """Write ``user_id,item_id,rank,score`` (top-k, known items excluded) for every training user.

    Users are processed ``chunk_size`` at a time; the CSV is written to a temporary file beside
    ``out`` and renamed into place, so an interrupted run leaves no partial file. An existing
    ``out`` is replaced only if mfvsdnn wrote it (its exact header line) or ``overwrite``.
    """
    import csv

    from .evaluate import top_k_with_scores
    from .fsutil import write_file_atomic
    from .store import load_run

    _check_k(k)
    t0 = time.perf_counter()
    run = load_run(run_dir)
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
            idx, scores = top_k_with_scores(q, run.model.item_vectors, hist, k)
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
            "rows": rows, "seconds": time.perf_counter() - t0}


RECS_HEADER = "user_id,item_id,rank,score"


def train_from_csv(kind: str, data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig,
                   test_path: str | Path | None, params: dict[str, Any], out: str | Path | None,
                   progress: ProgressFn = no_progress) -> TrainResult:
    """Read and split the CSV, then :func:`train_model` with the split's seed (train-wals / train-*).

    ``out`` is claimed first (:func:`mfvsdnn.fsutil.claim_output`), so a folder that may not be
    replaced, or one another process is writing, is refused before the data is read or trained on.
    """
    with claim_unless_staged(out, "run", option="--out", inputs=(data, test_path)):
        split = prepare_split(data, columns, split_cfg, test_path)
        return train_model(kind, split, params, split_cfg.seed, out, progress)
# end of recommend / train_from_csv (issue 3)


# ---------------------------------------------------------------------------------------------
# sweep and scale (issue 6)


def sweep(data: str | Path, columns: ColumnSpec, split_cfg: SplitConfig, test_path: str | Path | None,
          cfg: Any, report_dir: str | Path, jobs: int = 1, progress_factory: Any = None,
          on_point: Any = None) -> tuple[dict, dict[str, Path]]:
    """Run (or resume) a sweep on one split; write sweep.json, sweep.md and sweep.html to ``report_dir``.

    sweep.json is replaced after every point (the resume file); at the end the three files are
    switched into place as one set.
    """
    from .report_curves import curve_files
    from .store import json_text
    from .sweep import run_sweep

    if jobs < 1:
        raise MfvsdnnError(f"--jobs must be >= 1, got {jobs}")
    with claim_output(report_dir, "sweep", option="--report-dir", inputs=(data, test_path)) as claim:
        split = prepare_split(data, columns, split_cfg, test_path)
        data_args = (str(data), columns.as_dict(), split_cfg.as_dict(), str(test_path) if test_path else None)
        doc = run_sweep(split, cfg, report_dir, jobs=jobs, data_args=data_args, on_point=on_point,
                        progress_factory=progress_factory)
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


def scale(cfg: Any, report_dir: str | Path, progress: ProgressFn = no_progress) -> tuple[dict, dict[str, Path]]:
    """Measure cost against corpus size; write scale.json, scale.md and scale.html to ``report_dir``.

    The report folder is claimed before the (long) measurement starts.
    """
    from .report_curves import curve_files
    from .scale import run_scale
    from .store import json_text

    cfg.check_memory()  # the largest size, before any data is generated
    with claim_output(report_dir, "scale", option="--report-dir") as claim:
        doc = run_scale(cfg, progress)
        paths = _write_set(claim, "scale", json_text(doc), curve_files("scale", doc))
    return doc, paths
