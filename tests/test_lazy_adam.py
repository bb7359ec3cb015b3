"""Lazy Adam / Adagrad row updates (interleaved moments, vectorisable kernels) and the row dedup:
against slow numpy references, over many steps with repeated rows, in float32 and float64; a sampled
fit equal to one with the reference optimiser and the sorted merge; saved runs unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from mfvsdnn import api
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.softmax import batch as batching
from mfvsdnn.models.softmax import kernels, optim_kernels
from mfvsdnn.models.softmax import model as softmax_model
from mfvsdnn.models.softmax.optim import Adagrad, Adam, RowGrad
from mfvsdnn.models.store import load_run

B1, B2, EPS = 0.9, 0.999, 1e-8


def _lr_t(lr: float, t: int) -> float:
    return lr * np.sqrt(1.0 - B2 ** t) / (1.0 - B1 ** t)


def _ref_adam_rows(p, rows, g, m, v, lr_t):
    """One lazy Adam step on rows, in numpy: float64 arithmetic, rounded to the table's dtype on store
    (the kernel's order of operations; m, v (n, d) separate tables as the previous kernel had them)."""
    g64 = g.astype(np.float64)
    mi = B1 * m[rows].astype(np.float64) + (1.0 - B1) * g64
    vi = B2 * v[rows].astype(np.float64) + (1.0 - B2) * g64 * g64
    m[rows], v[rows] = mi, vi
    p[rows] = p[rows].astype(np.float64) - lr_t * mi / (np.sqrt(vi) + EPS)


def _steps(rng, n, d, dtype, n_steps):
    """Row gradients with rows repeated across steps: each step a random distinct subset, shuffled."""
    for _ in range(n_steps):
        rows = rng.choice(n, size=int(rng.integers(1, n // 2)), replace=False)
        yield rows.astype(np.int64), rng.normal(size=(len(rows), d)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lazy_adam_rows_equal_the_numpy_reference_and_untouched_rows_stay_put(dtype):
    rng = np.random.default_rng(3)
    n, d = 40, 7
    p = rng.normal(size=(n, d)).astype(dtype)
    p_ref, m_ref, v_ref = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = Adam(lr=0.05)
    for t, (rows, g) in enumerate(_steps(rng, n, d, dtype, 60), start=1):
        before, mv_before = p.copy(), opt.mv.get("E", np.zeros((n, 2, d), dtype)).copy()
        opt.step({"E": p}, {"E": RowGrad(rows, g)})
        _ref_adam_rows(p_ref, rows, g, m_ref, v_ref, _lr_t(0.05, t))
        np.testing.assert_array_equal(p, p_ref)
        np.testing.assert_array_equal(opt.mv["E"][:, 0], m_ref)
        np.testing.assert_array_equal(opt.mv["E"][:, 1], v_ref)
        untouched = np.setdiff1d(np.arange(n), rows)
        assert (p[untouched] == before[untouched]).all()
        assert (opt.mv["E"][untouched] == mv_before[untouched]).all()  # not decayed either
    assert opt.mv["E"].dtype == dtype and opt.mv["E"].shape == (n, 2, d) and "E" not in opt.m
    assert p.flags.c_contiguous and p.shape == (n, d)  # the parameter stays an ordinary table


def test_lazy_adam_bias_correction_counts_global_steps_not_row_updates():
    """A row first touched at step 5 gets lr_t of step 5 (the global count), not of its first update."""
    p = np.zeros((3, 2), dtype=np.float64)
    opt = Adam(lr=0.1)
    for _ in range(4):
        opt.step({"E": p, "b": np.zeros(1)}, {"E": RowGrad(np.array([0]), np.ones((1, 2))), "b": np.ones(1)})
    opt.step({"E": p}, {"E": RowGrad(np.array([2]), np.ones((1, 2)))})
    m, v = 0.1, 0.001  # first update of row 2: m = (1-b1) g, v = (1-b2) g^2
    np.testing.assert_allclose(p[2], -_lr_t(0.1, 5) * m / (np.sqrt(v) + EPS), rtol=1e-15)
    assert (p[1] == 0).all()


def test_dense_and_row_gradients_on_one_table_follow_the_same_maths():
    """Dense steps, then row steps (the dense moments move into the interleaved array), then a dense
    step again (a row update of every row): the same as the reference with every row touched densely."""
    rng = np.random.default_rng(5)
    n, d = 12, 3
    p = rng.normal(size=(n, d))
    p_ref, m_ref, v_ref = p.copy(), np.zeros_like(p), np.zeros_like(p)
    opt = Adam(lr=0.02)
    all_rows = np.arange(n)
    for t in range(1, 9):
        if t <= 3 or t == 8:
            g = rng.normal(size=(n, d))
            opt.step({"E": p}, {"E": g})
            _ref_adam_rows(p_ref, all_rows, g, m_ref, v_ref, _lr_t(0.02, t))
        else:
            rows = rng.choice(n, size=5, replace=False)
            g = rng.normal(size=(5, d))
            opt.step({"E": p}, {"E": RowGrad(rows, g)})
            _ref_adam_rows(p_ref, rows, g, m_ref, v_ref, _lr_t(0.02, t))
        if t == 3:
            assert "E" in opt.m and "E" not in opt.mv  # dense storage while only dense gradients came
    np.testing.assert_allclose(p, p_ref, rtol=1e-12)  # the dense kernel is fastmath: not bit-equal
    np.testing.assert_allclose(opt.mv["E"][:, 0], m_ref, rtol=1e-12)
    assert "E" not in opt.m and "E" not in opt.v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adagrad_rows_equal_the_numpy_reference(dtype):
    rng = np.random.default_rng(4)
    n, d = 30, 4
    p = rng.normal(size=(n, d)).astype(dtype)
    p_ref, a_ref = p.copy(), np.full_like(p, 0.1)
    opt = Adagrad(lr=0.05)
    for rows, g in _steps(rng, n, d, dtype, 40):
        before = p.copy()
        opt.step({"E": p}, {"E": RowGrad(rows, g)})
        a = a_ref[rows] + g * g  # in the table's dtype (no float64 operand), as the kernel
        a_ref[rows] = a
        p_ref[rows] = p_ref[rows].astype(np.float64) - 0.05 * g.astype(np.float64) / (np.sqrt(a).astype(np.float64) + 1e-8)
        np.testing.assert_array_equal(p, p_ref)
        np.testing.assert_array_equal(opt.a["E"], a_ref)
        untouched = np.setdiff1d(np.arange(n), rows)
        assert (p[untouched] == before[untouched]).all()


def test_unique_first_known_answer_and_edge_cases():
    uniq, inv = optim_kernels.unique_first(np.array([5, 3, 5, 0, 3, 9], dtype=np.int64))
    assert uniq.tolist() == [5, 3, 0, 9] and inv.tolist() == [0, 1, 0, 2, 1, 3]
    uniq, inv = optim_kernels.unique_first(np.zeros(0, dtype=np.int64))
    assert len(uniq) == 0 and len(inv) == 0
    uniq, inv = optim_kernels.unique_first(np.array([7], dtype=np.int64))
    assert uniq.tolist() == [7] and inv.tolist() == [0]


@pytest.mark.parametrize("keys", [
    np.random.default_rng(0).integers(0, 200_000, 5000),       # the item table of a sampled step
    np.random.default_rng(1).integers(0, 11, 256),             # a feature table: few distinct rows
    np.arange(3000)[::-1].copy(),                              # all distinct
    np.repeat(np.arange(0, 2**40, 2**30), 7),                  # equal low bits: a poor hash would pile up
    np.full(1000, 123456789),                                  # one row
])
def test_unique_first_is_np_unique_in_first_occurrence_order(keys):
    keys = keys.astype(np.int64)
    uniq, inv = optim_kernels.unique_first(keys)
    ref, first = np.unique(keys, return_index=True)
    np.testing.assert_array_equal(uniq, keys[np.sort(first)])
    np.testing.assert_array_equal(np.sort(uniq), ref)
    np.testing.assert_array_equal(uniq[inv], keys)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_merge_equals_add_at(dtype):
    rng = np.random.default_rng(2)
    n, d, B = 50, 4, 9
    rows_a, vals_a = rng.integers(0, n, 20), rng.normal(size=(20, d))
    idx, ex, w, G = rng.integers(0, n, 30), rng.integers(0, B, 30), rng.normal(size=30), rng.normal(size=(B, d))
    r = batching._Rows()
    r.add(rows_a, vals_a)
    r.add_weighted(idx, ex, w, G)
    g = r.merge(d, dtype)
    ref = np.zeros((n, d))
    np.add.at(ref, rows_a, vals_a)
    np.add.at(ref, idx, w[:, None] * G[ex])
    touched = np.union1d(rows_a, idx)
    assert len(np.unique(g.rows)) == len(g.rows) and set(g.rows.tolist()) == set(touched.tolist())
    assert g.values.dtype == dtype
    np.testing.assert_allclose(g.values, ref[g.rows], rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6)


class _ReferenceAdam(Adam):
    """The previous optimiser: separate (n, d) moments for every table, rows in numpy (the maths of the
    old kernel), dense parameters through the unchanged dense kernel."""

    def step(self, params, grads):
        self.t += 1
        lr_t = _lr_t(self.lr, self.t)
        for name, g in grads.items():
            p = params[name]
            if name not in self.m:
                self.m[name], self.v[name] = np.zeros_like(p), np.zeros_like(p)
            if isinstance(g, RowGrad):
                _ref_adam_rows(p, g.rows, g.values.astype(p.dtype), self.m[name], self.v[name], lr_t)
            else:
                kernels.adam_dense(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1),
                                   self.m[name].reshape(-1), self.v[name].reshape(-1), lr_t, self.b1, self.b2,
                                   self.eps)


def _sorted_merge(self, d, dtype):
    """The previous merge: rows deduplicated by np.unique (sorted)."""
    uniq, inv = np.unique(np.concatenate([p[1] for p in self.parts]), return_inverse=True)
    out = np.zeros((len(uniq), d), dtype=dtype)
    o = 0
    for p in self.parts:
        k = len(p[1])
        if p[0] == "rows":
            kernels.scatter_rows(inv[o:o + k], np.ascontiguousarray(p[2], dtype=dtype), out)
        else:
            kernels.scatter_weighted(inv[o:o + k], p[2], p[3].astype(dtype), np.ascontiguousarray(p[4], dtype=dtype),
                                     out)
        o += k
    return RowGrad(uniq, out)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    d = tmp_path_factory.mktemp("lazy_adam")
    write_csv(SyntheticConfig(users=200, items=60, groups=3, seed=8), d / "s.csv")
    return api.prepare_split(d / "s.csv", ColumnSpec(user_features=("country",)), SplitConfig(seed=1))


PARAMS = {"dim": 4, "hidden": [6], "feature_dim": 3, "epochs": 2, "min_steps": 0, "negatives": 8, "l2": 0.01}


@pytest.mark.parametrize("extra", [{}, {"tie_embeddings": True}, {"item_buckets": 20, "hash_output": True}])
def test_a_sampled_fit_equals_the_reference_optimiser_and_sorted_merge(split, monkeypatch, extra):
    params = {**PARAMS, **extra}
    new = api.train_model("softmax", split, params, seed=3, out=None).model
    with monkeypatch.context() as mp:
        mp.setattr(softmax_model, "make_optimizer", lambda name, lr: _ReferenceAdam(lr=lr))
        mp.setattr(batching._Rows, "merge", _sorted_merge)
        old = api.train_model("softmax", split, params, seed=3, out=None).model
    assert new.steps_ == old.steps_ > 0 and set(new.params_) == set(old.params_)
    for k, v in new.params_.items():
        # equal up to float32 rounding: only the order of the L2 term's sum differs
        np.testing.assert_allclose(v, old.params_[k], rtol=1e-5, atol=1e-7, err_msg=k)
        assert type(v) is np.ndarray and v.flags.c_contiguous and v.dtype == np.float32, k
    assert new.history_[-1]["loss"] == pytest.approx(old.history_[-1]["loss"], rel=1e-5)


@pytest.mark.parametrize("extra", [{}, {"tie_embeddings": True}])
def test_saved_and_loaded_sampled_models_are_unchanged(split, tmp_path, extra):
    trained = api.train_model("softmax", split, {**PARAMS, **extra}, seed=4, out=tmp_path / "sm")
    run = load_run(trained.run_dir)
    mine, back = trained.model.state(), run.model.state()
    assert set(mine) == set(back)
    for k, v in mine.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    np.testing.assert_array_equal(run.model.item_vectors, trained.model.item_vectors)


def test_positive_hits_reuses_its_scratch_and_stays_exact_over_calls():
    """The per-thread chain heads are reused between calls (and between catalogue sizes): every call
    still equals the brute-force mask, and the scratch is all -1 again after each."""
    import scipy.sparse as sp

    from mfvsdnn.models.softmax import sampling

    rng = np.random.default_rng(9)
    for n_items in (30, 30, 500, 30):
        X = sp.random(40, n_items, density=0.2, format="csr", random_state=int(rng.integers(1 << 30)))
        X.sort_indices()
        for _ in range(3):
            users, cand = rng.integers(0, 40, 25), rng.integers(0, n_items, 17)  # repeated candidates too
            hits = sampling.positive_hits(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, cand, n_items)
            dense = X.toarray() != 0
            np.testing.assert_array_equal(hits, dense[users][:, cand])
            assert (sampling._item_heads(n_items) == -1).all()


def test_row_updates_of_a_non_contiguous_table_are_still_exact():
    """The prefetch hints assume C order; on another layout they point elsewhere, which must only
    cost time (a prefetch never faults or writes), never change the update."""
    rng = np.random.default_rng(12)
    n, d = 64, 5
    p = np.asfortranarray(rng.normal(size=(n, d)))
    p_ref, m_ref, v_ref = np.ascontiguousarray(p), np.zeros((n, d)), np.zeros((n, d))
    a, a_ref = np.asfortranarray(np.full((n, d), 0.1)), np.full((n, d), 0.1)
    q = np.asfortranarray(rng.normal(size=(n, d)))
    q_ref = np.ascontiguousarray(q)
    opt, ada = Adam(lr=0.01), Adagrad(lr=0.01)
    for t, (rows, g) in enumerate(_steps(rng, n, d, np.float64, 20), start=1):
        opt.step({"E": p}, {"E": RowGrad(rows, g)})
        _ref_adam_rows(p_ref, rows, g, m_ref, v_ref, _lr_t(0.01, t))
        ada.a["E"] = a
        ada.step({"E": q}, {"E": RowGrad(rows, g)})
        a_ref[rows] += g * g
        q_ref[rows] -= 0.01 * g / (np.sqrt(a_ref[rows]) + 1e-8)
    np.testing.assert_array_equal(p, p_ref)
    np.testing.assert_array_equal(q, q_ref)
