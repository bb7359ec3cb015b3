"""Top-k selection: the k best of every row of scores, known items excluded, in bounded memory.

A numerical primitive like the matrix product it follows: the evaluator, serving and a model's own
``recommend`` all select through it. ``top_k_with_scores`` scores queries against item vectors in
chunks that fit a memory budget and selects with one numba kernel; ``top_k_from_scores`` selects from
scores a model computed itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

SCORE_BUDGET_BYTES = 64 << 20  # memory for one chunk of scores (chunk_size x n_items float32)


PARALLEL_ROWS_WARM = 128  # >= topk_kernels.PARALLEL_MIN_ROWS: warms the parallel kernel too


#: ``(queries (q, d), items (n_items, d), exclude csr (q, n_items) or None, k) -> (indices, scores)``
TopKBackend = Callable[[np.ndarray, np.ndarray, "sp.csr_matrix | None", int], tuple[np.ndarray, np.ndarray]]


def auto_chunk_size(n_items: int, budget_bytes: int = SCORE_BUDGET_BYTES) -> int:
    """Queries scored at once so that a chunk of float32 scores fits ``budget_bytes`` (16..4096)."""
    return int(max(16, min(4096, budget_bytes // max(1, 4 * n_items))))


def exclusion_parts(exclude: sp.csr_matrix | None, q: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 (q + 1,), indices int64) of the items to exclude per query (empty without any)."""
    if exclude is None:
        return np.zeros(q + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if exclude.shape != (q, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected {(q, n_items)}")
    exclude = sp.csr_matrix(exclude)
    return exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)


def select_rows(scores: np.ndarray, ex_ptr: np.ndarray, ex_ind: np.ndarray, k: int, out: np.ndarray,
            out_s: np.ndarray) -> None:
    """The numba top-k over a chunk of scores (overwritten: excluded entries become -inf).

    ``ex_ptr`` (rows + 1,) may start anywhere in ``ex_ind``: it is the chunk's slice of the full
    exclusion indptr.
    """
    from .topk_kernels import PARALLEL_MIN_ROWS, topk_rows, topk_rows_serial

    kernel = topk_rows if scores.shape[0] >= PARALLEL_MIN_ROWS else topk_rows_serial
    kernel(scores, ex_ptr - ex_ptr[0], ex_ind[ex_ptr[0]:ex_ptr[-1]], k, out, out_s)


def empty_top(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -1, dtype=np.int64), np.full((q, k), -np.inf, dtype=np.float32)


def top_k_with_scores(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and their scores; see :func:`top_k`. Returns ((q, k) int64, (q, k) float32)."""
    queries = np.asarray(queries, dtype=np.float32)
    q, n_items = queries.shape[0], items.shape[0]
    ex_ptr, ex_ind = exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = empty_top(q, k)
    if q == 0 or k == 0:
        return out, out_s
    items_t = np.ascontiguousarray(np.asarray(items, dtype=np.float32).T)  # (d, n_items)
    buf = np.empty((min(chunk, q), n_items), dtype=np.float32)
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        scores = buf[: stop - start]
        np.matmul(queries[start:stop], items_t, out=scores)  # (c, d) @ (d, n_items)
        select_rows(scores, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
    return out, out_s


def top_k_from_scores(scores: np.ndarray, exclude: sp.csr_matrix | None, k: int,
                      overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of precomputed scores, with the same exclusion, ties and NaN handling as :func:`top_k`.

    scores : (q, n_items). Copied first unless ``overwrite`` (then the array is modified in place
    when it is already C-contiguous float32: excluded entries become -inf).
    Returns ((q, k) int64 item indices, (q, k) float32 scores).
    """
    if overwrite:
        scores = np.ascontiguousarray(scores, dtype=np.float32)
    else:
        scores = np.array(scores, dtype=np.float32, order="C", copy=True)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (queries x items), got shape {scores.shape}")
    q, n_items = scores.shape
    ex_ptr, ex_ind = exclusion_parts(exclude, q, n_items)
    out, out_s = empty_top(q, k)
    if q and k:
        select_rows(scores, ex_ptr, ex_ind, k, out, out_s)
    return out, out_s


def top_k(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
          chunk_size: int | None = None) -> np.ndarray:
    """Top-k items by dot product, excluding known items, in bounded-memory chunks.

    Parameters
    ----------
    queries : (q, d) float32.  items : (n_items, d) float32.
    exclude : csr (q, n_items) of items never to return, or None.
    k : how many; ``chunk_size`` queries are scored at a time (memory chunk_size x n_items float32;
        default: as many as fit in 64 MiB).

    Returns
    -------
    (q, k) int64 item indices, best first (ties to the lower index); -1 where fewer than k items are
    eligible.
    """
    return top_k_with_scores(queries, items, exclude, k, chunk_size)[0]


def warm_up() -> None:
    """Load the numba top-k kernel (from its cache) so the first timed call is not a compile."""
    top_k(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32), None, 2)
    top_k(np.ones((PARALLEL_ROWS_WARM, 2), np.float32), np.ones((3, 2), np.float32), None, 2)
