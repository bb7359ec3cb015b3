"""Numba kernels for the evaluator's hot loop: exclusion + top-k selection over a chunk of scores.

The matrix product ``Q_chunk @ Vᵀ`` is left to BLAS; these kernels then make one pass over each row of
scores, keeping the k best in a bounded heap (O(n_items + k log k) per row, no full sort), in parallel
over rows.

Each kept item is one int64 key, ordered exactly as the ranking (higher score first, then lower item
index), so the heap compares single integers (no two-array swaps, no two-part comparisons: the sift
loops compile to conditional moves instead of unpredictable branches):

    key(s, j) = ord(s) * 2^32 + (2^32 - 1 - j)        ord: float32 bits -> int32, monotone in s
    ord(b)    = b XOR ((b >> 31) AND 0x7fffffff)      (b the int32 bit pattern of s; -0 < +0)

Most scores cannot enter the heap: a first vectorised pass takes each block's max, the k-th largest
block max bounds the k-th best score from below, and only blocks reaching it are scanned.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_util import CACHE, compile_twin, fmax_f32

_BLOCK = 64  # scores per block of the skip test (8 AVX2 vectors)
_LOW = 0xFFFFFFFF  # the low 32 bits of a key: 2^32 - 1 - item index


@njit(cache=CACHE, inline="always")
def _key(bits: np.ndarray, j: int) -> np.int64:
    b = np.int64(bits[j])
    return ((b ^ ((b >> 31) & 0x7FFFFFFF)) << 32) + (_LOW - j)


@njit(cache=CACHE, inline="always")
def _sift_down(h: np.ndarray, key: np.int64, size: int) -> None:
    # min-heap of keys (root = the worst kept item): put ``key`` at the root, sink it (hole method)
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and h[c + 1] < h[c]:
            c += 1
        if h[c] < key:
            h[pos] = h[c]
            pos = c
        else:
            break
    h[pos] = key


@njit(cache=CACHE, inline="always")
def _sift_up(h: np.ndarray, pos: int) -> None:
    key = h[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if key < h[parent]:
            h[pos] = h[parent]
            pos = parent
        else:
            break
    h[pos] = key


@njit(cache=CACHE, inline="always")
def _kth_largest(values: np.ndarray, k: int, heap: np.ndarray) -> float:
    # the k-th largest of values (len(values) >= k >= 1), ties counted: a min-heap of the k largest so
    # far (root = the k-th); most values lose the one comparison with the root (no copy, unlike
    # np.partition; measured on one thread over 64 x 20,000 scores: 0.73x the kernel's time at k = 10,
    # the same at k = 50)
    for i in range(k):
        heap[i] = values[i]
        _sift_up(heap, i)
    for i in range(k, len(values)):
        v = values[i]
        if v > heap[0]:
            _sift_down(heap, v, k)
    return heap[0]


def _topk_rows(scores: np.ndarray, ex_indptr: np.ndarray, ex_indices: np.ndarray, k: int,
              out_idx: np.ndarray, out_score: np.ndarray) -> None:
    """Best k items of each row of ``scores``, excluding the given items; writes ``out_idx``/``out_score``.

    scores : (r, n_items) float32, C-contiguous, modified in place (excluded entries set to -inf).
    ex_indptr, ex_indices : CSR parts (r + 1,), (nnz,) of the items to exclude per row.
    out_idx : (r, k) int64, best first, -1 where fewer than k items have a finite score.
    out_score : (r, k) float32, the matching scores (-inf for -1).
    Ties are broken towards the lower item index; NaN and -inf scores are never returned.
    """
    n_rows, n_items = scores.shape
    for r in prange(n_rows):
        row = scores[r]
        bits = row.view(np.int32)
        for p in range(ex_indptr[r], ex_indptr[r + 1]):
            row[ex_indices[p]] = -np.inf
        # a threshold no higher than the k-th best score: the k-th largest block max (k blocks reach it,
        # so k scores do).  Block maxima via llvm.maxnum (vectorises; ignores NaN; an all-NaN or
        # all -inf block gets -inf).
        nb = (n_items + _BLOCK - 1) // _BLOCK
        bmax = np.empty(nb, dtype=np.float32)
        for bi in range(nb):
            j0 = bi * _BLOCK
            m = row[j0]
            if j0 + _BLOCK <= n_items:
                for q in range(_BLOCK):
                    m = fmax_f32(m, row[j0 + q])
            else:
                for q in range(j0, n_items):
                    m = fmax_f32(m, row[q])
            bmax[bi] = m if m > -np.inf else -np.inf
        thr = -np.inf
        if nb > k:
            thr = _kth_largest(bmax, k, np.empty(k, dtype=np.float32))
        # then only the blocks reaching it, in item order, through a bounded heap of keys (the first k
        # finite candidates fill it; later ones replace the root when better: an equal score has a
        # larger index, hence a smaller key, and never wins -- ties go to the lower index)
        h = out_idx[r]  # the heap of keys lives in the output row
        size = 0
        for bi in range(nb):
            if not bmax[bi] >= thr or bmax[bi] == -np.inf:
                continue
            for q in range(bi * _BLOCK, min(n_items, (bi + 1) * _BLOCK)):
                s = row[q]
                if not (s >= thr and s > -np.inf):  # below the threshold, -inf (excluded) or NaN
                    continue
                if size < k:
                    h[size] = _key(bits, q)
                    _sift_up(h, size)
                    size += 1
                else:
                    key = _key(bits, q)
                    if key > h[0]:
                        _sift_down(h, key, size)
        # best first: sort the keys, read them back from the top
        h[:size].sort()
        hs = out_score[r]
        for p in range(size // 2):
            h[p], h[size - 1 - p] = h[size - 1 - p], h[p]
        for p in range(size):
            idx = _LOW - (h[p] & _LOW)
            h[p] = idx
            hs[p] = row[idx]
        for p in range(size, k):
            hs[p] = -np.inf
            h[p] = -1


# the same kernel twice: parallel over rows for batches, serial for a handful of rows (one request),
# where starting the thread pool costs more than the work.  The serial one releases the GIL, so that
# chunks can also be run from several Python threads, each with a one-thread BLAS product (no spinning
# BLAS workers competing with numba's threads; see .notes/perf.md).
topk_rows = njit(parallel=True, cache=CACHE)(_topk_rows)
topk_rows_serial = compile_twin(_topk_rows, "serial", cache=CACHE, nogil=True)
PARALLEL_MIN_ROWS = 64
