"""Scoring in Spark: a top-k backend for the shared evaluator, not a second evaluator.

:class:`SparkTopK` has the ``evaluation.topk.TopKBackend`` contract. The evaluator hands it the query
vectors it embedded on the driver; Spark tasks score chunks of them against the broadcast item vectors
with the local :func:`mfvsdnn.evaluation.topk.top_k_with_scores` (same exclusion, ties to the lower
index, -1 where fewer than k items are eligible), and the driver puts the chunks back in order. Every
metric, interval and test is then computed by the evaluator exactly as for a local run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ...core.topk import top_k_with_scores
from .session import SparkError, first_line

Chunk = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # (first row, queries, exclude indptr, exclude indices)


def query_chunks(queries: np.ndarray, exclude: sp.csr_matrix | None, rows: int) -> list[Chunk]:
    """The queries in chunks of ``rows``, each with its own rows of the exclusion matrix (indptr from 0)."""
    q = queries.shape[0]
    ex = sp.csr_matrix(exclude) if exclude is not None else None
    chunks = []
    for start in range(0, q, rows):
        stop = min(q, start + rows)
        if ex is None:
            ptr, ind = np.zeros(stop - start + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
        else:
            lo, hi = ex.indptr[start], ex.indptr[stop]
            ptr, ind = (ex.indptr[start:stop + 1] - lo).astype(np.int64), ex.indices[lo:hi].astype(np.int32)
        chunks.append((start, queries[start:stop], ptr, ind))
    return chunks


def score_chunk(chunk: Chunk, items: np.ndarray, k: int) -> tuple[int, np.ndarray, np.ndarray]:
    """One Spark task: the local top-k of one chunk of queries. Returns (first row, indices, scores)."""
    start, queries, ptr, ind = chunk
    exclude = sp.csr_matrix((np.ones(len(ind), dtype=np.float32), ind, ptr), shape=(len(queries), len(items)))
    idx, scores = top_k_with_scores(queries, items, exclude, k)
    return start, idx, scores


class SparkTopK:
    """Top-k in Spark tasks, with the ``TopKBackend`` contract of ``evaluation.topk``.

    ``backend(queries (q, d) float32, items (n, d) float32, exclude csr (q, n) or None, k)`` returns
    ``(indices (q, k) int64, scores (q, k) float32)``, equal to :func:`top_k_with_scores` on the same
    arguments: each task runs that function on ``users_per_task`` consecutive queries and their rows of
    ``exclude``. Scores are products in float32 computed by the executor's BLAS, which may round the last
    bit differently from the driver's with another thread count or CPU; on data whose products are
    exact (small integers) the results are identical, otherwise they agree to float32 rounding.

    The item vectors travel once per call as a broadcast (the executors need memory for them) and are
    released afterwards; the executors need mfvsdnn installed (they import this module).
    """

    def __init__(self, spark: Any, users_per_task: int = 2048) -> None:
        if int(users_per_task) < 1:
            raise ValueError(f"users_per_task must be >= 1, got {users_per_task}")
        self.spark = spark
        self.users_per_task = int(users_per_task)

    def __call__(self, queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        items = np.ascontiguousarray(items, dtype=np.float32)
        q, n = queries.shape[0], items.shape[0]
        if exclude is not None and exclude.shape != (q, n):
            raise ValueError(f"exclude has shape {exclude.shape}, expected {(q, n)}")
        if q == 0 or k == 0:
            return top_k_with_scores(queries, items, exclude, k)
        chunks = query_chunks(queries, exclude, self.users_per_task)
        sc = self.spark.sparkContext
        shared = sc.broadcast(items)
        k_ = int(k)
        try:
            parts = sc.parallelize(chunks, len(chunks)).map(lambda c: score_chunk(c, shared.value, k_)).collect()
        except Exception as e:  # an executor failed (no mfvsdnn there, out of memory, ...)
            raise SparkError(f"scoring in Spark failed: {first_line(e)}") from None
        finally:
            shared.destroy()
        parts.sort(key=lambda p: p[0])
        return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
