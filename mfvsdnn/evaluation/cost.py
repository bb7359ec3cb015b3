"""Cost: single-request serving latency, the candidate cache, model size and training time. Numbers only."""

from __future__ import annotations

import time
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
