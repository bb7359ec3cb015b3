"""The softmax DNN at scale: in-batch and mixed negatives (gradients, the full-softmax identity, the
logQ sign), the user's positives never sampled as negatives, the hashing trick (equivalence without
collisions, stability, gradients, save/load, cold users), folding with the new samplers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from test_softmax import (  # noqa: F401
    CARDS,
    FAST,
    N_ITEMS,
    _check_gradients,
    _dense,
    _leakage,
    _setup,
    _tiny_problem,
    split,
)

from mfvsdnn.core.errors import ModelError
from mfvsdnn.data.split import TrainSet
from mfvsdnn.models.params import HYPER_PARAMETERS
from mfvsdnn.models.softmax import batch as batching
from mfvsdnn.models.softmax import hashing, losses, sampling, tower
from mfvsdnn.models.softmax.model import SoftmaxDNN
from mfvsdnn.models.store import load_run, save_run

# ------------------------------------------------------------------------------------------------
# in-batch and mixed negatives


def _in_batch_sample(batch, users, X, rng, pool=None, n_pool=0):
    counts = rng.integers(1, 9, N_ITEMS)
    s = sampling.InBatchSampler(counts, pool)
    cand, lq_c, lq_t = s.propose(rng, batch.targets, n_pool)
    hits = sampling.positive_hits(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, cand, N_ITEMS)
    return batching.Sample(cand, lq_c, lq_t, exclude=hits)


@pytest.mark.parametrize("pool", [None, "uniform", "popularity"])
def test_gradients_in_batch_and_mixed(pool):
    model, P, batch, rng = _setup(5)
    X, users, *_ = _tiny_problem(0)
    sampler = {None: None, "uniform": sampling.UniformSampler(N_ITEMS),
               "popularity": sampling.PopularitySampler(rng.integers(0, 20, N_ITEMS))}[pool]
    sample = _in_batch_sample(batch, users, X, rng, sampler, 0 if pool is None else 7)
    assert np.ptp(sample.logq_c) > 0  # the correction is not a constant
    assert sample.exclude.sum() > len(users)  # other positives than the targets are excluded
    _check_gradients(model, P, batch, sample)


def test_mixed_log_q_is_the_expected_count_under_the_mixture():
    counts = np.array([6.0, 3.0, 1.0, 0.0])
    s = sampling.InBatchSampler(counts, sampling.UniformSampler(4))
    cand, lq_c, lq_t = s.propose(np.random.default_rng(0), np.array([0, 1, 0]), 5)
    assert cand[:3].tolist() == [0, 1, 0] and len(cand) == 8
    q = counts / counts.sum()
    np.testing.assert_allclose(lq_c, np.log(3 * q[cand] + 5 * 0.25))
    np.testing.assert_allclose(lq_t, np.log(3 * q[[0, 1, 0]] + 5 * 0.25))
    alone = sampling.InBatchSampler(counts)
    _, lq_c, _ = alone.propose(np.random.default_rng(0), np.array([0, 1, 2]), 5)
    np.testing.assert_allclose(lq_c, np.log(3 * q[[0, 1, 2]]))  # no pool: the pool size is ignored


def test_in_batch_holding_every_item_once_is_the_full_softmax_of_the_corrected_logits():
    rng = np.random.default_rng(3)
    n, d = 9, 4
    psi, V = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    t = rng.permutation(n)  # the batch holds every item once
    counts = rng.integers(1, 30, n)
    s = sampling.InBatchSampler(counts)
    cand, lq_c, lq_t = s.propose(rng, t, 0)
    ls, dps, dVt, dVc = losses.sampled_softmax_loss(psi, V, t, cand, lq_t, lq_c)
    logits = psi @ V.T - np.log(n * counts / counts.sum())[None, :]  # full softmax of psi.V_j - log Q(j)
    ref = np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(n), t])
    assert ls == pytest.approx(ref, rel=1e-12)
    # equal counts: log Q is a constant and in-batch is exactly the full softmax, gradients included
    flat = sampling.InBatchSampler(np.full(n, 4))
    cand, lq_c, lq_t = flat.propose(rng, t, 0)
    ls, dps, dVt, dVc = losses.sampled_softmax_loss(psi, V, t, cand, lq_t, lq_c)
    lf, dpf, dVf = losses.full_softmax_loss(psi.copy(), V, t)
    assert ls == pytest.approx(lf, rel=1e-12)
    np.testing.assert_allclose(dps, dpf, atol=1e-12)
    dV = np.zeros_like(V)
    np.add.at(dV, cand, dVc)
    np.add.at(dV, t, dVt)
    np.testing.assert_allclose(dV, dVf, atol=1e-12)


def _popularity_skewed(seed=0, n_users=400, n_items=40, per_user=8, held=3):
    """Users draw items from one Zipf popularity (no personal taste): the best ranking is popularity."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1) ** 1.2
    p /= p.sum()
    train_rows, train_cols, test = [], [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user + held, replace=False, p=p)
        train_rows += [u] * per_user
        train_cols += list(items[:per_user])
        test.append(set(items[per_user:].tolist()))
    X = sp.csr_matrix((np.ones(len(train_rows), dtype=np.float32), (train_rows, train_cols)),
                      shape=(n_users, n_items))
    return TrainSet(matrix=X, users=np.arange(n_users)), test


def _recall_at(model, tr, test, k=5):
    X = tr.matrix
    scores = model.query_vectors(X) @ model.item_vectors.T
    scores[X.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    return np.mean([len(set(top[u].tolist()) & test[u]) / len(test[u]) for u in range(len(test))])


def test_logq_sign_the_wrong_sign_loses_recall(monkeypatch):
    tr, test = _popularity_skewed()
    kw = dict(dim=8, hidden=(), epochs=6, batch_size=64, lr=0.02, patience=0, negatives=1, sampler="in-batch",
              history_dropout=0.0)
    right = _recall_at(SoftmaxDNN(**kw).fit(tr, np.random.default_rng(0)), tr, test)
    log_q = sampling.InBatchSampler.log_q
    monkeypatch.setattr(sampling.InBatchSampler, "log_q", lambda self, items, b, n: -log_q(self, items, b, n))
    wrong = _recall_at(SoftmaxDNN(**kw).fit(tr, np.random.default_rng(0)), tr, test)
    monkeypatch.setattr(sampling.InBatchSampler, "log_q", lambda self, items, b, n: 0.0 * log_q(self, items, b, n))
    none = _recall_at(SoftmaxDNN(**kw).fit(tr, np.random.default_rng(0)), tr, test)
    assert right > wrong + 0.1, (right, none, wrong)
    assert right >= none - 0.02, (right, none, wrong)


# ------------------------------------------------------------------------------------------------
# the user's positives are never negatives


def test_positive_hits_matches_a_brute_force_check():
    X, users, _, _, rng = _tiny_problem(2)
    cand = rng.integers(0, N_ITEMS, 30)
    hits = sampling.positive_hits(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, cand, N_ITEMS)
    dense = X.toarray() > 0
    np.testing.assert_array_equal(hits, dense[users][:, cand])


@pytest.mark.parametrize("sampler", sampling.SAMPLERS)
def test_no_sampled_negative_is_a_training_positive(sampler, monkeypatch):
    rng = np.random.default_rng(4)
    X = sp.random(40, 25, density=0.3, format="csr", random_state=1, dtype=np.float32)
    X.data[:] = 1
    tr = TrainSet(matrix=X, users=np.flatnonzero(np.diff(X.indptr)))
    seen: list[tuple] = []
    step, loss = SoftmaxDNN._train_step, tower.sampled_softmax_loss

    def spy_step(self, P, opt, cfg, indptr, indices, codes, users, targets, *a, **k):
        seen.append((users.copy(),))
        return step(self, P, opt, cfg, indptr, indices, codes, users, targets, *a, **k)

    def spy_loss(psi, V, t, cand, logq_t, logq_c, mask=None):
        seen[-1] += (cand.copy(), None if mask is None else mask.copy())
        return loss(psi, V, t, cand, logq_t, logq_c, mask)

    monkeypatch.setattr(SoftmaxDNN, "_train_step", spy_step)
    monkeypatch.setattr(tower, "sampled_softmax_loss", spy_loss)
    SoftmaxDNN(dim=4, hidden=(), epochs=2, batch_size=16, negatives=8, sampler=sampler, hard_pool=20,
               patience=0).fit(tr, rng)
    dense = X.toarray() > 0
    used = 0
    for users, cand, mask in seen:
        positive = dense[users][:, cand]
        assert not (positive & mask).any()
        used += mask.sum()
    assert used > 0


# ------------------------------------------------------------------------------------------------
# hashing


def test_hash_rows_are_a_stable_keyed_hash_of_the_raw_id():
    rows = hashing.hash_rows(["i1", "i2", "movie 7"], 1000, 2, 12345, "item_in")
    assert rows.tolist() == hashing.hash_rows(np.array(["i1", "i2", "movie 7"]), 1000, 2, 12345, "item_in").tolist()
    # fixed values: the same on every machine and in every run (blake2b, not Python's string hash)
    assert rows.tolist() == EXPECTED_ROWS, rows.tolist()
    assert rows.tolist() != hashing.hash_rows(["i1", "i2", "movie 7"], 1000, 2, 12346, "item_in").tolist()
    assert rows.tolist() != hashing.hash_rows(["i1", "i2", "movie 7"], 1000, 2, 12345, "item_out").tolist()


EXPECTED_ROWS = [[324, 726], [915, 750], [255, 478]]


def _collision_free_key(labels, buckets):
    for key in range(100):
        if hashing.collisions(hashing.hash_rows(labels, buckets, 1, key, "item_in")) == 0 and \
                hashing.collisions(hashing.hash_rows(labels, buckets, 1, key, "item_out")) == 0 and \
                len(np.unique(hashing.hash_rows(labels, buckets, 1, key, "item_in"))) == len(labels) and \
                len(np.unique(hashing.hash_rows(labels, buckets, 1, key, "item_out"))) == len(labels):
            return key
    raise AssertionError("no collision-free key")


@pytest.mark.parametrize("negatives", ["all", 5, 0])
def test_hashing_without_collisions_equals_the_unhashed_model(negatives):
    plain, P, batch, rng = _setup(negatives, gravity=0.3 if negatives == 0 else 0.0)
    hashed = SoftmaxDNN(dim=4, hidden=(5, 4), feature_dim=3, negatives=negatives, init_scale=0.5,
                        gravity=plain.gravity, item_buckets=500, item_hashes=1, hash_output=True)
    labels = [f"item{i}" for i in range(N_ITEMS)]
    hashed.init_hashing(labels, {}, _collision_free_key(labels, 500))
    hashed.init_params(N_ITEMS, CARDS, np.random.default_rng(9), dtype=np.float64)
    rows_in, rows_out = hashed.hash_rows_["item_hash_in"][:, 0], hashed.hash_rows_["item_hash_out"][:, 0]
    Q = {k: v.copy() for k, v in P.items()}
    Q["item_in"] = hashed.params_["item_in"]
    Q["item_out"] = hashed.params_["item_out"]
    Q["item_in"][rows_in] = P["item_in"]
    Q["item_out"][rows_out] = P["item_out"]
    hashed.params_ = Q
    sample = None
    if negatives == 5:
        cand = rng.integers(0, N_ITEMS, 6)
        sample = batching.Sample(cand, np.full(6, -np.log(N_ITEMS)), np.full(len(batch.targets), -np.log(N_ITEMS)))
    l1, g1 = tower.loss_and_grads(P, batch, plain._loss_config(), sample)
    l2, g2 = tower.loss_and_grads(Q, batch, hashed._loss_config(), sample)
    assert l2 == pytest.approx(l1, rel=1e-12)
    for name in P:
        a, b = _dense(g1[name], P[name].shape), _dense(g2[name], Q[name].shape)
        if name in ("item_in", "item_out"):
            rows = rows_in if name == "item_in" else rows_out
            np.testing.assert_allclose(b[rows], a, atol=1e-12)
            assert np.abs(np.delete(b, rows, axis=0)).max(initial=0.0) == 0.0  # unused buckets get nothing
        else:
            np.testing.assert_allclose(b, a, atol=1e-12)
    plain.params_ = P
    H = sp.random(5, N_ITEMS, density=0.3, format="csr", random_state=0)
    np.testing.assert_allclose(hashed.query_vectors(H), plain.query_vectors(H), rtol=1e-6)
    np.testing.assert_allclose(hashed.item_vectors, plain.item_vectors, rtol=1e-6)


@pytest.mark.parametrize("negatives", ["all", 5])
def test_gradients_hashed_inputs_outputs_and_features(negatives):
    X, users, targets, codes, rng = _tiny_problem(1)
    model = SoftmaxDNN(dim=4, hidden=(5,), feature_dim=3, negatives=negatives, init_scale=0.5, item_buckets=7,
                       item_hashes=2, hash_output=True, feature_buckets=2, gravity=0.2)
    model.init_hashing([f"i{i}" for i in range(N_ITEMS)], {"age": ["a", "b"], "country": ["x", "y", "z"]}, 3)
    assert set(model.hash_rows_) == {"item_hash_in", "item_hash_out", "feat_hash__country"}  # age: 2 values
    P = model.init_params(N_ITEMS, CARDS, rng, dtype=np.float64)
    assert P["item_in"].shape == (7, 4) and P["item_out"].shape == (7, 4) and P["feat__country"].shape == (3, 3)
    full_codes = [np.where(c >= CARDS[f], -1, c) for f, c in zip(("age", "country"), codes, strict=True)]
    mapped = model._codes(dict(zip(("age", "country"), full_codes, strict=True)), X.shape[0])
    assert mapped[1].max() <= 2
    drop = np.arange(len(users)) == 0  # one example on the empty-history vector
    batch = batching.make_batch(X.indptr.astype(np.int64), X.indices.astype(np.int64), users, targets, mapped,
                                np.float64, drop)
    sample = None
    if negatives == 5:
        cand = rng.integers(0, N_ITEMS, 6)
        sample = batching.Sample(cand, np.full(6, -2.0), np.full(len(targets), -2.0))
    _check_gradients(model, P, batch, sample)


def test_hashing_options_are_checked():
    with pytest.raises(ModelError, match="--hash-output needs --item-buckets"):
        SoftmaxDNN(hash_output=True)
    with pytest.raises(ModelError, match="--tie-embeddings"):
        SoftmaxDNN(item_buckets=10, tie_embeddings=True)
    for kw, opt in (({"item_buckets": -1}, "--item-buckets"), ({"item_hashes": 0}, "--item-hashes"),
                    ({"feature_buckets": 1.5}, "--feature-buckets"), ({"mix_sampler": "hard"}, "--mix-sampler"),
                    ({"mask_positives": "yes"}, "mask_positives"), ({"hash_output": 1}, "--hash-output")):
        with pytest.raises(ModelError, match=opt):
            SoftmaxDNN(**kw)
    assert set(HYPER_PARAMETERS["softmax"]) == set(SoftmaxDNN().get_params())


def test_hashed_model_trains_saves_loads_and_serves_cold_users(split, tmp_path):  # noqa: F811
    tr = split.train_set()
    kw = dict(FAST, epochs=2, item_buckets=40, hash_output=True, feature_buckets=2, sampler="mixed",
              mix_sampler="popularity", negatives=10)
    m = SoftmaxDNN(**kw).fit(tr, np.random.default_rng(1))
    again = SoftmaxDNN(**kw).fit(tr, np.random.default_rng(1))
    for k in m.hash_rows_:  # the same raw ids and seed give the same rows
        np.testing.assert_array_equal(m.hash_rows_[k], again.hash_rows_[k])
    assert m.params_["item_out"].shape == (40, 16) and m.item_vectors.shape == (tr.n_items, 16)
    assert "feat_hash__country" in m.hash_rows_  # country has more than 2 values
    unhashed = SoftmaxDNN(**{**kw, "item_buckets": 0, "hash_output": False, "feature_buckets": 0})
    assert m.estimate_bytes(600, tr.n_items, tr.matrix.nnz, tr.cardinalities) < \
        unhashed.estimate_bytes(600, tr.n_items, tr.matrix.nnz, tr.cardinalities)
    save_run(tmp_path / "run", m, split, seed=1)
    run = load_run(tmp_path / "run")
    users = split.warm_eval_users[:10]
    feats = {f: c[users] for f, c in split.dataset.features.items()}
    np.testing.assert_array_equal(run.model.query_vectors(split.known()[users], feats),
                                  m.query_vectors(split.known()[users], feats))
    np.testing.assert_array_equal(run.model.item_vectors, m.item_vectors)
    empty = sp.csr_matrix((2, tr.n_items), dtype=np.float32)  # cold users: features only
    cold = run.model.query_vectors(empty, {"country": np.array([0, 1]), "age_band": np.array([0, -1])})
    assert np.isfinite(cold).all() and not np.allclose(cold[0], cold[1])
    state = m.state()
    state["item_hash_in"] = state["item_hash_in"] + 40  # rows outside the table
    with pytest.raises(ModelError, match="hash rows item_hash_in"):
        SoftmaxDNN.from_state(m.get_params(), state, {"n_items": tr.n_items})
    state = m.state()
    del state["item_hash_out"]
    with pytest.raises(ModelError, match="lacks arrays"):
        SoftmaxDNN.from_state(m.get_params(), state, {"n_items": tr.n_items})


# ------------------------------------------------------------------------------------------------
# folding with the new samplers


@pytest.mark.parametrize("sampler", ["in-batch", "mixed"])
def test_folding_in_batch_and_mixed_do_not_leak(split, sampler):  # noqa: F811
    m = SoftmaxDNN(negatives=20, sampler=sampler, **FAST).fit(split.train_set(), np.random.default_rng(0))
    leak, natural = _leakage(m, split)
    assert natural < 0.15
    assert leak < natural + 0.1, (leak, natural)
