"""Metric functions: 1 for a perfect ranking, 0 for none, a hand-computed value in between; bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.evaluation import metrics as M


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate([np.sort(r) for r in rows]).astype(np.int32) if indptr[-1] else np.zeros(0, np.int32)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n_items))


# one query, targets {1, 2, 3}, 10 items
TARGETS = csr([[1, 2, 3]], 10)
PERFECT = np.array([[1, 2, 3, 0, 4]])
NONE = np.array([[0, 4, 5, 6, 7]])
MIXED = np.array([[0, 2, 5, 3, 7]])  # hits at ranks 1 and 3 (0-based)


def test_hits_matrix_known_answer_and_minus_one_never_hits():
    t = csr([[1, 2, 3], [], [0]], 10)
    topk = np.array([[0, 2, 5, 3], [1, 2, -1, -1], [-1, 0, 9, 1]])
    h = M.hits_matrix(topk, t)
    assert h.tolist() == [[False, True, False, True], [False] * 4, [False, True, False, False]]


def test_hits_matrix_unsorted_targets():
    t = sp.csr_matrix((np.ones(3, np.float32), np.array([3, 1, 2]), np.array([0, 3])), shape=(1, 10))
    t.has_sorted_indices = False
    assert M.hits_matrix(np.array([[2, 1, 3, 0]]), t).tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("k", [3, 5])
def test_recall(k):
    nt = M.n_targets(TARGETS)
    assert M.recall_at_k(M.hits_matrix(PERFECT, TARGETS), nt, k)[0] == 1.0
    assert M.recall_at_k(M.hits_matrix(NONE, TARGETS), nt, k)[0] == 0.0
    # 2 hits in the top 5 of 3 targets -> 2 / 3; top 3 holds one hit -> 1/3
    expected = 2 / 3 if k == 5 else 1 / 3
    assert M.recall_at_k(M.hits_matrix(MIXED, TARGETS), nt, k)[0] == pytest.approx(expected)


def test_recall_denominator_is_all_targets_truncated_is_min_k_targets():
    # 8 targets, top 5 all hits: recall = 5 / 8, truncated recall = 5 / min(5, 8) = 1
    t = csr([list(range(8))], 10)
    h = M.hits_matrix(np.array([[0, 1, 2, 3, 4]]), t)
    assert M.recall_at_k(h, M.n_targets(t), 5)[0] == pytest.approx(5 / 8)
    assert M.truncated_recall_at_k(h, M.n_targets(t), 5)[0] == 1.0


def test_recall_and_truncated_recall_differ_only_when_targets_exceed_k():
    # query 0: |T| = 6 > k = 4, hits at ranks 0 and 2 -> recall 2/6, truncated 2/4
    # query 1: |T| = 3 <= k = 4, hits at ranks 1 and 3 -> both 2/3
    # query 2: |T| = 4 = k, one hit -> both 1/4;  query 3: no targets -> both 0
    t = csr([[0, 1, 2, 3, 4, 5], [7, 8, 9], [1, 3, 5, 7], []], 10)
    topk = np.array([[0, 9, 1, 8], [0, 7, 1, 9], [0, 2, 4, 5], [0, 1, 2, 3]])
    h, nt = M.hits_matrix(topk, t), M.n_targets(t)
    assert M.recall_at_k(h, nt, 4).tolist() == pytest.approx([2 / 6, 2 / 3, 1 / 4, 0.0])
    assert M.truncated_recall_at_k(h, nt, 4).tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 4, 0.0])
    # at k = 2 query 1 has |T| = 3 > 2: one hit at rank 1 -> 1/3 against 1/2
    assert M.recall_at_k(h, nt, 2).tolist() == pytest.approx([1 / 6, 1 / 3, 0.0, 0.0])
    assert M.truncated_recall_at_k(h, nt, 2).tolist() == pytest.approx([1 / 2, 1 / 2, 0.0, 0.0])


def test_precision():
    assert M.precision_at_k(M.hits_matrix(PERFECT, TARGETS), 3)[0] == 1.0
    assert M.precision_at_k(M.hits_matrix(NONE, TARGETS), 5)[0] == 0.0
    assert M.precision_at_k(M.hits_matrix(MIXED, TARGETS), 5)[0] == pytest.approx(2 / 5)


def test_hit_rate():
    assert M.hit_rate_at_k(M.hits_matrix(PERFECT, TARGETS), 1)[0] == 1.0
    assert M.hit_rate_at_k(M.hits_matrix(NONE, TARGETS), 5)[0] == 0.0
    h = M.hits_matrix(MIXED, TARGETS)
    assert M.hit_rate_at_k(h, 1)[0] == 0.0 and M.hit_rate_at_k(h, 2)[0] == 1.0


def test_ndcg():
    nt = M.n_targets(TARGETS)
    assert M.ndcg_at_k(M.hits_matrix(PERFECT, TARGETS), nt, 5)[0] == pytest.approx(1.0)
    assert M.ndcg_at_k(M.hits_matrix(NONE, TARGETS), nt, 5)[0] == 0.0
    # hits at ranks 1, 3: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 0.5
    assert M.ndcg_at_k(M.hits_matrix(MIXED, TARGETS), nt, 5)[0] == pytest.approx(dcg / idcg)


def test_coverage():
    topk = np.array([[0, 1], [0, 2], [2, -1]])
    assert M.catalog_coverage(topk, 2, 3) == 1.0
    assert M.catalog_coverage(topk, 1, 3) == pytest.approx(2 / 3)
    assert M.catalog_coverage(np.full((2, 2), -1), 2, 3) == 0.0


def test_popularity_percentiles_and_mean():
    pct = M.popularity_percentiles(np.array([5, 1, 1, 9]))
    # mid-ranks 3, 1.5, 1.5, 4 over 4 items
    assert pct.tolist() == [0.75, 0.375, 0.375, 1.0]
    got = M.mean_popularity_at_k(np.array([[3, 0], [1, -1], [-1, -1]]), 2, pct)
    assert got[0] == pytest.approx(0.875) and got[1] == pytest.approx(0.375) and math.isnan(got[2])


def test_leakage_zero_when_all_in_group_one_when_none():
    item_groups = np.array([0, 0, 1, 1, 2])
    ug = np.array([0, 1, 2, -1])
    topk = np.array([[0, 1], [2, 3], [0, 2], [0, 1]])
    leak = M.leakage_at_k(topk, 2, ug, item_groups)
    assert leak[0] == 0.0 and leak[1] == 0.0  # all in-group
    assert leak[2] == 1.0  # none in-group
    assert math.isnan(leak[3])  # user without a group
    assert M.leakage_at_k(np.array([[0, 2, -1]]), 3, np.array([0]), item_groups)[0] == 0.5  # -1 ignored


def test_cross_rate():
    item_groups = np.array([0, 0, 1, 1, 2])
    t = csr([[0, 1, 2, 4], [2], []], 5)
    r = M.cross_rate(t, np.array([0, 1, 0]), item_groups)
    assert r[0] == 0.5 and r[1] == 0.0 and math.isnan(r[2])


def test_bootstrap_means_constant_and_nan_aware():
    rng = np.random.default_rng(0)
    vals = np.vstack([np.full(50, 0.3), np.r_[np.full(25, 1.0), np.full(25, np.nan)]])
    boot = M.bootstrap_means(vals, 200, rng)
    assert boot.shape == (200, 2)
    assert np.allclose(boot[:, 0], 0.3) and np.allclose(boot[:, 1], 1.0)


def test_bootstrap_interval_covers_mean_and_is_seeded():
    x = np.random.default_rng(1).random((1, 400))
    b1 = M.bootstrap_means(x, 500, np.random.default_rng(7), max_block=10_000)  # several blocks
    b2 = M.bootstrap_means(x, 500, np.random.default_rng(7), max_block=10_000)
    assert np.array_equal(b1, b2)
    lo, hi = M.percentile_interval(b1)
    m = x.mean()
    assert lo[0] < m < hi[0]
    # the standard error of a mean of 400 U(0,1): sqrt(1/12/400) ~ 0.0144; the 95% width ~ 4 se
    assert 0.04 < hi[0] - lo[0] < 0.075


def test_paired_p_value():
    boot = np.vstack([np.full(999, 0.1), np.r_[np.full(500, 0.1), np.full(499, -0.1)]]).T
    p = M.paired_p_value(boot)
    assert p[0] == pytest.approx(2 / 1000)  # every resample agrees: the smallest p
    assert p[1] == 1.0
