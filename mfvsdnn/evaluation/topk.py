"""Top-k: the one path from any model to a ranked list, in bounded memory.

:func:`rank` embeds the queries of a dot-product model (``model.query_vectors``) and scores them
against ``model.item_vectors`` (:func:`top_k_with_scores`), or asks a model without item vectors for
``model.scores`` on chunks of queries sized by the same budget (:func:`top_k_from_scores`). Either
way one numba kernel excludes the known items and keeps the top k. A ``backend`` may take over the
scoring of dot-product models (the Spark engine scores in Spark tasks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError

SCORE_BUDGET_BYTES = 64 << 20  # memory for one chunk of scores (chunk_size x n_items float32)
PARALLEL_ROWS_WARM = 128  # >= topk_kernels.PARALLEL_MIN_ROWS: warms the parallel kernel too

#: ``(queries (q, d), items (n_items, d), exclude csr (q, n_items) or None, k) -> (indices, scores)``
TopKBackend = Callable[[np.ndarray, np.ndarray, "sp.csr_matrix | None", int], tuple[np.ndarray, np.ndarray]]


def auto_chunk_size(n_items: int, budget_bytes: int = SCORE_BUDGET_BYTES) -> int:
    """Queries scored at once so that a chunk of float32 scores fits ``budget_bytes`` (16..4096)."""
    return int(max(16, min(4096, budget_bytes // max(1, 4 * n_items))))


def _exclusion_parts(exclude: sp.csr_matrix | None, q: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64 (q + 1,), indices int64) of the items to exclude per query (empty without any)."""
    if exclude is None:
        return np.zeros(q + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if exclude.shape != (q, n_items):
        raise ValueError(f"exclude has shape {exclude.shape}, expected {(q, n_items)}")
    exclude = sp.csr_matrix(exclude)
    return exclude.indptr.astype(np.int64), exclude.indices.astype(np.int64)


def _select(scores: np.ndarray, ex_ptr: np.ndarray, ex_ind: np.ndarray, k: int, out: np.ndarray,
            out_s: np.ndarray) -> None:
    """The numba top-k over a chunk of scores (overwritten: excluded entries become -inf).

    ``ex_ptr`` (rows + 1,) may start anywhere in ``ex_ind``: it is the chunk's slice of the full
    exclusion indptr.
    """
    from .topk_kernels import PARALLEL_MIN_ROWS, topk_rows, topk_rows_serial

    kernel = topk_rows if scores.shape[0] >= PARALLEL_MIN_ROWS else topk_rows_serial
    kernel(scores, ex_ptr - ex_ptr[0], ex_ind[ex_ptr[0]:ex_ptr[-1]], k, out, out_s)


def _empty_top(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -1, dtype=np.int64), np.full((q, k), -np.inf, dtype=np.float32)


def top_k_with_scores(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int,
                      chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and their scores; see :func:`top_k`. Returns ((q, k) int64, (q, k) float32)."""
    queries = np.asarray(queries, dtype=np.float32)
    q, n_items = queries.shape[0], items.shape[0]
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = _empty_top(q, k)
    if q == 0 or k == 0:
        return out, out_s
    items_t = np.ascontiguousarray(np.asarray(items, dtype=np.float32).T)  # (d, n_items)
    buf = np.empty((min(chunk, q), n_items), dtype=np.float32)
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        scores = buf[: stop - start]
        np.matmul(queries[start:stop], items_t, out=scores)  # (c, d) @ (d, n_items)
        _select(scores, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
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
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    out, out_s = _empty_top(q, k)
    if q and k:
        _select(scores, ex_ptr, ex_ind, k, out, out_s)
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


def _rows(values: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if values is None else values[start:stop]


def rank(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
         users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
         chunk_size: int | None = None, timings: dict[str, float] | None = None,
         backend: TopKBackend | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of a set of queries: the one path from any model to a ranked list.

    Parameters
    ----------
    model : a fitted model (``models/base.py``). With ``capabilities.item_vectors`` its queries are
        embedded by ``query_vectors`` and scored against ``item_vectors`` (:func:`top_k_with_scores`);
        otherwise ``model.scores`` is called on chunks of queries sized by the same 64 MiB budget and
        each chunk goes through :func:`top_k_from_scores`.
    histories, features, users, groups : passed to the model (see ``Retriever.query_vectors``).
    exclude : csr (q, n_items) of items never to return, or None. k : how many.
    chunk_size : queries scored at a time (default: as many as fit in 64 MiB).
    timings : if given, receives ``embed`` (seconds in ``query_vectors``; 0 for a model that only
        scores) and ``topk`` (seconds scoring and selecting).
    backend : scores and selects for dot-product models instead of :func:`top_k_with_scores` (same
        contract); None = here.

    Returns
    -------
    ((q, k) int64 item indices best first, -1 where fewer than k items are eligible; (q, k) float32
    scores).
    """
    histories = sp.csr_matrix(histories)
    t0 = time.perf_counter()
    if model.capabilities.item_vectors:
        qv = model.query_vectors(histories, features, users=users, groups=groups)
        t1 = time.perf_counter()
        if backend is None:
            out = top_k_with_scores(qv, model.item_vectors, exclude, k, chunk_size)
        else:
            out = backend(np.asarray(qv, dtype=np.float32), np.asarray(model.item_vectors, dtype=np.float32),
                          exclude, k)
    else:
        t1 = t0
        out = _rank_by_scores(model, histories, features, users, groups, exclude, k, chunk_size)
    if timings is not None:
        timings["embed"] = t1 - t0
        timings["topk"] = time.perf_counter() - t1
    return out


def _rank_by_scores(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
                    users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
                    chunk_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank` for a model without item vectors: ``model.scores`` chunk by chunk, then top-k."""
    q, n_items = histories.shape
    ex_ptr, ex_ind = _exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = _empty_top(q, k)
    for start in range(0, q if k else 0, chunk):
        stop = min(q, start + chunk)
        feats = None if features is None else {f: c[start:stop] for f, c in features.items()}
        s = model.scores(histories[start:stop], feats, users=_rows(users, start, stop),
                         groups=_rows(groups, start, stop))
        s = np.ascontiguousarray(s, dtype=np.float32)
        if s.shape != (stop - start, n_items):
            raise ModelError(f"model {model.kind!r}: scores returned shape {s.shape} for "
                             f"{stop - start} queries over {n_items} items")
        _select(s, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
    return out, out_s


def warm_up() -> None:
    """Load the numba top-k kernel (from its cache) so the first timed call is not a compile."""
    top_k(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32), None, 2)
    top_k(np.ones((PARALLEL_ROWS_WARM, 2), np.float32), np.ones((3, 2), np.float32), None, 2)
