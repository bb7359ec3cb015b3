"""Pure metric functions over arrays. Top-k is computed once (see ``evaluate.top_k``) and read here.

Conventions: ``topk`` is (q, k) int item indices, best first (-1 = no item); ``targets`` is a csr
(q, n_items) of held-out positives. Per-query arrays are returned so the evaluator can bootstrap.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hits_matrix(topk: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """(q, k) bool: is the item at each rank a target of that query?"""
    q, k = topk.shape
    out = np.zeros((q, k), dtype=bool)
    indptr, indices = targets.indptr, targets.indices
    for row in range(q):
        t = indices[indptr[row]:indptr[row + 1]]
        if len(t):
            out[row] = np.isin(topk[row], t)
    return out


def recall_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """recall@k per query = hits in the top k / min(k, |targets|).  hits (q, >=k) bool -> (q,)."""
    return hits[:, :k].sum(axis=1) / np.maximum(np.minimum(k, n_targets), 1)
