"""The shared evaluator: top-k once per query, then every metric, for every population and model alike.

1. ``populations.populations`` builds the query sets of a split: warm users (history = train + valid,
   those items excluded, targets = test) and cold users at each revealed count r (history = the r
   revealed items, excluded; targets = the interactions after max(revealed); features only at r = 0).
2. :func:`evaluate_population` ranks the queries once at max(k) with ``topk.rank`` and reads every
   metric at every k from that one (q, max k) array with the pure functions of ``metrics.py``.
3. ``uncertainty`` turns the per-user values into means with bootstrap intervals and paired tests;
   ``cost`` measures serving and training cost.

Numbers only: no labels, no prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.progress import ProgressFn, no_progress
from ..core.topk import TopKBackend, warm_up
from ..data.split import Split, TrainSet
from ..models.ranking import rank
from . import metrics
from .populations import Population, populations

DEFAULT_KS = (10, 20, 50)

#: A metric is named by (metric, k); k is None for metrics without a cut-off (natural_cross_rate).
MetricKey = tuple[str, int | None]


def validation_recall(model, train: TrainSet, k: int = 20, max_users: int = 5000,
                      rng: np.random.Generator | None = None) -> float:
    """Mean recall@k on ``train.valid`` (for early stopping), training items excluded.

    recall@k here is :func:`metrics.recall_at_k` (hits / |validation items|), the same definition as
    the reported ``recall``, so the best epoch is the one the report's recall would pick.

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


@dataclass
class PopulationEval:
    """Per-user metric values of one model on one population (top-k computed once)."""

    name: str
    users: np.ndarray
    per_user: dict[MetricKey, np.ndarray]  # (metric, k) -> (q,) values, NaN where undefined
    scalars: dict[MetricKey, float]  # population-level figures (coverage at each k)
    user_group: np.ndarray | None
    group_source: str
    embed_seconds: float
    topk_seconds: float
    revealed: int | None = None


def metric_arrays(topk: np.ndarray, targets: sp.csr_matrix, ks: tuple[int, ...],
                  item_percentile: np.ndarray, item_groups: np.ndarray | None,
                  user_group: np.ndarray | None) -> tuple[dict[MetricKey, np.ndarray], dict[MetricKey, float]]:
    """Every metric at every k from one top-max(k) array. Returns (per-user arrays, scalars), keyed by
    (metric, k): metric in recall (hits / |targets|), recall_truncated (hits / min(k, |targets|)), precision,
    ndcg, hit_rate, popularity, leakage (per user), coverage (scalar), natural_cross_rate (per user, k None). A two-stage model (one with ``candidate_items``) also
    gets candidate_recall at k = its N (see :func:`candidate_recall`)."""
    hits = metrics.hits_matrix(topk, targets)
    nt = metrics.n_targets(targets)
    per: dict[MetricKey, np.ndarray] = {}
    scal: dict[MetricKey, float] = {}
    n_items = len(item_percentile)
    for k in ks:
        per["recall", k] = metrics.recall_at_k(hits, nt, k)
        per["recall_truncated", k] = metrics.truncated_recall_at_k(hits, nt, k)
        per["precision", k] = metrics.precision_at_k(hits, k)
        per["ndcg", k] = metrics.ndcg_at_k(hits, nt, k)
        per["hit_rate", k] = metrics.hit_rate_at_k(hits, k)
        per["popularity", k] = metrics.mean_popularity_at_k(topk, k, item_percentile)
        scal["coverage", k] = metrics.catalog_coverage(topk, k, n_items)
        if item_groups is not None and user_group is not None:
            per["leakage", k] = metrics.leakage_at_k(topk, k, user_group, item_groups)
    if item_groups is not None and user_group is not None:
        per["natural_cross_rate", None] = metrics.cross_rate(targets, user_group, item_groups)
    return per, scal


def evaluate_population(model: Any, pop: Population, ks: tuple[int, ...], item_percentile: np.ndarray,
                        item_groups: np.ndarray | None, chunk_size: int | None = None,
                        topk_backend: TopKBackend | None = None) -> PopulationEval:
    """Rank the population's queries once at max(ks) (:func:`rank`), read every metric. Timed."""
    tm: dict[str, float] = {}
    tk = rank(model, pop.histories, pop.features, pop.model_users, pop.query_groups, pop.exclude, max(ks),
              chunk_size, timings=tm, backend=topk_backend)[0]
    per, scal = metric_arrays(tk, pop.targets, ks, item_percentile, item_groups, pop.user_group)
    if hasattr(model, "candidate_items"):
        per["candidate_recall", int(model.candidates)] = candidate_recall(model, pop)
    return PopulationEval(pop.name, pop.users, per, scal, pop.user_group, pop.group_source, tm["embed"], tm["topk"],
                          pop.revealed)


def candidate_recall(model: Any, pop: Population, max_entries: int = 1 << 22) -> np.ndarray:
    """(q,) a two-stage model's ceiling: held-out items among its N candidates / min(N, |targets|)
    (the retriever's truncated recall@N, :func:`metrics.truncated_recall_at_k`, the history excluded),
    on chunks of at most ``max_entries`` candidates. For k <= N it bounds the pipeline's recall@k
    (hits / |targets|) from above: hits in the top k <= hits among the candidates and
    |targets| >= min(N, |targets|). It does not bound recall_truncated@k (a user with more targets
    than k can fill a top k with hits while the candidates hold fewer than min(N, |targets|))."""
    n = int(model.candidates)
    q = pop.histories.shape[0]
    out = np.zeros(q, dtype=np.float64)
    step = max(1, max_entries // n)
    for start in range(0, q, step):
        stop = min(q, start + step)
        rows = slice(start, stop)
        feats = None if pop.features is None else {f: c[rows] for f, c in pop.features.items()}
        cand = model.candidate_items(pop.histories[rows], feats,
                                     None if pop.model_users is None else pop.model_users[rows],
                                     None if pop.query_groups is None else pop.query_groups[rows])
        targets = pop.targets[rows]
        out[rows] = metrics.truncated_recall_at_k(metrics.hits_matrix(cand, targets), metrics.n_targets(targets), n)
    return out


def item_popularity(split: Split) -> np.ndarray:
    """(n_items,) popularity percentile of each item from its training count."""
    counts = np.bincount(split.train.indices, minlength=split.train.shape[1])
    return metrics.popularity_percentiles(counts)


def evaluate_model(model: Any, split: Split, ks: tuple[int, ...] = DEFAULT_KS,
                   pops: list[Population] | None = None, chunk_size: int | None = None,
                   progress: ProgressFn = no_progress, topk_backend: TopKBackend | None = None
                   ) -> dict[str, PopulationEval]:
    """Evaluate one model on every population. Returns name -> PopulationEval."""
    warm_up()
    pops = pops if pops is not None else populations(split)
    pct = item_popularity(split)
    groups = split.dataset.item_groups
    out: dict[str, PopulationEval] = {}
    for i, pop in enumerate(pops):
        out[pop.name] = evaluate_population(model, pop, ks, pct, groups, chunk_size, topk_backend)
        progress(i + 1, len(pops), {})
    return out
