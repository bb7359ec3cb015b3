"""Pure metric functions over arrays. Top-k is computed once (see ``evaluate.top_k``) and read here.

Conventions: ``topk`` is (q, K) int item indices, best first (-1 = no item); ``targets`` is a csr
(q, n_items) of held-out positives. Per-query arrays are returned so the evaluator can bootstrap;
a per-query value that is undefined (e.g. leakage of a user without a group) is NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# ---------------------------------------------------------------------------------------------
# hits: which ranks hold a target


def hits_matrix(topk: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """(q, K) bool: is the item at each rank a target of that query?

    Vectorised by a sorted search: each (row, item) pair becomes the key row * n_items + item; the
    targets' keys are sorted (csr rows in order, indices sorted within a row), so one
    ``np.searchsorted`` answers every rank of every query at once. -1 entries are never hits.
    """
    q, K = topk.shape
    n_items = np.int64(targets.shape[1])
    if targets.nnz == 0 or q == 0:
        return np.zeros((q, K), dtype=bool)
    t = targets if targets.has_sorted_indices else targets.sorted_indices()
    rows = np.repeat(np.arange(q, dtype=np.int64), np.diff(t.indptr))
    keys = rows * n_items + t.indices.astype(np.int64)  # sorted ascending
    qkeys = np.arange(q, dtype=np.int64)[:, None] * n_items + topk.astype(np.int64)
    pos = np.searchsorted(keys, qkeys)
    pos = np.minimum(pos, len(keys) - 1)
    return (keys[pos] == qkeys) & (topk >= 0)


def n_targets(targets: sp.csr_matrix) -> np.ndarray:
    """(q,) number of held-out positives per query."""
    return np.diff(targets.indptr)


# ---------------------------------------------------------------------------------------------
# accuracy metrics, each (q,) from hits (q, K >= k)


def recall_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """recall@k per query = hits in the top k / |targets| (Cornac's and RecBole's recall).

    A query with more than k targets cannot reach 1.  hits (q, >=k) bool -> (q,); 0 without targets.
    """
    return hits[:, :k].sum(axis=1) / np.maximum(n_targets, 1)


def truncated_recall_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Truncated recall@k per query = hits in the top k / min(k, |targets|) (Mult-VAE's recall).

    A perfect top k scores 1 however many targets the query has; equal to :func:`recall_at_k`
    whenever |targets| <= k.  hits (q, >=k) bool -> (q,); 0 without targets.
    """
    return hits[:, :k].sum(axis=1) / np.maximum(np.minimum(k, n_targets), 1)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """precision@k per query = hits in the top k / k.  hits (q, >=k) -> (q,)."""
    return hits[:, :k].sum(axis=1) / float(k)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1.0 where at least one target is in the top k, else 0.0.  hits (q, >=k) -> (q,)."""
    return hits[:, :k].any(axis=1).astype(np.float64)


def ndcg_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains: DCG / IDCG.  hits (q, >=k), n_targets (q,) -> (q,).

    DCG = Σ_{rank r < k, hit} 1 / log2(r + 2);  IDCG = Σ_{r < min(k, |targets|)} 1 / log2(r + 2).
    """
    disc = 1.0 / np.log2(np.arange(k) + 2.0)  # (k,)
    dcg = hits[:, :k] @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])  # ideal[m] = IDCG with m relevant in the top
    idcg = ideal[np.minimum(k, n_targets)]
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# beyond accuracy


def catalog_coverage(topk: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue appearing in at least one query's top k (a population-level scalar)."""
    rec = topk[:, :k].ravel()
    rec = rec[rec >= 0]
    if n_items == 0:
        return float("nan")
    return float(np.count_nonzero(np.bincount(rec, minlength=n_items))) / n_items


def popularity_percentiles(train_counts: np.ndarray) -> np.ndarray:
    """(n_items,) popularity percentile in (0, 1] of each item from its training count.

    percentile_j = (#items with a lower count + (#items with the same count) / 2 + 1/2) / n_items,
    i.e. the mid-rank of the item's count divided by n_items: 1 ~ the most popular item.
    """
    from scipy.stats import rankdata

    n = len(train_counts)
    return (rankdata(train_counts, method="average") / max(n, 1)).astype(np.float64)


def mean_popularity_at_k(topk: np.ndarray, k: int, item_percentile: np.ndarray) -> np.ndarray:
    """(q,) mean popularity percentile of each query's recommended items (NaN when none)."""
    t = topk[:, :k]
    valid = t >= 0
    vals = np.where(valid, item_percentile[np.where(valid, t, 0)], 0.0)
    cnt = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, vals.sum(axis=1) / cnt, np.nan)


def leakage_at_k(topk: np.ndarray, k: int, user_group: np.ndarray, item_groups: np.ndarray) -> np.ndarray:
    """Cross-group leakage@k per query: share of the top k whose item group differs from the user's.

    topk (q, >=k); user_group (q,) int (-1 = unknown); item_groups (n_items,) int.
    Returns (q,), NaN for a user without a group or without any recommended item.
    """
    t = topk[:, :k]
    valid = t >= 0
    g = item_groups[np.where(valid, t, 0)]
    cross = valid & (g != user_group[:, None])
    cnt = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(cnt > 0, cross.sum(axis=1) / cnt, np.nan)
    out[user_group < 0] = np.nan
    return out


def cross_rate(interactions: sp.csr_matrix, user_group: np.ndarray, item_groups: np.ndarray) -> np.ndarray:
    """Natural cross-group rate per query: share of its (held-out) interactions outside its group.

    interactions csr (q, n_items); user_group (q,) (-1 = unknown). Returns (q,), NaN where undefined.
    """
    n = np.diff(interactions.indptr)
    rows = np.repeat(np.arange(interactions.shape[0]), n)
    cross = (item_groups[interactions.indices] != user_group[rows]).astype(np.float64)
    per = np.bincount(rows, weights=cross, minlength=interactions.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, per / np.maximum(n, 1), np.nan)
    out[user_group < 0] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# uncertainty: bootstrap over users, vectorised as resample-count weights times the metric matrix


def _resample_weights(rng: np.random.Generator, n_boot: int, q: int) -> np.ndarray:
    """(n_boot, q) float64: how often each user is drawn in each resample (each row sums to q)."""
    idx = rng.integers(0, q, size=(n_boot, q))
    flat = (idx + (np.arange(n_boot, dtype=np.int64) * q)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * q).reshape(n_boot, q).astype(np.float64)


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                    max_block: int = 2_000_000) -> np.ndarray:
    """Bootstrap distribution of the NaN-ignoring mean of each row of ``values``.

    values : (m, q) per-user metric values (NaN = undefined for that user).
    Returns (n_boot, m): mean of each metric over a resample of the q users (with replacement).
    The same resamples serve every metric, so differences between rows are paired.
    Memory: resample weights are built in blocks of at most ``max_block`` entries.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    m, q = values.shape
    out = np.full((n_boot, m), np.nan)
    if q == 0 or n_boot == 0:
        return out
    valid = ~np.isnan(values)
    x = np.where(valid, values, 0.0)
    block = max(1, min(n_boot, max_block // max(q, 1)))
    for start in range(0, n_boot, block):
        w = _resample_weights(rng, min(block, n_boot - start), q)
        num = w @ x.T  # (b, m)
        den = w @ valid.T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + len(w)] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def percentile_interval(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of a bootstrap distribution (n_boot, m) -> (low (m,), high (m,))."""
    a = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanquantile(boot, a, axis=0)
            hi = np.nanquantile(boot, 1.0 - a, axis=0)
    return lo, hi


def paired_p_value(boot_diff: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value-like share for a paired difference, (n_boot, m) -> (m,).

    p = min(1, 2 * (min(#resamples with diff <= 0, #with diff >= 0) + 1) / (n_boot + 1)):
    small when almost every resample of users agrees on the sign of the difference.
    """
    ok = ~np.isnan(boot_diff)
    n = ok.sum(axis=0)
    le = (np.where(ok, boot_diff, 1.0) <= 0).sum(axis=0)
    ge = (np.where(ok, boot_diff, -1.0) >= 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, 2.0 * (np.minimum(le, ge) + 1.0) / (n + 1.0))
    return np.where(n > 0, p, np.nan)
