"""Numba kernels for the evaluator's hot loop: exclusion + top-k selection over a chunk of scores.

The matrix product ``Q_chunk @ Vᵀ`` is left to BLAS; these kernels then make one pass over each row of
scores, keeping the k best in a bounded heap (O(n_items + k log k) per row, no full sort), in parallel
over rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_util import compile_twin


@njit(cache=True, inline="always")
def _worse(s_a: float, i_a: int, s_b: float, i_b: int) -> bool:
    # a ranks below b: lower score, or the same score and a larger item index (ties go to the lower index)
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(cache=True, inline="always")
def _sift_down(hs: np.ndarray, hi: np.ndarray, pos: int, size: int) -> None:
    # min-heap on "worse": the root is the worst of the kept items
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _worse(hs[right], hi[right], hs[left], hi[left]):
            child = right
        if _worse(hs[child], hi[child], hs[pos], hi[pos]):
            hs[pos], hs[child] = hs[child], hs[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


@njit(cache=True, inline="always")
def _sift_up(hs: np.ndarray, hi: np.ndarray, pos: int) -> None:
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(hs[pos], hi[pos], hs[parent], hi[parent]):
            hs[pos], hs[parent] = hs[parent], hs[pos]
            hi[pos], hi[parent] = hi[parent], hi[pos]
            pos = parent
        else:
            return


def _topk_rows(scores: np.ndarray, ex_indptr: np.ndarray, ex_indices: np.ndarray, k: int,
              out_idx: np.ndarray, out_score: np.ndarray) -> None:
    """Best k items of each row of ``scores``, excluding the given items; writes ``out_idx``/``out_score``.

    scores : (r, n_items) float32, modified in place (excluded entries set to -inf).
    ex_indptr, ex_indices : CSR parts (r + 1,), (nnz,) of the items to exclude per row.
    out_idx : (r, k) int64, best first, -1 where fewer than k items have a finite score.
    out_score : (r, k) float32, the matching scores (-inf for -1).
    Ties are broken towards the lower item index; NaN and -inf scores are never returned.
    """
    n_rows, n_items = scores.shape
    for r in prange(n_rows):
        row = scores[r]
        for p in range(ex_indptr[r], ex_indptr[r + 1]):
            row[ex_indices[p]] = -np.inf
        hs = out_score[r]
        hi = out_idx[r]
        size = 0
        for j in range(n_items):
            s = row[j]
            if not s > -np.inf:  # -inf (excluded) or NaN
                continue
            if size < k:
                hs[size] = s
                hi[size] = j
                _sift_up(hs, hi, size)
                size += 1
            elif s > hs[0]:  # j is larger than every kept index, so an equal score never wins
                hs[0] = s
                hi[0] = j
                _sift_down(hs, hi, 0, size)
        # heap-sort in place: repeatedly move the worst to the end -> best first
        for end in range(size - 1, 0, -1):
            hs[0], hs[end] = hs[end], hs[0]
            hi[0], hi[end] = hi[end], hi[0]
            _sift_down(hs, hi, 0, end)
        for p in range(size, k):
            hs[p] = -np.inf
            hi[p] = -1


# the same kernel twice: parallel over rows for batches, serial for a handful of rows (one request),
# where starting the thread pool costs more than the work
topk_rows = njit(parallel=True, cache=True)(_topk_rows)
topk_rows_serial = compile_twin(_topk_rows, "serial", cache=True)
PARALLEL_MIN_ROWS = 64
