"""Choosing the WALS MAP fold-in prior ``lam`` on validation users made pseudo-cold.

A real cold user cannot be used to choose ``lam`` (they are the test). Instead each user with a
validation slice (``train.valid``) is turned into a query that looks cold: r items drawn (seeded)
from their training row, plus their features; the targets are their validation items and only the
r revealed items are excluded from the ranking. ``lam`` is the grid value with the best mean recall@k.

This is a choice of ``lam``, not a test figure: the item factors V were fitted on these users' full
training rows, so the recalls are optimistic for every ``lam`` alike. The prior mean leaves the user's
own trained vector out of the feature mean (a truly cold user is in no training mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.split import TrainSet
from ..evaluation import metrics
from ..models.ranking import rank

DEFAULT_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MAX_USERS = 2000  # pseudo-cold users at most: bounds the cost at (len(grid) x revealed x MAX_USERS) solves


@dataclass(frozen=True)
class FoldInChoice:
    """The chosen prior and the evidence.

    lam : the grid value with the best mean recall@k (ties: the smaller); 0 without validation data.
    table : (lam, mean recall@k) per grid value, the mean over the revealed counts r of each r's mean
        over its users (NaN without validation data).
    by_revealed : r -> recall@k per grid value (in grid order), for the r values that had users.
    users : pseudo-cold users drawn (each is one query per r it has enough training items for).
    """

    lam: float
    table: list[tuple[float, float]]
    by_revealed: dict[int, list[float]] = field(default_factory=dict)
    users: int = 0


class _PinnedPrior:
    """A WALS model whose queries are all MAP fold-ins with given prior means (as ``rank`` needs them)."""

    def __init__(self, model: Any, prior_means: np.ndarray, lam: float) -> None:
        self.capabilities = model.capabilities
        self.item_vectors = model.item_vectors
        self._model, self._prior, self._lam = model, prior_means, lam

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        return self._model.fold_in_map(histories, self._prior, self._lam)


def reveal(rows: sp.csr_matrix, r: int, rng: np.random.Generator) -> sp.csr_matrix:
    """r entries drawn uniformly without replacement from each row of ``rows`` (every row has >= r).

    One random key per stored entry; each row keeps its r smallest keys. Returns csr of the same shape.
    """
    rows = sp.csr_matrix(rows)
    counts = np.diff(rows.indptr)
    row_of = np.repeat(np.arange(rows.shape[0]), counts)
    order = np.lexsort((rng.random(rows.nnz), row_of))  # by row, then by key
    rank_in_row = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], counts)
    keep = order[rank_in_row < r]  # positions of each row's r smallest keys
    out = sp.csr_matrix((np.ones(len(keep), dtype=np.float32), (row_of[keep], rows.indices[keep])),
                        shape=rows.shape)
    out.sort_indices()
    return out


def _loo_prior(model: Any, features: dict[str, np.ndarray], users: np.ndarray) -> np.ndarray:
    """The feature heuristic's mean for each user with the user's own trained vector left out (q, d)."""
    means, _, support = model.feature_backoff(features, len(users))
    means = means.astype(np.float64)
    own = model.user_factors_[users].astype(np.float64)
    # a warm user shares its own feature values, so it is one of the `support` users averaged
    inside = model.warm_users_[users] & (support > 1)
    n = support[inside][:, None].astype(np.float64)
    means[inside] = (n * means[inside] - own[inside]) / (n - 1)
    return means


def choose_fold_in_prior(model: Any, train: TrainSet, revealed: tuple[int, ...], rng: np.random.Generator,
                         grid: tuple[float, ...] = DEFAULT_GRID, k: int = 20,
                         max_users: int = MAX_USERS) -> FoldInChoice:
    """Pick the MAP fold-in prior of a fitted WALS ``model`` on pseudo-cold validation users.

    revealed : the r values to simulate (those < 1 are skipped: r = 0 has no history to fold in).
    rng : draws the users (when more than ``max_users``) and their revealed items.
    Returns a :class:`FoldInChoice`; ``lam`` = 0 with NaN recalls when there is no validation slice.
    """
    grid = tuple(float(g) for g in grid)
    nan_table = [(g, float("nan")) for g in grid]
    rs = sorted({int(r) for r in revealed if int(r) >= 1})
    if train.valid is None or train.valid.nnz == 0 or not rs or not grid:
        return FoldInChoice(0.0, nan_table)
    n_train = np.diff(train.matrix.indptr)
    users = np.flatnonzero((np.diff(train.valid.indptr) > 0) & (n_train >= rs[0]))
    if len(users) > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    if len(users) == 0:
        return FoldInChoice(0.0, nan_table)
    feats = {f: np.asarray(c)[users] for f, c in train.features.items()}
    prior = _loo_prior(model, feats, users)
    groups = None if train.user_groups is None else np.asarray(train.user_groups, dtype=np.int32)[users]
    by_revealed: dict[int, list[float]] = {}
    for r in rs:
        rows = np.flatnonzero(n_train[users] >= r)
        if len(rows) == 0:
            continue
        hist = reveal(train.matrix[users[rows]], r, rng)
        targets = train.valid[users[rows]]
        n_targets = np.diff(targets.indptr)
        sub_feats = {f: c[rows] for f, c in feats.items()}
        sub_groups = None if groups is None else groups[rows]
        recalls = []
        for lam in grid:
            top = rank(_PinnedPrior(model, prior[rows], lam), hist, sub_feats, None, sub_groups, hist, k)[0]
            recalls.append(float(metrics.recall_at_k(metrics.hits_matrix(top, targets), n_targets, k).mean()))
        by_revealed[r] = recalls
    mean = np.mean(np.array(list(by_revealed.values())), axis=0)
    best = min(range(len(grid)), key=lambda i: (-mean[i], grid[i]))  # best recall, then the smaller lam
    return FoldInChoice(grid[best], [(g, float(m)) for g, m in zip(grid, mean, strict=True)], by_revealed,
                        len(users))
