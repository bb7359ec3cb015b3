"""The fused products + top-k (``core.topk.top_k_with_scores``) against the unfused path and a slow
reference.

Exactness: queries and items hold small integers, so every dot product is an exact float32 integer
whatever order BLAS sums in, and ties are common; the lists then must be equal bit for bit to
(a) the unfused path (all products first, then the same selection kernel: the implementation before
the fusion) and (b) a numpy stable sort with the documented tie rule (higher score first, then lower
item index; excluded, NaN and -inf items never returned; -1 padding).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from mfvsdnn.core import topk
from mfvsdnn.evaluation import evaluator, metrics


def reference_top_k(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Slow reference: float64 products, excluded -> -inf, stable sort by (-score, index)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T  # (q, n_items)
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    q, n_items = scores.shape
    idx = np.full((q, k), -1, dtype=np.int64)
    val = np.full((q, k), -np.inf, dtype=np.float32)
    for r in range(q):
        row = scores[r]
        order = np.lexsort((np.arange(n_items), -np.nan_to_num(row, nan=-np.inf)))  # last key first
        order = [j for j in order if np.isfinite(row[j])][:k]
        idx[r, :len(order)] = order
        val[r, :len(order)] = row[order]
    return idx, val


def unfused_top_k(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The path before the fusion: every product first, then the selection kernel on them."""
    scores = np.asarray(queries, np.float32) @ np.asarray(items, np.float32).T
    return topk.top_k_from_scores(scores, exclude, k, overwrite=True)


def integer_case(seed: int, q: int, n_items: int, d: int, known: float):
    rng = np.random.default_rng(seed)
    queries = rng.integers(-2, 3, (q, d)).astype(np.float32)
    items = rng.integers(-2, 3, (n_items, d)).astype(np.float32)
    exclude = sp.csr_matrix((rng.random((q, n_items)) < known).astype(np.float32))
    return queries, items, exclude


def assert_same(got, want) -> None:
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.int32), want[1].view(np.int32))  # bit for bit


@pytest.mark.parametrize("q, n_items, d, k, known, chunk", [
    (37, 50, 4, 10, 0.2, 16),     # q not a multiple of the block, many ties (small integers)
    (37, 50, 4, 10, 0.2, None),   # default block rows
    (5, 30, 3, 40, 0.1, None),    # k > n_items: -1 padding after every eligible item
    (20, 12, 2, 8, 0.6, 16),      # exclusion leaves fewer than k items in most rows
    (70, 300, 6, 25, 0.05, 16),   # several blocks per worker, rows longer than the kernel's 64-score block
    (1, 40, 3, 5, 0.0, None),     # one query (a request)
])
def test_fused_equals_unfused_and_reference(q, n_items, d, k, known, chunk):
    queries, items, exclude = integer_case(q * 7 + n_items, q, n_items, d, known)
    got = topk.top_k_with_scores(queries, items, exclude, k, chunk)
    assert_same(got, unfused_top_k(queries, items, exclude, k))
    assert_same(got, reference_top_k(queries, items, exclude, k))
    np.testing.assert_array_equal(topk.top_k(queries, items, exclude, k, chunk), got[0])


def test_fully_excluded_row_and_no_exclusion():
    queries, items, _ = integer_case(3, 9, 20, 3, 0.0)
    exclude = sp.lil_matrix((9, 20), dtype=np.float32)
    exclude[4, :] = 1.0  # nothing eligible for query 4
    exclude = exclude.tocsr()
    got = topk.top_k_with_scores(queries, items, exclude, 6, 4)
    assert (got[0][4] == -1).all() and np.isneginf(got[1][4]).all()
    assert_same(got, reference_top_k(queries, items, exclude, 6))
    assert_same(topk.top_k_with_scores(queries, items, None, 6, 4), reference_top_k(queries, items, None, 6))


def test_nan_item_is_never_returned():
    queries, items, exclude = integer_case(5, 24, 40, 4, 0.1)
    items[[3, 17]] = np.nan
    got = topk.top_k_with_scores(queries, items, exclude, 45, 16)
    assert not np.isin(got[0], [3, 17]).any()
    assert_same(got, unfused_top_k(queries, items, exclude, 45))
    assert_same(got, reference_top_k(queries, items, exclude, 45))


def test_float64_inputs_are_scored_as_float32():
    queries, items, exclude = integer_case(11, 33, 60, 5, 0.1)
    rng = np.random.default_rng(1)
    queries = queries + rng.random(queries.shape).astype(np.float32) / 4  # not integers: rounding matters
    want = topk.top_k_with_scores(queries, items, exclude, 7, 16)
    assert_same(topk.top_k_with_scores(queries.astype(np.float64), items.astype(np.float64), exclude, 7, 16), want)


@pytest.mark.parametrize("rows", [8, 16])
def test_lists_do_not_depend_on_the_worker_count(rows):
    # real-valued scores: the bits of a product depend on how BLAS blocks it, so this holds only because
    # blocks start at multiples of ``rows`` whichever worker takes them
    rng = np.random.default_rng(rows)
    q, n_items, d, k = 83, 500, 16, 20
    queries = rng.standard_normal((q, d)).astype(np.float32)
    items = rng.standard_normal((n_items, d)).astype(np.float32)
    exclude = sp.csr_matrix((rng.random((q, n_items)) < 0.05).astype(np.float32))
    ex_ptr, ex_ind = topk.exclusion_parts(exclude, q, n_items)
    results = []
    for workers in (1, 2, 3):
        out, out_s = topk.empty_top(q, k)
        topk.score_and_select(queries, items.T, ex_ptr, ex_ind, k, out, out_s, rows, workers)
        results.append((out, out_s))
    for other in results[1:]:
        assert_same(other, results[0])
    # and the selection is the kernel's on those products: top-k of the same block-wise scores
    with topk.one_blas_thread():
        scores = np.vstack([queries[s:s + rows] @ items.T for s in range(0, q, rows)])
    assert_same(results[0], topk.top_k_from_scores(scores, exclude, k))


def blas_threads() -> list[int]:
    # the BLAS libraries loaded when topk first limited them (numpy's among them); others loaded later
    # (torch's, scipy's own) are never called by the products here
    controller = topk._BLAS_STATE["controller"]
    libs = controller.info() if controller is not None else threadpool_info()
    return [lib["num_threads"] for lib in libs if lib["user_api"] == "blas"]


def test_blas_threads_restored_after_a_call_and_after_an_error():
    queries, items, exclude = integer_case(2, 40, 30, 3, 0.1)
    topk.top_k_with_scores(queries, items, exclude, 5, 16)
    before = blas_threads()
    topk.top_k_with_scores(queries, items, exclude, 5, 16)
    assert blas_threads() == before
    with pytest.raises(ValueError):
        topk.top_k_with_scores(queries[:, :2], items, exclude, 5, 16)  # d mismatch, raised by a worker
    assert blas_threads() == before
    with topk.one_blas_thread():  # nested users share one limit, released by the last
        with topk.one_blas_thread():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before


def test_block_rows_bounds_worker_memory():
    assert topk.block_rows(20_000) == 64  # 5 MiB of float32 scores per worker
    assert topk.block_rows(10) == 256 and topk.block_rows(10_000_000) == 16
    assert all(topk.block_rows(n) % 16 == 0 for n in (1, 999, 54_321, 2_000_000))


def test_evaluator_metrics_on_a_fixed_case():
    # scores U Vᵀ: user 0 [3 2 1 0 1], user 1 [0 1 2 3 1], user 2 [3 3 3 3 2]
    U = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    V = np.array([[3, 0], [2, 1], [1, 2], [0, 3], [1, 1]], np.float32)
    exclude = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]], np.float32))
    targets = sp.csr_matrix(np.array([[0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [1, 0, 1, 1, 0]], np.float32))
    tk = topk.top_k(U, V, exclude, 2)
    # user 0: item 0 excluded, then 1 (2), a tie at 1 between items 2 and 4 goes to 2; user 2: ties to 0, 2
    np.testing.assert_array_equal(tk, [[1, 2], [3, 2], [0, 2]])
    pct = metrics.popularity_percentiles(np.array([5, 4, 3, 2, 1]))
    per, scal = evaluator.metric_arrays(tk, targets, (1, 2), pct, None, None)
    g = 1 / np.log2(3)  # the gain at rank 2
    np.testing.assert_allclose(per["recall", 2], [1 / 2, 0, 2 / 3])
    np.testing.assert_allclose(per["precision", 2], [1 / 2, 0, 1])
    np.testing.assert_allclose(per["hit_rate", 2], [1, 0, 1])
    np.testing.assert_allclose(per["ndcg", 2], [g / (1 + g), 0, 1])
    np.testing.assert_allclose(per["recall", 1], [0, 0, 1 / 3])
    assert scal["coverage", 2] == pytest.approx(4 / 5)  # items {0, 1, 2, 3} recommended to someone


def test_score_memory_is_one_block_per_worker():
    import tracemalloc

    rng = np.random.default_rng(4)
    q, n_items, d, k = 3000, 4000, 8, 10
    queries = rng.standard_normal((q, d)).astype(np.float32)
    items = rng.standard_normal((n_items, d)).astype(np.float32)
    topk.top_k_with_scores(queries, items, None, k, 16)  # warm (kernel loaded, pool code imported)
    tracemalloc.start()
    try:
        topk.top_k_with_scores(queries, items, None, k, 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = q * k * (8 + 4)
    assert topk.score_bytes(q, n_items, 16) == 4 * n_items * 16 * topk.worker_count()
    assert peak <= outputs + topk.score_bytes(q, n_items, 16) + (256 << 10)  # + small bookkeeping
    assert peak < 4 * q * n_items / 10  # far from the dense scores


def test_an_error_in_one_worker_stops_the_others(monkeypatch):
    from mfvsdnn.core import topk_kernels

    calls = []

    def failing_kernel(*args):
        calls.append(1)
        raise RuntimeError("kernel failed")

    monkeypatch.setattr(topk_kernels, "topk_rows_serial", failing_kernel)
    queries, items, exclude = integer_case(8, 400, 30, 3, 0.1)
    with pytest.raises(RuntimeError, match="kernel failed"):
        topk.top_k_with_scores(queries, items, exclude, 5, 8)  # 50 blocks
    assert 1 <= len(calls) <= topk.worker_count()  # each worker fails once at most, then takes no block
