"""The shared evaluator: top-k once per query, then every metric and every population.

One implementation serves both models (anything with the Retriever interface of ``models/base.py``):

1. :func:`populations` builds the query sets of a split: warm users (history = train + valid, those
   items excluded, targets = test) and cold users at each revealed count r (history = the r revealed
   items, excluded; targets = the interactions after max(revealed); features only at r = 0).
2. :func:`evaluate_population` ranks the queries once at max(k) with :func:`rank` (the one path from a
   model to a top-k list): a dot-product model's queries are embedded (``model.query_vectors``) and
   scored ``Q Vᵀ`` in bounded-memory chunks; a model without item vectors (``capabilities``) is asked
   for ``model.scores`` on chunks of the same size; either way a numba kernel excludes known items and
   keeps the top max(k). Every metric at every k is read from that one (q, max k) array by the pure
   functions in ``metrics.py``.
3. :func:`summarize_population` / :func:`compare_models` turn per-user values into means with 95%
   bootstrap intervals over users and paired bootstrap tests of the difference between two models.
4. :func:`serving_cost` measures single-query latency, the candidate-cache build (for models whose
   ``capabilities.candidate_cache`` says a known user's query is fixed), and model size.

Models receive the query-time user groups (``groups=``) only from the data's user-group column; the
group used for leakage, which for cold users comes from their held-out interactions, never reaches
a model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.progress import ProgressFn, no_progress
from ..data import user_group_of
from ..data.split import Split, TrainSet
from . import metrics

DEFAULT_KS = (10, 20, 50)
MAIN_K = 20
SCORE_BUDGET_BYTES = 64 << 20  # memory for one chunk of scores (chunk_size x n_items float32)
PARALLEL_ROWS_WARM = 128  # >= topk_kernels.PARALLEL_MIN_ROWS: warms the parallel kernel too


# ---------------------------------------------------------------------------------------------
# top-k


def auto_chunk_size(n_items: int, budget_bytes: int = SCORE_BUDGET_BYTES) -> int:
    """Queries scored at once so that a chunk of float32 scores fits ``budget_bytes`` (16..4096)."""
    return int(max(16, min(4096, budget_bytes // max(1, 4 * n_items))))


def _exclusion_parts(exclude: sp.csr_matrix | None, q: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 (q + 1,), indices int64) of the items to exclude per query (empty without any)."""
    if exclude is None:
        return np.zeros(q + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if exclude.shape != (q, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected {(q, n_items)}")
    exclude = sp.csr_matrix(exclude)
    return exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)


def _select(scores: np.ndarray, ex_ptr: np.ndarray, ex_ind: np.ndarray, k: int, out: np.ndarray,
            out_s: np.ndarray) -> None:
    """The numba top-k over a chunk of scores (overwritten: excluded entries become -inf).

    ``ex_ptr`` (rows + 1,) may start anywhere in ``ex_ind``: it is the chunk's slice of the full
    exclusion indptr.
    """
    from .topk_kernels import PARALLEL_MIN_ROWS, topk_rows, topk_rows_serial

    kernel = topk_rows if scores.shape[0] >= PARALLEL_MIN_ROWS else topk_rows_serial
    kernel(scores, ex_ptr - ex_ptr[0], ex_ind[ex_ptr[0]:ex_ptr[-1]], k, out, out_s)


def _empty_top(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -1, dtype=np.int64), np.full((q, k), -np.inf, dtype=np.float32)


def top_k_with_scores(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and their scores; see :func:`top_k`. Returns ((q, k) int64, (q, k) float32)."""
    queries = np.asarray(queries, dtype=np.float32)
    q, n_items = queries.shape[0], items.shape[0]
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = _empty_top(q, k)
    if q == 0 or k == 0:
        return out, out_s
    items_t = np.ascontiguousarray(np.asarray(items, dtype=np.float32).T)  # (d, n_items)
    buf = np.empty((min(chunk, q), n_items), dtype=np.float32)
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        scores = buf[: stop - start]
        np.matmul(queries[start:stop], items_t, out=scores)  # (c, d) @ (d, n_items)
        _select(scores, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
    return out, out_s


def top_k_from_scores(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int,
                      overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of precomputed scores, with the same exclusion, ties and NaN handling as :func:`top_k`.

    scores : (q, n_items). Copied first unless ``overwrite`` (then the array is modified in place
    when it is already C-contiguous float32: excluded entries become -inf).
    Returns ((q, k) int64 item indices, (q, k) float32 scores).
    """
    if overwrite:
        scores = np.ascontiguousarray(scores, dtype=np.float32)
    else:
        scores = np.array(scores, dtype=np.float32, order="C", copy=True)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries x items), got shape {scores.shape}")
    q, n_items = scores.shape
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    out, out_s = _empty_top(q, k)
    if q and k:
        _select(scores, ex_ptr, ex_ind, k, out, out_s)
    return out, out_s


def top_k(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
          chunk_size: int | None = None) -> np.ndarray:
    """Top-k items by dot product, excluding known items, in bounded-memory chunks.

    Parameters
    ----------
    queries : (q, d) float32.  items : (n_items, d) float32.
    exclude : csr (q, n_items) of items never to return, or None.
    k : how many; ``chunk_size`` queries are scored at a time (memory chunk_size x n_items float32;
        default: as many as fit in 64 MiB).

    Returns
    -------
    (q, k) int64 item indices, best first (ties to the lower index); -1 where fewer than k items are
    eligible.
    """
    return top_k_with_scores(queries, items, exclude, k, chunk_size)[0]


def _rows(values: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if values is None else values[start:stop]


def rank(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
         users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
         chunk_size: int | None = None, timings: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of a set of queries: the one path from any model to a ranked list.

    Parameters
    ----------
    model : a fitted model (``models/base.py``). With ``capabilities.item_vectors`` its queries are
        embedded by ``query_vectors`` and scored against ``item_vectors`` (:func:`top_k_with_scores`);
        otherwise ``model.scores`` is called on chunks of queries sized by the same 64 MiB budget and
        each chunk goes through :func:`top_k_from_scores`.
    histories, features, users, groups : passed to the model (see ``Retriever.query_vectors``).
    exclude : csr (q, n_items) of items never to return, or None. k : how many.
    chunk_size : queries scored at a time (default: as many as fit in 64 MiB).
    timings : if given, receives ``embed`` (seconds in ``query_vectors``; 0 for a model that only
        scores) and ``topk`` (seconds scoring and selecting).

    Returns
    -------
    ((q, k) int64 item indices best first, -1 where fewer than k items are eligible; (q, k) float32
    scores).
    """
    histories = sp.csr_matrix(histories)
    t0 = time.perf_counter()
    if model.capabilities.item_vectors:
        qv = model.query_vectors(histories, features, users=users, groups=groups)
        t1 = time.perf_counter()
        out = top_k_with_scores(qv, model.item_vectors, exclude, k, chunk_size)
    else:
        t1 = t0
        out = _rank_by_scores(model, histories, features, users, groups, exclude, k, chunk_size)
    if timings is not None:
        timings["embed"] = t1 - t0
        timings["topk"] = time.perf_counter() - t1
    return out


def _rank_by_scores(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
                    users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
                    chunk_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank` for a model without item vectors: ``model.scores`` chunk by chunk, then top-k."""
    q, n_items = histories.shape
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = _empty_top(q, k)
    for start in range(0, q if k else 0, chunk):
        stop = min(q, start + chunk)
        feats = None if features is None else {f: c[start:stop] for f, c in features.items()}
        s = model.scores(histories[start:stop], feats, users=_rows(users, start, stop),
                         groups=_rows(groups, start, stop))
        s = np.ascontiguousarray(s, dtype=np.float32)
        if s.shape != (stop - start, n_items):
            raise ModelError(f"model {model.kind!r}: scores returned shape {s.shape} for "
                             f"{stop - start} queries over {n_items} items")
        _select(s, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
    return out, out_s


def validation_recall(model, train: TrainSet, k: int = 20, max_users: int = 5000,
                      rng: np.random.Generator | None = None) -> float:
    """Mean recall@k on ``train.valid`` (for early stopping), training items excluded.

    Uses up to ``max_users`` validation users (a seeded sample when ``rng`` is given, else the first).
    Returns nan when there is no validation data.
    """
    if train.valid is None or train.valid.nnz == 0:
        return float("nan")
    users = np.flatnonzero(np.diff(train.valid.indptr) > 0)
    if len(users) > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False)) if rng is not None else users[:max_users]
    hist = train.matrix[users]
    feats = {f: c[users] for f, c in train.features.items()}
    groups = None if train.user_groups is None else np.asarray(train.user_groups, dtype=np.int32)[users]
    tk = rank(model, hist, feats, users, groups, hist, k)[0]
    targets = train.valid[users]
    hits = metrics.hits_matrix(tk, targets)
    return float(metrics.recall_at_k(hits, np.diff(targets.indptr), k).mean())


# ---------------------------------------------------------------------------------------------
# populations


@dataclass
class Population:
    """One set of queries to evaluate.

    Attributes
    ----------
    name : "warm" or "r=<count>".
    users : (q,) dataset user indices.
    histories : csr (q, n_items) given to ``query_vectors``; ``exclude`` the items never recommended.
    targets : csr (q, n_items) held-out positives.
    features : name -> (q,) codes, or None when the data has no user features.
    model_users : (q,) training-user indices passed as ``users=`` (warm), or None (cold).
    user_group : (q,) group code (-1 unknown) for leakage, or None without item groups;
        ``group_source`` says how it was derived. For cold users it may come from held-out
        interactions, so it is never given to a model.
    query_groups : (q,) int32 codes of the data's user-group column, passed to the model as
        ``groups=``; None when the data has no user-group column.
    """

    name: str
    users: np.ndarray
    histories: sp.csr_matrix
    exclude: sp.csr_matrix
    targets: sp.csr_matrix
    features: dict[str, np.ndarray] | None
    model_users: np.ndarray | None
    user_group: np.ndarray | None = None
    group_source: str = ""
    query_groups: np.ndarray | None = None


def query_groups_of(split: Split, users: np.ndarray) -> np.ndarray | None:
    """The user-group column's codes for ``users`` (int32), or None when the data has no such column."""
    ug = split.dataset.user_groups
    return None if ug is None else np.asarray(ug, dtype=np.int32)[users]


def populations(split: Split) -> list[Population]:
    """Warm users, then cold users at every revealed count r of ``split.config.revealed``."""
    ds = split.dataset
    n_groups = len(ds.group_names)
    feats_all = ds.features or {}

    def feats(users: np.ndarray) -> dict[str, np.ndarray] | None:
        return {f: c[users] for f, c in feats_all.items()} if feats_all else None

    out: list[Population] = []
    warm = split.warm_eval_users
    known = split.known()
    hist = known[warm]
    ug_w = ug_c = None
    src_w = src_c = ""
    if ds.item_groups is not None:
        ug_w = user_group_of(split.train, ds.item_groups, ds.user_groups, n_groups)[warm]
        src_w = ("user group column" if ds.user_groups is not None
                 else "majority item group of the user's training items")
    out.append(Population("warm", warm, hist, hist, split.test[warm], feats(warm), warm, ug_w, src_w,
                          query_groups_of(split, warm)))

    cold = split.cold_eval_users
    if len(cold):
        targets = split.cold_targets()[cold]
        if ds.item_groups is not None:
            ug_c = user_group_of(split.cold, ds.item_groups, ds.user_groups, n_groups)[cold]
            src_c = ("user group column" if ds.user_groups is not None
                     else "majority item group of all the cold user's interactions (revealed and held out)")
        for r in split.config.revealed:
            h = split.cold_history(r)[cold]
            out.append(Population(f"r={r}", cold, h, h, targets, feats(cold), None, ug_c, src_c,
                                  query_groups_of(split, cold)))
    return out


# ---------------------------------------------------------------------------------------------
# evaluating one population


@dataclass
class PopulationEval:
    """Per-user metric values of one model on one population (top-k computed once)."""

    name: str
    users: np.ndarray
    per_user: dict[str, np.ndarray]  # metric name -> (q,) values, NaN where undefined
    scalars: dict[str, float]  # population-level figures (coverage@k)
    user_group: np.ndarray | None
    group_source: str
    embed_seconds: float
    topk_seconds: float


def metric_arrays(topk: np.ndarray, targets: sp.csr_matrix, ks: tuple[int, ...],
                  item_percentile: np.ndarray, item_groups: np.ndarray | None,
                  user_group: np.ndarray | None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every metric at every k from one top-max(k) array. Returns (per-user arrays, scalars)."""
    hits = metrics.hits_matrix(topk, targets)
    nt = metrics.n_targets(targets)
    per: dict[str, np.ndarray] = {}
    scal: dict[str, float] = {}
    n_items = len(item_percentile)
    for k in ks:
        per[f"recall@{k}"] = metrics.recall_at_k(hits, nt, k)
        per[f"precision@{k}"] = metrics.precision_at_k(hits, k)
        per[f"ndcg@{k}"] = metrics.ndcg_at_k(hits, nt, k)
        per[f"hit_rate@{k}"] = metrics.hit_rate_at_k(hits, k)
        per[f"popularity@{k}"] = metrics.mean_popularity_at_k(topk, k, item_percentile)
        scal[f"coverage@{k}"] = metrics.catalog_coverage(topk, k, n_items)
        if item_groups is not None and user_group is not None:
            per[f"leakage@{k}"] = metrics.leakage_at_k(topk, k, user_group, item_groups)
    if item_groups is not None and user_group is not None:
        per["natural_cross_rate"] = metrics.cross_rate(targets, user_group, item_groups)
    return per, scal


def evaluate_population(model: Any, pop: Population, ks: tuple[int, ...], item_percentile: np.ndarray,
                        item_groups: np.ndarray | None, chunk_size: int | None = None) -> PopulationEval:
    """Rank the population's queries once at max(ks) (:func:`rank`), read every metric. Timed."""
    tm: dict[str, float] = {}
    tk = rank(model, pop.histories, pop.features, pop.model_users, pop.query_groups, pop.exclude, max(ks),
              chunk_size, timings=tm)[0]
    per, scal = metric_arrays(tk, pop.targets, ks, item_percentile, item_groups, pop.user_group)
    return PopulationEval(pop.name, pop.users, per, scal, pop.user_group, pop.group_source, tm["embed"], tm["topk"])


def item_popularity(split: Split) -> np.ndarray:
    """(n_items,) popularity percentile of each item from its training count."""
    counts = np.bincount(split.train.indices, minlength=split.train.shape[1])
    return metrics.popularity_percentiles(counts)


def warm_up() -> None:
    """Load the numba top-k kernel (from its cache) so the first timed call is not a compile."""
    top_k(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32), None, 2)
    top_k(np.ones((PARALLEL_ROWS_WARM, 2), np.float32), np.ones((3, 2), np.float32), None, 2)


def evaluate_model(model: Any, split: Split, ks: tuple[int, ...] = DEFAULT_KS,
                   pops: list[Population] | None = None, chunk_size: int | None = None,
                   progress: ProgressFn = no_progress) -> dict[str, PopulationEval]:
    """Evaluate one model on every population. Returns name -> PopulationEval."""
    warm_up()
    pops = pops if pops is not None else populations(split)
    pct = item_popularity(split)
    groups = split.dataset.item_groups
    out: dict[str, PopulationEval] = {}
    for i, pop in enumerate(pops):
        out[pop.name] = evaluate_population(model, pop, ks, pct, groups, chunk_size)
        progress(i + 1, len(pops), {})
    return out


# ---------------------------------------------------------------------------------------------
# uncertainty and paired comparison


def _ci_pair(lo: float, hi: float) -> list[float]:
    return [float(lo), float(hi)]


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def summarize_population(ev: PopulationEval, n_boot: int, rng: np.random.Generator,
                         group_names: list[str] | None = None, ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Means with 95% bootstrap intervals over users, population scalars, and a per-group breakdown.

    Keys: ``users``; every per-user metric (``recall@20``...) with ``<metric>_ci`` = [low, high];
    ``coverage@k``; ``embed_ms_per_query``, ``topk_ms_per_query``; ``by_group`` {group: {users,
    recall@k, leakage@k, natural_cross_rate}}; ``group_source``.
    """
    names = list(ev.per_user)
    q = len(ev.users)
    out: dict[str, Any] = {"users": int(q)}
    if names:
        mat = np.vstack([ev.per_user[n] for n in names])  # (m, q)
        lo, hi = (np.full(len(names), np.nan),) * 2
        if n_boot > 0 and q > 0:
            lo, hi = metrics.percentile_interval(metrics.bootstrap_means(mat, n_boot, rng))
        for j, n in enumerate(names):
            out[n] = _nanmean(mat[j])
            out[f"{n}_ci"] = _ci_pair(lo[j], hi[j])
    out.update({k: float(v) for k, v in ev.scalars.items()})
    out["embed_ms_per_query"] = 1000.0 * ev.embed_seconds / max(q, 1)
    out["topk_ms_per_query"] = 1000.0 * ev.topk_seconds / max(q, 1)
    if ev.user_group is not None and group_names:
        out["group_source"] = ev.group_source
        by: dict[str, dict] = {}
        keep = [n for n in names if n.startswith(("recall@", "leakage@")) or n == "natural_cross_rate"]
        for g, gname in enumerate(group_names):
            m = ev.user_group == g
            if not m.any():
                continue
            by[gname] = {"users": int(m.sum()), **{n: _nanmean(ev.per_user[n][m]) for n in keep}}
        out["by_group"] = by
    return out


def compare_models(a: PopulationEval, b: PopulationEval, n_boot: int, rng: np.random.Generator,
                   level: float = 0.95) -> dict[str, dict]:
    """Paired bootstrap over the same users of every per-user metric: a − b.

    Returns metric -> {"diff": mean(a − b), "ci": [low, high], "p": two-sided p-value-like share,
    "significant": the interval excludes 0 (p < 1 − level)}.
    """
    if not np.array_equal(a.users, b.users):
        raise ValueError(f"population {a.name}: the two evaluations are on different users")
    names = [n for n in a.per_user if n in b.per_user]
    if not names or len(a.users) == 0:
        return {}
    diff = np.vstack([a.per_user[n] - b.per_user[n] for n in names])  # NaN where either is undefined
    boot = metrics.bootstrap_means(diff, n_boot, rng) if n_boot > 0 else np.full((0, len(names)), np.nan)
    lo, hi = metrics.percentile_interval(boot) if n_boot > 0 else (np.full(len(names), np.nan),) * 2
    p = metrics.paired_p_value(boot) if n_boot > 0 else np.full(len(names), np.nan)
    out = {}
    for j, n in enumerate(names):
        sig = bool(p[j] < 1 - level) if not math.isnan(p[j]) else False
        out[n] = {"diff": _nanmean(diff[j]), "ci": _ci_pair(lo[j], hi[j]), "p": float(p[j]), "significant": sig}
    return out


# ---------------------------------------------------------------------------------------------
# cost: serving latency, candidate cache, model size


def _pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x) * 1000.0, q)) if x else float("nan")


def model_bytes(model: Any) -> int:
    """Bytes of every learned array of the model (what ``model.npz`` stores, uncompressed)."""
    return int(sum(np.asarray(a).nbytes for a in model.state().values()))


def serving_cost(model: Any, split: Split, k: int, rng: np.random.Generator, n_sample: int = 200) -> dict:
    """Single-query serving latency and the precompute-and-store alternative. Numbers only.

    - ``query_ms_p50/p99``: one warm user's query embedding (``query_vectors`` on one row, the user's
      index passed so a model may use stored state), over ``n_sample`` seeded warm users; 0 for a
      model without item vectors (its whole cost is in the scoring);
    - ``topk_ms_p50/p99``: scoring that one query against every item + top-k with exclusion;
    - ``cold_query_ms_p50/p99``: one cold user's embedding at the largest revealed count (fold-in for
      WALS, a forward pass for the DNN);
    - ``cache_build_seconds``/``cache_bytes``/``cache_users``: the top-k of every warm user computed
      in batch and stored as int32, only where ``model.capabilities.candidate_cache`` (a known user's
      query is fixed after fit), else None;
    - ``model_bytes``.
    """
    warm_up()
    ds = split.dataset
    known = split.known()
    feats_all = ds.features or {}

    def one(matrix: sp.csr_matrix, u: int, users: np.ndarray | None) -> dict[str, float]:
        h = matrix[u:u + 1]
        f = {n: c[u:u + 1] for n, c in feats_all.items()} or None
        tm: dict[str, float] = {}
        rank(model, h, f, users, query_groups_of(split, np.array([u])), h, k, timings=tm)
        return tm

    pool = split.warm_eval_users
    sample = np.sort(rng.choice(pool, min(n_sample, len(pool)), replace=False)) if len(pool) else pool
    warm_t = [one(known, u, np.array([u])) for u in sample]
    cold_t: list[dict[str, float]] = []
    cold = split.cold_eval_users
    if len(cold):
        hist = split.cold_history(max(split.config.revealed))
        csample = np.sort(rng.choice(cold, min(n_sample, len(cold)), replace=False))
        cold_t = [one(hist, u, None) for u in csample]
    qt, tt, ct = ([t[key] for t in ts] for ts, key in ((warm_t, "embed"), (warm_t, "topk"), (cold_t, "embed")))
    out: dict[str, Any] = {
        "sample_users": int(len(sample)),
        "query_ms_p50": _pct(qt, 50), "query_ms_p99": _pct(qt, 99),
        "topk_ms_p50": _pct(tt, 50), "topk_ms_p99": _pct(tt, 99),
        "cold_query_ms_p50": _pct(ct, 50), "cold_query_ms_p99": _pct(ct, 99),
        "model_bytes": model_bytes(model),
        "cache_build_seconds": None, "cache_bytes": None, "cache_users": None,
    }
    if model.capabilities.candidate_cache:
        warm = split.warm_users
        t0 = time.perf_counter()
        h = known[warm]
        f = {n: c[warm] for n, c in feats_all.items()} or None
        table = rank(model, h, f, warm, query_groups_of(split, warm), h, k)[0].astype(np.int32)
        out["cache_build_seconds"] = time.perf_counter() - t0
        out["cache_bytes"] = int(table.nbytes)
        out["cache_users"] = int(len(warm))
    return out


def training_cost(model: Any) -> dict:
    """Training time from the fit, its iterations/epochs and the time per iteration."""
    secs = float(getattr(model, "train_seconds_", float("nan")))
    n = len(getattr(model, "history_", []) or [])
    return {"train_seconds": secs, "iterations": n, "seconds_per_iteration": secs / n if n else float("nan")}


# ---------------------------------------------------------------------------------------------
# the picture of folding: a 2-D projection of the item embeddings


def embedding_map(item_vectors: np.ndarray, rng: np.random.Generator, max_points: int = 3000) -> dict:
    """PCA of the item embeddings to 2-D (numpy SVD of the centred matrix), on a seeded item sample.

    Returns {"items": (p,) item indices, "xy": (p, 2) coordinates, "explained": (2,) variance shares}.
    """
    V = np.asarray(item_vectors, dtype=np.float64)
    n = V.shape[0]
    idx = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    X = V[idx] - V[idx].mean(axis=0)
    _, s, vt = np.linalg.svd(X, full_matrices=False)  # X = U S Vt; principal axes = rows of Vt
    comps = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros((2 - vt.shape[0], V.shape[1]))])
    xy = X @ comps.T
    var = s ** 2
    explained = (var[:2] / var.sum()) if var.sum() > 0 else np.zeros(2)
    return {"items": idx, "xy": xy, "explained": np.pad(explained, (0, 2 - len(explained)))}


# ---------------------------------------------------------------------------------------------
# the side-by-side verdict, row by row along the five axes of the trade-off table

AXES = ("retrieval quality (warm users)", "query features", "cold start", "folding",
        "training scalability", "serving scalability")


TIMING_TIE = 0.10  # single timings within 10% of each other are called a tie (they are noisy)


def _better(va: float | None, vb: float | None, names: tuple[str, str], direction: str,
            target: float | None = None, tie_rel: float = 0.0) -> str | None:
    """Which of two values is better: 'higher', 'lower', or 'closer' (to ``target``). None if undefined.

    ``tie_rel``: values within this relative difference are a 'tie'.
    """
    if va is None or vb is None or any(isinstance(v, float) and math.isnan(v) for v in (va, vb)):
        return None
    if tie_rel and abs(va - vb) <= tie_rel * max(abs(va), abs(vb)):
        return "tie"
    if direction == "closer":
        if target is None or math.isnan(target):
            return None
        va, vb = -abs(va - target), -abs(vb - target)
    elif direction == "lower":
        va, vb = -va, -vb
    elif direction != "higher":
        return None
    if va == vb:
        return "tie"
    return names[0] if va > vb else names[1]


def comparison_rows(models: dict[str, dict], paired: dict[str, dict], features: list[str],
                    k: int = MAIN_K, level: float = 0.95) -> list[dict]:
    """Rows of the verdict table, grouped by axis.

    ``models``: kind -> the model's report section (warm, cold, serving, training); exactly two kinds.
    ``paired``: population -> metric -> :func:`compare_models` output (first kind minus second).
    Each row: axis, metric, population, unit, direction ('higher'/'lower'/'closer'/'info'),
    values {kind: number}, ci {kind: [lo, hi]} (bootstrapped metrics only), better (kind, 'tie' or
    None), significant (bool from the paired bootstrap at ``level``; None for single measurements),
    p, diff (first − second) and a note.
    """
    names = tuple(models)
    assert len(names) == 2, "comparison_rows compares exactly two models"
    a, b = names
    rows: list[dict] = []

    def metric_row(axis: str, label: str, pop: str, key: str, direction: str = "higher",
                   target: float | None = None, note: str = "") -> None:
        secs = {n: (models[n]["warm"] if pop == "warm" else models[n]["cold"].get(pop)) for n in names}
        if any(s is None or key not in s for s in secs.values()):
            return
        vals = {n: secs[n][key] for n in names}
        pr = paired.get(pop, {}).get(key, {})
        better = _better(vals[a], vals[b], names, direction, target)
        sig = pr.get("significant")
        if direction == "info":
            sig = None
        elif better in (None, "tie"):
            sig = False
        rows.append({
            "axis": axis, "metric": label, "population": pop, "key": key, "unit": "share",
            "direction": direction, "values": vals, "ci": {n: secs[n].get(f"{key}_ci") for n in names},
            "better": better, "significant": sig,
            "p": pr.get("p"), "diff": pr.get("diff"), "diff_ci": pr.get("ci"), "note": note,
        })

    def cost_row(axis: str, label: str, section: str, key: str, unit: str, direction: str = "lower",
                 note: str = "") -> None:
        vals = {n: models[n][section].get(key) for n in names}
        better = _better(vals[a], vals[b], names, direction, tie_rel=TIMING_TIE if unit in ("s", "ms") else 0.0)
        rows.append({
            "axis": axis, "metric": label, "population": None, "key": key, "unit": unit,
            "direction": direction, "values": vals, "ci": {n: None for n in names}, "better": better,
            "significant": None, "p": None, "diff": None, "diff_ci": None, "note": note,
        })

    ax = AXES
    for key, label in ((f"recall@{k}", f"recall@{k}"), (f"ndcg@{k}", f"NDCG@{k}"),
                       (f"precision@{k}", f"precision@{k}"), (f"hit_rate@{k}", f"hit rate@{k}")):
        metric_row(ax[0], label, "warm", key)
    cost_row(ax[0], f"catalog coverage@{k}", "warm", f"coverage@{k}", "share", "higher",
             note="share of items recommended to anyone; no interval (a catalogue-level count)")
    metric_row(ax[0], f"popularity percentile@{k}", "warm", f"popularity@{k}", "info",
               note="mean popularity percentile of recommended items; 1 = the most popular item")

    fnote = (f"features used: {', '.join(features)}" if features
             else "no user features given (pass --user-features): r=0 queries carry no information")
    metric_row(ax[1], f"recall@{k}, cold r=0 (features only)", "r=0", f"recall@{k}", note=fnote)
    metric_row(ax[1], f"NDCG@{k}, cold r=0 (features only)", "r=0", f"ndcg@{k}", note=fnote)

    cold_pops = [p for p in models[a]["cold"] if p.startswith("r=")]
    for p in cold_pops:
        metric_row(ax[2], f"recall@{k}, cold {p}", p, f"recall@{k}",
                   note=f"cold users with {p[2:]} revealed interactions")

    for pop in ["warm"] + cold_pops[-1:]:
        sec = models[a]["warm"] if pop == "warm" else models[a]["cold"][pop]
        nat = sec.get("natural_cross_rate")
        if nat is None:
            continue
        who = "warm" if pop == "warm" else f"cold {pop}"
        metric_row(ax[3], f"leakage@{k}, {who} (natural {nat:.3f})", pop, f"leakage@{k}", "closer", nat,
                   note=f"natural cross-group rate of the same users' held-out interactions: {nat:.3f}; "
                        "leakage above it is folding")

    cost_row(ax[4], "training time", "training", "train_seconds", "s")
    cost_row(ax[4], "time per iteration/epoch", "training", "seconds_per_iteration", "s",
             note="iterations for WALS, epochs for the DNN; growth with corpus size: mfvsdnn scale")
    cost_row(ax[4], "iterations/epochs run", "training", "iterations", "count", "info")

    cost_row(ax[5], "query embed, 1 request, p50", "serving", "query_ms_p50", "ms",
             note="a warm user's query vector (WALS: a stored row; DNN: a tower forward pass)")
    cost_row(ax[5], "query embed, 1 request, p99", "serving", "query_ms_p99", "ms")
    cost_row(ax[5], "cold query embed, p50", "serving", "cold_query_ms_p50", "ms",
             note="a new user at the largest r (WALS: fold-in solve; DNN: forward pass)")
    cost_row(ax[5], "score + top-k, 1 request, p50", "serving", "topk_ms_p50", "ms",
             note="score every item, exclude known ones, keep the top max(k)")
    cost_row(ax[5], "score + top-k, 1 request, p99", "serving", "topk_ms_p99", "ms")
    cost_row(ax[5], "batched embed + top-k / query", "serving", "batch_ms_per_query", "ms")
    cost_row(ax[5], "candidate cache build", "serving", "cache_build_seconds", "s",
             note="precompute-and-store top-k of every warm user; not applicable to the DNN "
                  "(its query embedding depends on the request)")
    cost_row(ax[5], "candidate cache size", "serving", "cache_bytes", "bytes")
    cost_row(ax[5], "model size", "serving", "model_bytes", "bytes")
    return rows
