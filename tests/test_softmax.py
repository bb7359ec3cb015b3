"""Softmax DNN: finite-difference gradient checks, the bag never holds its target, sampled == full
softmax when every item is a negative, folding made measurable, training, determinism, store."""

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
from mfvsdnn.models.softmax import batch as batching
from mfvsdnn.models.softmax import kernels as softmax_kernels
from mfvsdnn.models.softmax import losses, tower
from mfvsdnn.models.softmax.model import SoftmaxDNN
from mfvsdnn.models.softmax.optim import Adagrad, Adam, RowGrad
from mfvsdnn.models.softmax.sampling import PopularitySampler, choose_hard
from mfvsdnn.models.store import load_run, save_run

N_ITEMS = 12
CARDS = {"country": 3, "age": 2}


def _tiny_problem(seed: int = 0, n_users: int = 7, B: int = 9):
    """A random csr of histories, a batch of (user, target) pairs drawn from it, feature codes."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(N_ITEMS, size=rng.integers(1, 6), replace=False)  # some users have 1 item
        rows += [u] * len(items)
        cols += list(items)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, N_ITEMS))
    X.sort_indices()
    pu = np.repeat(np.arange(n_users), np.diff(X.indptr))
    pick = rng.choice(X.nnz, size=B, replace=False)
    codes = [rng.integers(0, CARDS["age"] + 1, n_users), rng.integers(0, CARDS["country"] + 1, n_users)]
    return X, pu[pick], X.indices[pick].astype(np.int64), codes, rng


def _setup(negatives, hidden=(5, 4), tied=False, gravity=0.0, l2=0.0, seed=0):
    X, users, targets, codes, rng = _tiny_problem(seed)
    model = SoftmaxDNN(dim=4, hidden=hidden, feature_dim=3, negatives=negatives, tie_embeddings=tied,
                         gravity=gravity, l2=l2, init_scale=0.5)
    P = model.init_params(N_ITEMS, CARDS, rng, dtype=np.float64)
    for k in P:  # non-zero biases so that every entry matters
        if k.startswith("b"):
            P[k] += rng.normal(0, 0.1, P[k].shape)
    drop = np.zeros(len(users), dtype=bool)
    drop[0] = True  # one example with its history dropped -> the empty vector
    batch = batching.make_batch(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, targets, codes,
                         np.float64, drop)
    return model, P, batch, rng


def _dense(g, shape):
    if isinstance(g, RowGrad):
        out = np.zeros(shape)
        out[g.rows] = g.values
        return out
    return g


def _check_gradients(model, P, batch, sample=None, entries=6):
    cfg = model._loss_config()
    loss, grads = tower.loss_and_grads(P, batch, cfg, sample)
    rng = np.random.default_rng(1)
    assert set(grads) == set(P), set(P) ^ set(grads)
    for name, p in P.items():
        g = _dense(grads[name], p.shape)
        flat = rng.choice(p.size, size=min(entries, p.size), replace=False)
        # always include the largest-gradient entry so the check is not vacuous
        flat = np.unique(np.append(flat, np.argmax(np.abs(g).reshape(-1))))
        for f in flat:
            idx = np.unravel_index(f, p.shape)
            old = p[idx]
            eps = 1e-6
            p[idx] = old + eps
            lp, _ = tower.loss_and_grads(P, batch, cfg, sample)
            p[idx] = old - eps
            lm, _ = tower.loss_and_grads(P, batch, cfg, sample)
            p[idx] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - g[idx]) <= 1e-6 + 1e-5 * abs(num), (name, idx, num, g[idx])
        assert np.abs(g).max() > 0, f"{name}: gradient identically zero"
    return loss


def _uniform_sample(rng, targets, n=6):
    cand = rng.integers(0, N_ITEMS, n)
    cand[0] = targets[1]  # an accidental hit
    return batching.Sample(cand, np.full(n, -np.log(N_ITEMS)), np.full(len(targets), -np.log(N_ITEMS)))


def test_gradients_full_softmax():
    model, P, batch, _ = _setup("all")
    _check_gradients(model, P, batch)


def test_gradients_sampled_uniform():
    model, P, batch, rng = _setup(5)
    _check_gradients(model, P, batch, _uniform_sample(rng, batch.targets))


def test_gradients_sampled_popularity_with_logq():
    model, P, batch, rng = _setup(5)
    pop = PopularitySampler(rng.integers(0, 30, N_ITEMS))
    cand = pop.draw(rng, 6)
    cand[0] = batch.targets[2]
    sample = batching.Sample(cand, pop.log_q(cand), pop.log_q(batch.targets))
    assert np.ptp(sample.logq_c) > 0 or np.ptp(sample.logq_t) > 0  # the correction is not a constant here
    _check_gradients(model, P, batch, sample)


def test_gradients_sampled_hard():
    model, P, batch, rng = _setup(3)
    cand = rng.integers(0, N_ITEMS, 8)
    cand[1] = batch.targets[0]
    psi, _, _ = tower.tower_forward(P, batch, model._loss_config())
    mask = choose_hard(psi @ P["item_out"][cand].T, 3, rng)
    assert (mask.sum(axis=1) == 3).all()
    _check_gradients(model, P, batch, batching.Sample(cand, np.zeros(8), np.zeros(len(batch.targets)), mask))


def test_gradients_positives_only():
    model, P, batch, _ = _setup(0)
    _check_gradients(model, P, batch)


def test_gradients_gravity_with_positives_and_sampled():
    model, P, batch, _ = _setup(0, gravity=0.7)
    _check_gradients(model, P, batch)
    model, P, batch, rng = _setup(4, gravity=0.3)
    _check_gradients(model, P, batch, _uniform_sample(rng, batch.targets))


def test_gradients_tied_no_hidden_with_l2():
    model, P, batch, _ = _setup("all", hidden=(), tied=True, l2=0.1)
    assert "item_in" not in P
    _check_gradients(model, P, batch)


def test_gravity_value_matches_definition():
    rng = np.random.default_rng(3)
    psi, V = rng.normal(size=(5, 4)), rng.normal(size=(9, 4))
    loss, _, _ = losses.gravity_loss(psi, V, 0.5)
    expected = 0.5 * np.mean([p @ (V.T @ V / 9) @ p for p in psi])
    assert loss == pytest.approx(expected)


def test_target_never_in_its_own_bag():
    # user 0 has items {1, 2, 3}; user 1 has {4, 5}; user 2 only {6}
    X = sp.csr_matrix((np.ones(6), ([0, 0, 0, 1, 1, 2], [1, 2, 3, 4, 5, 6])), shape=(3, 8))
    users, targets = np.array([0, 0, 1, 2]), np.array([2, 1, 5, 6])
    b = batching.make_batch(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, targets, [], np.float64)
    E = np.eye(8)
    bag = np.zeros((4, 8))
    softmax_kernels.gather_weighted(b.bag_idx, b.bag_ex, b.bag_w, E, bag)
    np.testing.assert_allclose(bag[0], [0, .5, 0, .5, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(bag[1], [0, 0, .5, .5, 0, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(bag[2], [0, 0, 0, 0, 1, 0, 0, 0], atol=1e-12)
    assert bag[np.arange(3), targets[:3]].max() == 0.0
    assert b.empty.tolist() == [False, False, False, True]  # user 2's only item is the target


def test_sampled_with_every_item_as_negative_equals_full_softmax():
    rng = np.random.default_rng(5)
    psi, V = rng.normal(size=(6, 4)), rng.normal(size=(11, 4))
    t = rng.integers(0, 11, 6)
    lf, dpf, dVf = losses.full_softmax_loss(psi.copy(), V, t)
    cand = np.arange(11)
    logq = np.full(11, -np.log(11))
    ls, dps, dVt, dVc = losses.sampled_softmax_loss(psi, V, t, cand, logq[t], logq)
    assert ls == pytest.approx(lf, rel=1e-12)
    np.testing.assert_allclose(dps, dpf, atol=1e-12)
    dV = dVc.copy()
    np.add.at(dV, t, dVt)  # reference only (the model uses a numba scatter)
    np.testing.assert_allclose(dV, dVf, atol=1e-12)


def test_full_softmax_chunking_does_not_change_the_result():
    rng = np.random.default_rng(6)
    psi, V, t = rng.normal(size=(7, 3)), rng.normal(size=(20, 3)), rng.integers(0, 20, 7)
    a = losses.full_softmax_loss(psi, V, t)
    b = losses.full_softmax_loss(psi, V, t, max_chunk_elems=40)  # 2 rows per chunk
    assert a[0] == pytest.approx(b[0])
    np.testing.assert_allclose(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2])


def test_lazy_adam_rows_equal_dense_adam_when_every_row_is_touched():
    rng = np.random.default_rng(0)
    p1 = rng.normal(size=(5, 3)).astype(np.float32)
    p2 = p1.copy()
    a1, a2 = Adam(lr=0.1), Adam(lr=0.1)
    for _ in range(3):
        g = rng.normal(size=(5, 3)).astype(np.float32)
        a1.step({"x": p1}, {"x": g})
        a2.step({"x": p2}, {"x": RowGrad(np.arange(5), g)})
    np.testing.assert_allclose(p1, p2, rtol=1e-6)
    # untouched rows do not move; Adagrad too
    before = p2.copy()
    Adagrad(lr=0.1).step({"x": p2}, {"x": RowGrad(np.array([1]), np.ones((1, 3), np.float32))})
    assert (p2[[0, 2, 3, 4]] == before[[0, 2, 3, 4]]).all() and (p2[1] < before[1]).all()


def test_bad_hyper_parameters_are_model_errors():
    for kw in ({"negatives": "foo"}, {"negatives": -1}, {"sampler": "best"}, {"hidden": "a"},
               {"optimizer": "sgd"}, {"lr": 0}, {"dim": 0}, {"hidden": "8,-1"}):
        with pytest.raises(ModelError):
            SoftmaxDNN(**kw)
    assert SoftmaxDNN(negatives="all").negatives == "all"
    assert SoftmaxDNN(negatives="20").negatives == 20
    assert SoftmaxDNN(hidden="").hidden == ()


# ------------------------------------------------------------------------------------------------
# training on small grouped synthetic data


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("sm") / "syn.csv"
    write_csv(SyntheticConfig(users=600, items=160, groups=4, cross_rate=0.05, mean_interactions=15, seed=1), path)
    return api.prepare_split(path, ColumnSpec(user_features=("country", "age_band")), SplitConfig(seed=3))


def _leakage(model, split) -> tuple[float, float]:
    """(mean leakage@20 of warm eval users, natural cross-group rate of their test interactions)."""
    ds = split.dataset
    users = split.warm_eval_users
    known = split.known()[users]
    q = model.query_vectors(known, {f: c[users] for f, c in ds.features.items()}, users=users)
    tk = top_k(q, model.item_vectors, known, 20)
    ug = ds.user_groups[users]
    leak = (ds.item_groups[tk] != ug[:, None]).mean()
    test = split.test[users]
    rows = np.repeat(np.arange(len(users)), np.diff(test.indptr))
    natural = (ds.item_groups[test.indices] != ug[rows]).mean()
    return float(leak), float(natural)


FAST = {"dim": 16, "hidden": (32,), "epochs": 6, "batch_size": 128, "lr": 0.01, "patience": 0, "min_steps": 0}


def test_folding_positives_only_leaks_sampled_and_full_do_not(split):
    tr = split.train_set()
    out = {}
    for neg in (0, "all", 20):
        m = SoftmaxDNN(negatives=neg, **FAST).fit(tr, np.random.default_rng(0))
        out[neg] = _leakage(m, split)
    natural = out["all"][1]
    assert natural < 0.15
    assert out[0][0] > natural + 0.35, out  # folding: groups mixed in the top 20
    assert out["all"][0] < natural + 0.1, out
    assert out[20][0] < natural + 0.1, out


def test_training_reduces_loss_same_seed_same_model_and_round_trip(split, tmp_path):
    tr = split.train_set()
    kw = dict(FAST, epochs=3)
    m1 = SoftmaxDNN(**kw).fit(tr, np.random.default_rng(7))
    m2 = SoftmaxDNN(**kw).fit(tr, np.random.default_rng(7))
    losses = [h["loss"] for h in m1.history_]
    assert losses[-1] < losses[0]
    assert [h.keys() for h in m1.history_][0] >= {"epoch", "loss", "valid_recall@20", "seconds"}
    for k in m1.params_:
        np.testing.assert_array_equal(m1.params_[k], m2.params_[k])
    m3 = SoftmaxDNN(**kw).fit(tr, np.random.default_rng(8))
    assert not np.array_equal(m1.item_vectors, m3.item_vectors)

    save_run(tmp_path / "run", m1, split, seed=7)
    run = load_run(tmp_path / "run")
    assert run.kind == "softmax" and run.model.get_params() == m1.get_params()
    users = split.warm_eval_users[:20]
    feats = {f: c[users] for f, c in split.dataset.features.items()}
    np.testing.assert_array_equal(run.model.query_vectors(split.known()[users], feats),
                                  m1.query_vectors(split.known()[users], feats))
    np.testing.assert_array_equal(run.model.item_vectors, m1.item_vectors)


def test_early_stopping_keeps_the_best_epoch(split):
    tr = split.train_set()
    from mfvsdnn.evaluation.evaluator import validation_recall

    m = SoftmaxDNN(**dict(FAST, epochs=8, lr=0.05, patience=2)).fit(
        tr, np.random.default_rng(0), validate=lambda model: validation_recall(model, tr, k=20))
    rec = [h["valid_recall@20"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmax(rec)) + 1
    assert len(rec) == 8 or len(rec) - m.best_epoch_ == 2
    # the kept parameters are the best epoch's (same validation users: the first 5000 = all here)
    assert validation_recall(m, tr, k=20) == pytest.approx(max(rec))


def test_cold_queries_features_only_unknown_codes_and_empty_everything(split):
    tr = split.train_set()
    m = SoftmaxDNN(**dict(FAST, epochs=3, history_dropout=0.3)).fit(tr, np.random.default_rng(0))
    empty = sp.csr_matrix((4, tr.n_items), dtype=np.float32)
    feats = {"country": np.array([0, 1, -1, 0]), "age_band": np.array([0, 0, -1, -1])}
    q = m.query_vectors(empty, feats)
    assert q.shape == (4, 16) and q.dtype == np.float32 and np.isfinite(q).all()
    assert not np.allclose(q[0], q[1])  # features change the query
    np.testing.assert_allclose(m.query_vectors(empty[:1], None)[0], q[2], rtol=1e-5, atol=1e-6)  # None: unknown
    # the features-only query of a group's home country ranks its own group's items first
    ds = split.dataset
    home = {v: i for i, v in enumerate(ds.feature_values["country"])}
    for g, name in enumerate(ds.group_names):
        code = home.get(f"c{name[1:]}_a")
        if code is None:
            continue
        qq = m.query_vectors(empty[:1], {"country": np.array([code])})
        top = top_k(qq, m.item_vectors, None, 10)[0]
        assert (ds.item_groups[top] == g).mean() >= 0.8


def test_trainset_without_features_or_validation():
    X = sp.random(30, 15, density=0.3, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = 1
    users = np.flatnonzero(np.diff(X.indptr))
    tr = TrainSet(matrix=X, users=users)
    m = SoftmaxDNN(dim=4, hidden=(), epochs=2, negatives=5, sampler="hard", hard_pool=10)
    m.fit(tr, np.random.default_rng(0))
    assert np.isnan(m.history_[0]["valid_recall@20"])
    assert m.query_vectors(X[:3]).shape == (3, 4)
    for sampler in ("popularity", "uniform"):
        SoftmaxDNN(dim=4, epochs=1, negatives=5, sampler=sampler, optimizer="adagrad",
                     gravity=0.1).fit(tr, np.random.default_rng(0))


def test_vectorised_float32_exp_is_accurate():
    from mfvsdnn.models.softmax import kernels as K

    x = np.linspace(-87.0, 0.0, 1_000_003).astype(np.float32)  # dense grid, not a multiple of any block
    e = x.copy()
    K.exp_shift_f32(e, np.float32(0.0))
    rel = np.abs(e / np.exp(x.astype(np.float64)) - 1.0)
    assert rel.max() < 2e-7
    e = np.array([3.0, 1.0, -100.0], np.float32)  # shifted; far below the clamp stays finite and tiny
    K.exp_shift_f32(e, np.float32(3.0))
    np.testing.assert_allclose(e[:2], np.exp([0.0, -2.0]), rtol=2e-7)
    assert 0.0 <= e[2] < 1e-37
    z = np.array([-1.0, 2.5, -7.0, 2.25], np.float32)
    assert K._softmax_xent_f32_ser(z[None, :].copy(), np.array([0]), 1.0)[0] == pytest.approx(
        np.log(np.exp(z.astype(np.float64)).sum()) + 1.0, rel=1e-6)  # the max is found wherever it is


@pytest.mark.parametrize("kernel", ["_softmax_xent_f32_ser", "_softmax_xent_f32_par"])
def test_fused_float32_softmax_matches_float64(kernel):
    from mfvsdnn.models.softmax import kernels as K

    rng = np.random.default_rng(0)
    Z = (rng.normal(size=(7, 5003)) * 8.0).astype(np.float32)  # rows longer than one exp block
    Z[3, :] = -1e3  # constant row: uniform softmax
    Z[4, 17] = 60.0  # one dominant logit: others underflow
    t = rng.integers(0, Z.shape[1], 7)
    Z64 = Z.astype(np.float64)
    p = np.exp(Z64 - Z64.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = np.log(np.exp(Z64 - Z64.max(axis=1, keepdims=True)).sum(axis=1)) + Z64.max(axis=1) \
        - Z64[np.arange(7), t]
    G = Z.copy()
    got = getattr(K, kernel)(G, t, 1.0)
    G[np.arange(7), t] += 1.0  # back to softmax(Z)
    np.testing.assert_allclose(G.sum(axis=1, dtype=np.float64), 1.0, atol=1e-5)
    np.testing.assert_allclose(G, p, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got, loss, rtol=1e-5, atol=1e-5)
    # the dispatcher takes the same path for float32 and the exact one for float64
    G2 = Z.copy()
    np.testing.assert_allclose(K.softmax_xent_inplace(G2, t, 1.0), got, rtol=1e-6)
    G64 = Z64.copy()
    np.testing.assert_allclose(K.softmax_xent_inplace(G64, t, 1.0), loss, rtol=1e-12)
