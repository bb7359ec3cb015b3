"""The shared evaluator: top-k once per query, then every metric and every population."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import metrics
from .split import TrainSet


def top_k(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
          chunk_size: int = 2048) -> np.ndarray:
    """Top-k items by dot product, excluding known items, in bounded-memory chunks.

    Parameters
    ----------
    queries : (q, d) float32.  items : (n_items, d) float32.
    exclude : csr (q, n_items) of items never to return, or None.
    k : how many; ``chunk_size`` queries are scored at a time (memory chunk_size x n_items).

    Returns
    -------
    (q, k) int64 item indices, best first; -1 where fewer than k items are eligible.
    """
    q, n_items = queries.shape[0], items.shape[0]
    k_eff = min(k, n_items)
    out = np.full((q, k), -1, dtype=np.int64)
    items_t = np.ascontiguousarray(items.T, dtype=np.float32)
    for start in range(0, q, chunk_size):
        stop = min(q, start + chunk_size)
        scores = np.asarray(queries[start:stop], dtype=np.float32) @ items_t
        if exclude is not None:
            ex = exclude[start:stop]
            rows = np.repeat(np.arange(stop - start), np.diff(ex.indptr))
            scores[rows, ex.indices] = -np.inf
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n_items else \
            np.tile(np.arange(n_items), (stop - start, 1))
        ps = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        best_scores = np.take_along_axis(ps, order, axis=1)
        best[~np.isfinite(best_scores)] = -1
        out[start:stop, :k_eff] = best
    return out


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
    qv = model.query_vectors(hist, feats, users=users)
    tk = top_k(qv, model.item_vectors, hist, k)
    targets = train.valid[users]
    hits = metrics.hits_matrix(tk, targets)
    return float(metrics.recall_at_k(hits, np.diff(targets.indptr), k).mean())
