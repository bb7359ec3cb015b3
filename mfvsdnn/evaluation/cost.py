"""Cost: single-request serving latency, the candidate cache, model size and training time. Numbers only."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.topk import warm_up
from ..data.split import Split
from ..models.ranking import rank
from .populations import query_groups_of


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


def _search_ms(index: Any, queries: np.ndarray, exclude: sp.csr_matrix, k: int, rows: np.ndarray
               ) -> list[float]:
    """Seconds of one-query searches, one per row of ``rows``."""
    out = []
    for r in rows:
        q, ex = queries[r:r + 1], exclude[r:r + 1]
        t = time.perf_counter()
        index.search(q, k, ex)
        out.append(time.perf_counter() - t)
    return out


def index_cost(model: Any, split: Split, kind: str, settings: tuple[int, ...], k: int,
               rng: np.random.Generator, n_sample: int = 200) -> dict | None:
    """What serving ``model`` from an item-vector index of ``kind`` costs and loses. Numbers only.

    On the warm evaluation users (their known items excluded), against exact brute-force top-k:

    - ``build_seconds``, ``index_bytes`` (the serialized index; the float32 item vectors for exact),
      ``vectors_bytes`` and ``zero_norm_items``;
    - per search setting (efSearch for HNSW, nprobe for IVF; the index's default first when it is in
      ``settings``): ``index_recall`` (share of the exact top-k the index returns), ``recall`` (the
      end-to-end recall@k against the test items) and its loss against exact, single-query search
      latency p50/p99 over ``n_sample`` seeded users, and ms per query searching all users at once.

    None for a model without item vectors (it scores every item itself: nothing to index).
    """
    from ..models.index import build_index, default_curve, overlap_recall, zero_norm_count
    from . import metrics
    from .populations import populations

    if not model.capabilities.item_vectors:
        return None
    warm_up()
    pop = next(p for p in populations(split) if p.name == "warm")
    vectors = np.ascontiguousarray(model.item_vectors, dtype=np.float32)
    queries = np.ascontiguousarray(model.query_vectors(pop.histories, pop.features, users=pop.model_users,
                                                       groups=pop.query_groups), dtype=np.float32)
    exclude = sp.csr_matrix(pop.exclude)
    n_targets = metrics.n_targets(pop.targets)

    def recall(top: np.ndarray) -> float:
        return float(np.nanmean(metrics.recall_at_k(metrics.hits_matrix(top, pop.targets), n_targets, k)))

    rows = np.sort(rng.choice(len(queries), min(n_sample, len(queries)), replace=False))
    exact_index = build_index("exact", vectors)
    t = time.perf_counter()
    exact = exact_index.search(queries, k, exclude)[0]
    exact_batch = (time.perf_counter() - t) / max(len(queries), 1)
    exact_single = _search_ms(exact_index, queries, exclude, k, rows)
    exact_recall = recall(exact)

    t = time.perf_counter()
    with warnings.catch_warnings():  # zero-norm items are counted in the result instead
        warnings.simplefilter("ignore", UserWarning)
        index = build_index(kind, vectors)
    build_seconds = time.perf_counter() - t
    default = index.search_param
    values = [None] if kind == "exact" else sorted(set(settings or default_curve(kind)) | {default})
    points = []
    for value in values:
        index.set_search(value)
        t = time.perf_counter()
        top = index.search(queries, k, exclude)[0]
        batch = (time.perf_counter() - t) / max(len(queries), 1)
        single = _search_ms(index, queries, exclude, k, rows)
        r = recall(top)
        points.append({"value": value, "is_default": value == default, "index_recall": overlap_recall(top, exact),
                       "recall": r, "recall_loss": exact_recall - r, "single_ms_p50": _pct(single, 50),
                       "single_ms_p99": _pct(single, 99), "batch_ms_per_query": 1000.0 * batch})
    index.set_search(default)
    return {"kind": kind, "param": getattr(index, "param_name", "") or None, "k": int(k),
            "queries": int(len(queries)), "sample_queries": int(len(rows)), "build_seconds": build_seconds,
            "index_bytes": index.nbytes(), "vectors_bytes": int(vectors.nbytes),
            "zero_norm_items": zero_norm_count(vectors), "exact_recall": exact_recall,
            "exact_single_ms_p50": _pct(exact_single, 50), "exact_single_ms_p99": _pct(exact_single, 99),
            "exact_batch_ms_per_query": 1000.0 * exact_batch, "settings": points}
