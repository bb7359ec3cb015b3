"""Top-k selection: the k best of every row of scores, known items excluded, in bounded memory.

A numerical primitive like the matrix product it follows: the evaluator, serving and a model's own
``recommend`` all select through it. ``top_k_with_scores`` fuses the products with the selection: each
worker thread scores a block of queries with a one-thread BLAS product into its own small buffer and
selects from it with the numba kernel while it is still in cache (no chunk of scores is written to
memory and read back); ``top_k_from_scores`` selects from scores a model computed itself.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

SCORE_BUDGET_BYTES = 64 << 20  # memory for one chunk of scores (chunk_size x n_items float32)


BLOCK_BUDGET_BYTES = 5 << 20  # one worker's block of scores (block_rows x n_items float32)

PARALLEL_ROWS_WARM = 128  # >= topk_kernels.PARALLEL_MIN_ROWS: warms the parallel kernel too


#: ``(queries (q, d), items (n_items, d), exclude csr (q, n_items) or None, k) -> (indices, scores)``
TopKBackend = Callable[[np.ndarray, np.ndarray, "sp.csr_matrix | None", int], tuple[np.ndarray, np.ndarray]]


def auto_chunk_size(n_items: int, budget_bytes: int = SCORE_BUDGET_BYTES) -> int:
    """Queries scored at once so that a chunk of float32 scores fits ``budget_bytes`` (16..4096)."""
    return int(max(16, min(4096, budget_bytes // max(1, 4 * n_items))))


def block_rows(n_items: int, budget_bytes: int = BLOCK_BUDGET_BYTES) -> int:
    """Queries one worker scores at a time: a block of about ``budget_bytes`` of float32 scores,
    a multiple of 16 rows (16..256).

    Measured at 20,000 items, d = 64, one thread (CPU time): the products of 64-row blocks (5 MiB) take
    0.75x the time of 16-row blocks (1.25 MiB, about the L2 here): OpenBLAS packs Vᵀ on every call and
    64 rows amortise the packing; the top-k after them costs about the same either way.
    """
    rows = budget_bytes // max(1, 4 * n_items)
    return int(max(16, min(256, rows // 16 * 16)))


_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"users": 0, "limiter": None, "controller": None}


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Context: BLAS on one thread (process-wide), restored when the last concurrent user leaves."""
    from threadpoolctl import ThreadpoolController

    with _BLAS_LOCK:
        if _BLAS_STATE["users"] == 0:
            if _BLAS_STATE["controller"] is None:
                _BLAS_STATE["controller"] = ThreadpoolController()
            _BLAS_STATE["limiter"] = _BLAS_STATE["controller"].limit(limits=1, user_api="blas")
        _BLAS_STATE["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["users"] -= 1
            if _BLAS_STATE["users"] == 0:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None


def worker_count() -> int:
    """Worker threads of the fused scoring: numba's thread count (``NUMBA_NUM_THREADS``, set_num_threads)."""
    import numba

    return max(1, int(numba.get_num_threads()))


def score_bytes(q: int, n_items: int, chunk_size: int | None = None) -> int:
    """Bytes of scores :func:`top_k_with_scores` holds for ``q`` queries: one block per worker."""
    rows = int(chunk_size) if chunk_size else block_rows(n_items)
    return 4 * n_items * min(q, rows * worker_count())


def score_and_select(queries: np.ndarray, items_t: np.ndarray, ex_ptr: np.ndarray, ex_ind: np.ndarray, k: int,
                     out: np.ndarray, out_s: np.ndarray, rows: int, workers: int | None = None) -> None:
    """Products and top-k fused per block of ``rows`` queries; writes ``out`` (q, k) / ``out_s`` (q, k).

    queries (q, d) float32 C-contiguous; items_t (d, n_items) float32 (the transpose view of C-contiguous
    item vectors: BLAS reads it in place, no copy); ex_ptr (q + 1,), ex_ind: the exclusion CSR parts.
    Each of ``workers`` threads takes the next block, multiplies it on one BLAS thread into its own
    (rows, n_items) buffer, S_b = Q_b Vᵀ, and runs the serial (GIL-free) kernel on it while it is hot.
    Blocks start at multiples of ``rows`` whichever thread takes them, so the scores, hence the lists,
    do not depend on the number of workers. A lone block (q <= rows) is scored in the calling thread
    with BLAS's own threads, so one request at a million items still gets every core for its product.
    Memory: workers x rows x n_items float32.
    """
    from .topk_kernels import topk_rows_serial

    q, n_items = queries.shape[0], items_t.shape[1]
    n_blocks = -(-q // rows)
    workers = max(1, min(workers or worker_count(), n_blocks))
    next_block = itertools.count()  # shared; next() on it is atomic under the GIL
    stop_all = threading.Event()  # set on an error or Ctrl-C: the other workers take no further block

    def work() -> None:
        buf = np.empty((min(rows, q), n_items), dtype=np.float32)
        try:
            while not stop_all.is_set() and (b := next(next_block)) < n_blocks:
                start, stop = b * rows, min(q, (b + 1) * rows)
                scores = buf[: stop - start]
                np.matmul(queries[start:stop], items_t, out=scores)  # (r, d) @ (d, n_items), GIL released
                p0, p1 = ex_ptr[start], ex_ptr[stop]
                topk_rows_serial(scores, ex_ptr[start:stop + 1] - p0, ex_ind[p0:p1], k, out[start:stop],
                                 out_s[start:stop])
        except BaseException:
            stop_all.set()
            raise

    if n_blocks == 1:  # one block (a request, a small batch): BLAS may use its own threads, as before
        work()
        return
    with one_blas_thread():
        if workers == 1:
            work()
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(work) for _ in range(workers)]
                try:
                    for done in futures:
                        done.result()
                except BaseException:  # KeyboardInterrupt lands here, in the waiting thread
                    stop_all.set()
                    raise


def exclusion_parts(exclude: sp.csr_matrix | None, q: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 (q + 1,), indices int64) of the items to exclude per query (empty without any)."""
    if exclude is None:
        return np.zeros(q + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if exclude.shape != (q, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected {(q, n_items)}")
    exclude = sp.csr_matrix(exclude)
    return exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)


def excluded_pairs(rows: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix, n_items: int) -> np.ndarray:
    """Whether ``exclude`` (q, n_items) marks each (row, item) pair (arrays that broadcast; items >= 0).

    One membership test over the keys row * n_items + item, the pairs' and the excluded ones'.
    """
    excluded = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr)) * n_items + exclude.indices
    return np.isin(rows * n_items + items, excluded)


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
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    q, n_items = queries.shape[0], items.shape[0]
    ex_ptr, ex_ind = exclusion_parts(exclude, q, n_items)
    out, out_s = empty_top(q, k)
    if q == 0 or k == 0:
        return out, out_s
    rows = int(chunk_size) if chunk_size else block_rows(n_items)
    score_and_select(queries, items.T, ex_ptr, ex_ind, k, out, out_s, rows)
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
    k : how many; ``chunk_size`` queries are scored at a time by each worker thread (memory workers x
        chunk_size x n_items float32; default :func:`block_rows`, about 5 MiB per worker).

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
