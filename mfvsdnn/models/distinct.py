"""Identical item vectors, indexed once: a graph index needs distinct points.

Two items with the same vector score the same for every query, so an index only needs one of them;
the search then hands out the group's members in item order. Without this an HNSW graph fails on
heavily tied vectors (the popularity baselines': one coordinate, a training count, so thousands of
items share a value): faiss's neighbour pruning drops every candidate that is at distance 0 from a
neighbour already chosen, so inside a pile of duplicates each node keeps one link, and a search that
enters the pile sees only ties and stops (measured on Last.fm's most-popular model: recall@20 of
exact 0.000 with the default graph; see the README's ANN section).

Vectors without duplicates (every trained model measured) take no detour: ``distinct_rows`` returns
None and the index holds the vectors as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..core.topk import empty_top, excluded_pairs

#: rows hashed per chunk: bounds the (chunk, d) uint64 temporary to 32 MiB at d = 64
_HASH_CHUNK = 1 << 16


@dataclass(frozen=True)
class DistinctRows:
    """Groups of identical rows: group g holds items ``members[ptr[g]:ptr[g + 1]]``, ascending.

    ``first`` (n_groups,) is each group's smallest item (the one indexed), ascending, so the groups
    are numbered in item order; ``ptr`` (n_groups + 1,) and ``members`` (n_items,) are a CSR layout.
    """

    first: np.ndarray
    ptr: np.ndarray
    members: np.ndarray
    sizes: np.ndarray  # (n_groups,) = diff(ptr), kept: a search reads it per candidate

    @property
    def n_groups(self) -> int:
        return int(len(self.first))

    @property
    def nbytes(self) -> int:
        return int(self.first.nbytes + self.ptr.nbytes + self.members.nbytes + self.sizes.nbytes)


def _row_hashes(vectors: np.ndarray) -> np.ndarray:
    """(n, d) float32 -> (n,) uint64: sum_j bits(x_ij) * c_j mod 2^64 with fixed odd c_j (equal rows,
    equal hashes; -0.0 is read as 0.0, so the two zeros are one value as they are for a dot product)."""
    n, d = vectors.shape
    coefficients = np.random.default_rng(0).integers(1, 2**63, size=d, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _HASH_CHUNK):
        bits = (vectors[start:start + _HASH_CHUNK] + np.float32(0.0)).view(np.uint32).astype(np.uint64)
        out[start:start + _HASH_CHUNK] = (bits * coefficients).sum(axis=1, dtype=np.uint64)  # wraps mod 2^64
    return out


def distinct_rows(vectors: np.ndarray) -> DistinctRows | None:
    """The groups of identical rows of ``vectors`` (n, d), or None when every row is distinct."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    n = v.shape[0]
    if n < 2:
        return None
    hashes = _row_hashes(v)
    order = np.argsort(hashes, kind="stable")  # equal hashes stay in item order
    sorted_hashes = hashes[order]
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    if len(starts) == n:
        return None
    sizes = np.diff(np.r_[starts, n])
    # a run of equal hashes must hold equal rows (only runs of two or more are looked at); a collision
    # of distinct rows (odds ~n^2 / 2^64) falls back to sorting the rows themselves
    in_run = np.repeat(sizes > 1, sizes)
    if not np.array_equal(v[order[in_run]], v[np.repeat(order[starts], sizes)[in_run]]):
        inverse = np.unique(v, axis=0, return_inverse=True)[1].ravel()
        order = np.argsort(inverse, kind="stable")
        starts = np.flatnonzero(np.r_[True, inverse[order][1:] != inverse[order][:-1]])
        sizes = np.diff(np.r_[starts, n])
    # number the groups by their first item, so the indexed rows keep the items' order; a stable sort
    # of the positions by their group's number keeps each group's items ascending
    first = order[starts]
    by_first = np.argsort(first, kind="stable")
    number = np.empty_like(by_first)
    number[by_first] = np.arange(len(by_first))
    members = order[np.argsort(np.repeat(number, sizes), kind="stable")]
    sizes = sizes[by_first]
    return DistinctRows(first=first[by_first].astype(np.int64), ptr=np.r_[0, np.cumsum(sizes)].astype(np.int64),
                        members=members.astype(np.int64), sizes=sizes.astype(np.int64))


def expand_best(groups: np.ndarray, queries: np.ndarray, group_vectors: np.ndarray, distinct: DistinctRows,
                exclude: sp.csr_matrix | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best eligible items of each row's candidate groups (q, w) (-1 = padding): items
    ((q, k) int64, -1 where too few) and their true scores ((q, k) float32, -inf there).

    score[r, j] = group_vectors[groups[r, j]] . queries[r]: (q, w, d) @ (q, d, 1) -> (q, w). Groups are
    taken best first (equal scores: the lower first item), each giving its members in item order, and
    a row stops once it holds k + its excluded items (of which at least k are eligible).
    """
    q, width = groups.shape
    n_items = len(distinct.members)
    valid = groups >= 0
    g = np.where(valid, groups, 0)
    scores = np.matmul(group_vectors[g], queries[:, :, None])[:, :, 0]
    scores[~valid] = -np.inf
    order = np.lexsort((distinct.first[g], -scores), axis=1)
    at = (np.arange(q)[:, None], order)
    g, scores, valid = g[at], scores[at], valid[at]
    known = np.diff(exclude.indptr) if exclude is not None else np.zeros(q, dtype=np.int64)
    need = (k + known)[:, None]
    sizes = np.where(valid, distinct.sizes[g], 0)
    capped = np.minimum(sizes, need)
    before = np.cumsum(capped, axis=1) - capped
    take = np.clip(need - before, 0, capped).ravel()  # members each (row, group) hands out
    total = int(take.sum())
    rows = np.repeat(np.repeat(np.arange(q), width), take)
    group_of = np.repeat(g.ravel(), take)
    offsets = np.arange(total) - np.repeat(np.cumsum(take) - take, take)
    items = distinct.members[distinct.ptr[group_of] + offsets]
    item_scores = np.repeat(scores.ravel(), take)
    if exclude is not None and exclude.nnz:
        keep = ~excluded_pairs(rows, items, exclude, n_items)
        rows, items, item_scores = rows[keep], items[keep], item_scores[keep]
    # entries are in row order, best first within a row: the rank of each inside its row
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    first_k = rank < k
    out, out_s = empty_top(q, k)
    out[rows[first_k], rank[first_k]] = items[first_k]
    out_s[rows[first_k], rank[first_k]] = item_scores[first_k]
    return out, out_s
