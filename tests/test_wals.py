"""WALS: row solves against independent references, the objective, folding, cold start, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn import api
from mfvsdnn.core.errors import ModelError
from mfvsdnn.core.topk import top_k
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig, TrainSet
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.wals import WALS, gram_term, kernels, objective


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """Small grouped synthetic data (4 groups, 5% natural cross-group rate) and its split."""
    path = tmp_path_factory.mktemp("wals") / "g.csv"
    write_csv(SyntheticConfig(users=600, items=200, groups=4, cross_rate=0.05, seed=1), path)
    return api.prepare_split(path, ColumnSpec(user_features=("country", "age_band")), SplitConfig(seed=0))


def _random_binary(rng, n, m, density):
    R = sp.random(n, m, density=density, random_state=np.random.RandomState(int(rng.integers(1 << 30))),
                  format="csr", dtype=np.float32)
    R.data[:] = 1.0
    return R


def _train(R, features=None, cards=None):
    return TrainSet(matrix=R, users=np.flatnonzero(np.diff(R.indptr) > 0), features=features or {},
                    cardinalities=cards or {})


# ----------------------------------------------------------------------------- row solves


def test_cholesky_equals_dense_weighted_least_squares():
    """Each user row minimises sum_j w_ij (r_ij - u.v_j)^2 + reg |u|^2 with w = 1 on Omega, w0 off it:
    solved here as an ordinary least-squares problem on the stacked, row-weighted system."""
    rng = np.random.default_rng(0)
    n, m, d, w0, reg = 7, 9, 4, 0.2, 0.3
    dense = _random_binary(rng, n, m, 0.35).toarray()
    dense[0] = 0  # an empty row must give 0
    R = sp.csr_matrix(dense)
    V = rng.standard_normal((m, d)).astype(np.float32)
    out = np.zeros((n, d), dtype=np.float32)
    kernels.solve_rows_cholesky(R.indptr.astype(np.int64), R.indices, V, gram_term(V, w0, reg), 1 - w0, out, 3)
    dense = R.toarray()
    for i in range(n):
        w = np.where(dense[i] > 0, 1.0, w0)
        A = np.vstack([np.sqrt(w)[:, None] * V.astype(np.float64), np.sqrt(reg) * np.eye(d)])
        b = np.concatenate([np.sqrt(w) * dense[i], np.zeros(d)])
        expected = np.linalg.lstsq(A, b, rcond=None)[0]
        np.testing.assert_allclose(out[i], expected, rtol=1e-4, atol=1e-5)
    assert np.all(out[0] == 0)


def test_cg_converges_to_cholesky():
    rng = np.random.default_rng(1)
    n, m, d, w0, reg = 40, 30, 6, 0.1, 0.5
    R = _random_binary(rng, n, m, 0.2)
    ptr = R.indptr.astype(np.int64)
    V = rng.standard_normal((m, d)).astype(np.float32)
    exact = np.zeros((n, d), dtype=np.float32)
    kernels.solve_rows_cholesky(ptr, R.indices, V, gram_term(V, w0, reg), 1 - w0, exact, 8)
    G32 = gram_term(V, w0, reg).astype(np.float32)
    bounds = kernels.row_blocks(ptr, d, 8)
    blocks = (bounds, kernels.block_parts(ptr, bounds, d, 2))
    errs = []
    for steps in (1, 2, 3, d):
        X = np.zeros((n, d), dtype=np.float32)
        kernels.solve_rows_cg(ptr, R.indices, V, X, G32, 1 - w0, steps, *blocks)
        errs.append(np.abs(X - exact).max() / np.abs(exact).max())
    assert errs[0] > errs[-1]
    assert errs[-1] < 1e-4  # CG is exact after d steps (up to float32)
    # warm start: from the exact solution CG stays there
    X = exact.copy()
    kernels.solve_rows_cg(ptr, R.indices, V, X, G32, 1 - w0, 3, *blocks)
    np.testing.assert_allclose(X, exact, atol=1e-4)


def _skewed(rng, n, m):
    """A matrix whose first rows hold most entries (like popular items sorted together)."""
    per_row = np.maximum(1, (400 * np.exp(-np.arange(n) / (n / 10))).astype(int))
    per_row[n // 3] = 0  # an empty row
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(0, m, rows.size)
    R = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n, m))
    R.data[:] = 1.0
    return R


def test_row_blocks_cut_equal_work_and_cover_every_row_once():
    rng = np.random.default_rng(3)
    R = _skewed(rng, 1000, 300)
    ptr, d, chunk = R.indptr.astype(np.int64), 8, 64
    bounds = kernels.row_blocks(ptr, d, chunk)
    assert bounds[0] == 0 and bounds[-1] == 1000 and np.all(np.diff(bounds) >= 1)
    assert np.diff(bounds).max() <= chunk
    work = np.diff(ptr).astype(float) + d / 2
    block_work = np.add.reduceat(work, bounds[:-1])
    target = work.sum() / -(-1000 // chunk)
    # a block closes as soon as it reaches the target, so it exceeds it by less than one row's work
    assert block_work.max() < target + work.max()
    static = np.add.reduceat(work, np.arange(0, 1000, chunk))
    assert static.max() / static.mean() > 5 > block_work.max() / block_work.mean()
    for n_parts in (1, 2, 3, 7):
        parts = kernels.block_parts(ptr, bounds, d, n_parts)
        assert parts[0] == 0 and parts[-1] == len(bounds) - 1 and np.all(np.diff(parts) >= 0)
    part_work = np.add.reduceat(block_work, kernels.block_parts(ptr, bounds, d, 2)[:-1])
    assert part_work.max() - part_work.min() <= block_work.max()
    # the gather buffer's cap: a block of several rows never holds more than 100 entries
    small = kernels.row_blocks(ptr, d, chunk, block_bytes=100 * 4 * d)
    held = np.diff(ptr[small])
    assert np.all(held[np.diff(small) > 1] <= 100) and len(small) > len(bounds)
    assert held.max() > 100  # the heaviest rows (up to 400 entries) are blocks of their own


def _cg_reference(R, Y, X0, G, s, steps):
    """Per-row CG in float64 with the explicit matrix A_i (independent of the kernel's blocking)."""
    X = X0.astype(np.float64)
    for i in range(R.shape[0]):
        cols = R.indices[R.indptr[i]:R.indptr[i + 1]]
        if cols.size == 0:
            X[i] = 0
            continue
        Yi = Y[cols].astype(np.float64)
        A = G + s * Yi.T @ Yi
        x = X[i]
        r = Yi.sum(axis=0) - A @ x
        p, rs = r.copy(), r @ r
        for _ in range(steps):
            if rs < 1e-20:
                break
            ap = A @ p
            alpha = rs / (p @ ap)
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = r @ r
            p, rs = r + rs_new / rs * p, rs_new
        X[i] = x
    return X


def test_lockstep_cg_equals_per_row_cg_on_skewed_rows():
    rng = np.random.default_rng(4)
    R = _skewed(rng, 300, 120)
    ptr, d, w0 = R.indptr.astype(np.int64), 6, 0.1
    V = rng.standard_normal((120, d)).astype(np.float32) * 0.3
    X0 = rng.standard_normal((300, d)).astype(np.float32) * 0.1
    G = gram_term(V, w0, 1.0)
    results = []
    bounds = kernels.row_blocks(ptr, d, 16, block_bytes=50 * 4 * d)  # small gather buffers: many blocks
    for n_parts in (1, 3):
        X = X0.copy()
        kernels.solve_rows_cg(ptr, R.indices, V, X, G.astype(np.float32), 1 - w0, 2, bounds,
                              kernels.block_parts(ptr, bounds, d, n_parts))
        results.append(X)
    np.testing.assert_array_equal(results[0], results[1])  # the split over threads changes nothing
    expected = _cg_reference(R, V, X0, G, 1 - w0, 2)
    np.testing.assert_allclose(results[0], expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_lockstep_cg_row_larger_than_the_gather_buffer_reads_y_directly():
    """A row with more entries than the gather buffer holds (a very popular item) is a block of its
    own and is solved from Y directly: the same answer as the per-row reference."""
    rng = np.random.default_rng(5)
    n, m, d, w0 = 40, 3000, 64, 0.1
    cap = kernels.BLOCK_BYTES // (4 * d)
    per_row = rng.integers(1, 30, n)
    per_row[7] = cap + 200
    rows = np.repeat(np.arange(n), per_row)
    cols = np.concatenate([rng.choice(m, k, replace=False) for k in per_row])
    R = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n, m))
    ptr = R.indptr.astype(np.int64)
    bounds = kernels.row_blocks(ptr, d)
    assert 7 in bounds and 8 in bounds  # the heavy row alone
    V = (rng.standard_normal((m, d)) * 0.05).astype(np.float32)
    X0 = (rng.standard_normal((n, d)) * 0.05).astype(np.float32)
    G = gram_term(V, w0, 1.0)
    X = X0.copy()
    kernels.solve_rows_cg(ptr, R.indices, V, X, G.astype(np.float32), 1 - w0, 3, bounds,
                          kernels.block_parts(ptr, bounds, d, 2))
    expected = _cg_reference(R, V, X0, G, 1 - w0, 3)
    np.testing.assert_allclose(X, expected, rtol=2e-3, atol=2e-4 * np.abs(expected).max())


def test_objective_gram_identity_equals_brute_force():
    rng = np.random.default_rng(2)
    R = _random_binary(rng, 8, 6, 0.3)
    U = rng.standard_normal((8, 3)).astype(np.float32)
    V = rng.standard_normal((6, 3)).astype(np.float32)
    w0, reg = 0.15, 0.2
    S = U.astype(np.float64) @ V.T.astype(np.float64)
    P = R.toarray() > 0
    brute = ((1 - S[P]) ** 2).sum() + w0 * (S[~P] ** 2).sum() + reg * ((U.astype(float) ** 2).sum() + (V.astype(float) ** 2).sum())
    assert objective(R.indptr.astype(np.int64), R.indices, U, V, w0, reg) == pytest.approx(brute, rel=1e-9)


# ----------------------------------------------------------------------------- training


def test_objective_never_increases_with_cholesky(grouped):
    m = WALS(factors=8, iterations=8, solver="cholesky").fit(grouped.train_set(), np.random.default_rng(0))
    f = np.array([h["objective"] for h in m.history_])
    assert len(f) == 8 and [h["iteration"] for h in m.history_] == list(range(1, 9))
    assert np.all(np.diff(f) <= 1e-6 * f[:-1])
    assert f[-1] < 0.9 * f[0]


def test_cg_fit_reaches_cholesky_objective(grouped):
    tr = grouped.train_set()
    chol = WALS(factors=8, iterations=8, solver="cholesky").fit(tr, np.random.default_rng(0))
    cg = WALS(factors=8, iterations=8, solver="cg", cg_steps=3).fit(tr, np.random.default_rng(0))
    assert cg.history_[-1]["objective"] == pytest.approx(chol.history_[-1]["objective"], rel=0.01)


def test_progress_reports_objective(grouped):
    calls = []
    m = WALS(factors=4, iterations=3).fit(grouped.train_set(), np.random.default_rng(0),
                                           lambda d, t, met: calls.append((d, t, met["objective"])))
    assert [(d, t) for d, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert [c[2] for c in calls] == [h["objective"] for h in m.history_]


def test_same_seed_same_factors_any_thread_count(grouped):
    tr = grouped.train_set()
    a = WALS(factors=8, iterations=3, num_threads=1).fit(tr, np.random.default_rng(5))
    b = WALS(factors=8, iterations=3, num_threads=2).fit(tr, np.random.default_rng(5))
    c = WALS(factors=8, iterations=3).fit(tr, np.random.default_rng(6))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)
    assert a.user_factors_.dtype == np.float32 and a.item_factors_.dtype == np.float32


def _leakage(model, split, users, k=20):
    ds = split.dataset
    tk = top_k(model.query_vectors(split.train[users], None, users=users), model.item_vectors,
               split.known()[users], k)
    return float((ds.item_groups[tk] != ds.user_groups[users][:, None]).mean())


def test_folding_w0_zero_leaks_w0_positive_does_not(grouped):
    """The trade-off table's claim: without the unobserved weight, groups fold onto each other."""
    ds, users = grouped.dataset, grouped.warm_eval_users
    test = grouped.test[users]
    natural = float((ds.item_groups[test.indices] != np.repeat(ds.user_groups[users], np.diff(test.indptr))).mean())
    tr = grouped.train_set()
    leak0 = _leakage(WALS(w0=0.0, factors=16, iterations=10).fit(tr, np.random.default_rng(0)), grouped, users)
    leak1 = _leakage(WALS(w0=0.1, factors=16, iterations=10).fit(tr, np.random.default_rng(0)), grouped, users)
    assert 0.02 < natural < 0.1
    assert leak0 > natural + 0.25  # far above the natural rate: folding
    assert abs(leak1 - natural) < 0.05  # close to it
    assert leak0 > 4 * leak1


# ----------------------------------------------------------------------------- cold start


def test_fold_in_of_training_history_reproduces_trained_vector(grouped):
    tr = grouped.train_set()
    users = tr.users[:50]
    chol = WALS(factors=8, iterations=4, solver="cholesky").fit(tr, np.random.default_rng(0))
    np.testing.assert_allclose(chol.query_vectors(tr.matrix[users]), chol.user_factors_[users], atol=1e-5)
    cg = WALS(factors=8, iterations=6).fit(tr, np.random.default_rng(0))
    q, u = cg.query_vectors(tr.matrix[users]), cg.user_factors_[users]
    cos = (q * u).sum(1) / np.linalg.norm(q, axis=1) / np.linalg.norm(u, axis=1)
    assert cos.min() > 0.98


def _feature_model(min_support=2):
    """Six warm users with known vectors and two features (a: 2 values, b: 3 values); user 6 is cold."""
    R = sp.csr_matrix(np.array([[1, 0, 0]] * 6 + [[0, 0, 0]], dtype=np.float32))
    a = np.array([0, 0, 0, 1, 1, 0, 1], dtype=np.int32)
    b = np.array([0, 0, 1, 1, 2, 2, 0], dtype=np.int32)
    U = np.arange(14, dtype=np.float32).reshape(7, 2)
    U[6] = 1000.0  # a cold user's row must never enter a mean
    V = np.ones((3, 2), dtype=np.float32)
    tr = _train(R, {"a": a, "b": b}, {"a": 2, "b": 3})
    return WALS.from_factors({"factors": 2, "min_support": min_support}, U, V, tr), U


def test_feature_heuristic_returns_documented_means():
    model, U = _feature_model(min_support=2)
    mean = lambda rows: U[rows].mean(axis=0)  # noqa: E731
    feats = {"a": np.array([0, 1, 0, -1, 5, -1]), "b": np.array([0, 0, 2, 1, 2, -1])}
    vec, used, support = model.feature_backoff(feats, 6)
    # q0: a=0,b=0 shared by users 0,1 (2 >= min_support) -> their mean
    np.testing.assert_allclose(vec[0], mean([0, 1]))
    assert used[0].tolist() == [True, True] and support[0] == 2
    # q1: a=1,b=0 nobody (user 6 is cold) -> size 1: a=1 has {3,4} (2), b=0 has {0,1} (2): tie -> a first
    np.testing.assert_allclose(vec[1], mean([3, 4]))
    assert used[1].tolist() == [True, False]
    # q2: a=0,b=2 only user 5 (1 < 2) -> a=0 {0,1,2,5} (4) beats b=2 {4,5} (2)
    np.testing.assert_allclose(vec[2], mean([0, 1, 2, 5]))
    assert support[2] == 4
    # q3: a unknown, b=1 -> users 2,3
    np.testing.assert_allclose(vec[3], mean([2, 3]))
    # q4: a=5 is out of range -> unknown; b=2 -> users 4,5
    np.testing.assert_allclose(vec[4], mean([4, 5]))
    # q5: nothing known -> global mean of the warm users
    np.testing.assert_allclose(vec[5], mean([0, 1, 2, 3, 4, 5]))
    assert not used[5].any() and support[5] == 6
    # query_vectors routes empty histories there, features=None -> global mean
    qv = model.query_vectors(sp.csr_matrix((2, 3), dtype=np.float32), None)
    np.testing.assert_allclose(qv, np.tile(mean([0, 1, 2, 3, 4, 5]), (2, 1)))


def test_feature_heuristic_min_support_backs_off_to_global_mean():
    model, U = _feature_model(min_support=5)
    vec, used, _ = model.feature_backoff({"a": np.array([1]), "b": np.array([0])}, 1)
    np.testing.assert_allclose(vec[0], U[:6].mean(axis=0))  # no subset has 5 users
    assert not used.any()


def test_query_vectors_routes_warm_fold_in_and_features():
    model, U = _feature_model()
    hist = sp.csr_matrix(np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32))
    users = np.array([2, 6, 6])  # warm user 2; cold user 6 with a history; cold user 6 without
    q = model.query_vectors(hist, {"a": np.array([0, 1, 1]), "b": np.array([1, 0, 0])}, users=users)
    np.testing.assert_array_equal(q[0], U[2])
    np.testing.assert_allclose(q[1], model.fold_in(hist[[1]])[0])
    np.testing.assert_allclose(q[2], U[[3, 4]].mean(axis=0))  # a=1 (tie with b=0, a first)


def test_from_factors_matches_fit(grouped):
    tr = grouped.train_set()
    m = WALS(factors=4, iterations=2).fit(tr, np.random.default_rng(0))
    again = WALS.from_factors(m.get_params(), m.user_factors_, m.item_factors_, tr,
                              {"history": m.history_, "train_seconds": 1.5})
    for k, v in m.state().items():
        np.testing.assert_array_equal(again.state()[k], v)
    assert again.history_ == m.history_ and again.train_seconds_ == 1.5
    with pytest.raises(ModelError, match="do not match factors"):
        WALS.from_factors({"factors": 5}, m.user_factors_, m.item_factors_, tr)


@pytest.mark.parametrize("kw, option", [({"w0": 1.0}, "--w0"), ({"w0": -0.1}, "--w0"), ({"reg": 0}, "--reg"),
                                        ({"factors": 0}, "--factors"), ({"solver": "lu"}, "--solver"),
                                        ({"cg_steps": 0}, "--cg-steps"), ({"iterations": 0}, "--iterations"),
                                        ({"num_threads": -1}, "--threads")])
def test_bad_hyper_parameters_name_the_option(kw, option):
    with pytest.raises(ModelError, match=option):
        WALS(**kw)


def test_empty_training_matrix_is_a_clear_error():
    with pytest.raises(ModelError, match="no interactions"):
        WALS().fit(_train(sp.csr_matrix((3, 4), dtype=np.float32)), np.random.default_rng(0))
