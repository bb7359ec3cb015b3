"""The shared model contract (models/base.py), run against EVERY registered kind.

Adding a model to the registry adds it here; give it tiny hyper-parameters in PARAMS (a kind without
an entry is built with its defaults).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn import api
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.evaluation import cost, evaluator
from mfvsdnn.evaluation import populations as pops_mod
from mfvsdnn.models import ranking, registry
from mfvsdnn.models.base import FAMILIES, Capabilities
from mfvsdnn.models.store import load_run, save_run

PARAMS: dict[str, dict] = {
    "wals": {"factors": 8, "iterations": 3},
    "softmax": {"dim": 8, "hidden": [16], "epochs": 2, "negatives": 10},
}
KINDS = registry.kinds()


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "c.csv"
    write_csv(SyntheticConfig(users=300, items=80, groups=3, cross_rate=0.1, seed=2), path)
    return api.prepare_split(path, ColumnSpec(user_features=("country", "age_band")),
                             SplitConfig(seed=1, cold_users=0.2))


def _new(kind):
    return registry.get(kind)(**PARAMS.get(kind, {}))


def _fit(kind, split, seed=0):
    return _new(kind).fit(split.train_set(), np.random.default_rng(seed))


def _output(model, histories, features, users=None, groups=None):
    """What the model answers: query vectors (dot-product models) or scores (the others)."""
    if model.capabilities.item_vectors:
        return model.query_vectors(histories, features, users=users, groups=groups)
    return model.scores(histories, features, users=users, groups=groups)


def _queries(model, split):
    """Answers for warm users, cold users at r = 0, 1, 3 (features and groups given) and with nothing."""
    tr = split.train_set()
    warm, cold = split.warm_eval_users, split.cold_eval_users
    feats = {f: c[cold] for f, c in tr.features.items()}
    out = {"warm": _output(model, split.known()[warm], {f: c[warm] for f, c in tr.features.items()}, warm,
                           pops_mod.query_groups_of(split, warm))}
    for r in (0, 1, 3):
        out[f"cold_r{r}"] = _output(model, split.cold_history(r)[cold], feats, None, pops_mod.query_groups_of(split, cold))
    out["nothing"] = _output(model, split.cold_history(0)[cold], None)
    return out


def test_the_built_in_kinds_are_registered():
    assert KINDS[:5] == ("wals", "softmax", "popularity", "group-popularity", "random")
    assert {registry.family_of(k) for k in ("wals", "softmax", "popularity")} == {"mf", "dnn", "baseline"}


@pytest.mark.parametrize("kind", KINDS)
def test_class_declares_kind_family_and_capabilities(kind):
    cls = registry.get(kind)
    assert cls.kind == kind and cls.family in FAMILIES and isinstance(cls.capabilities, Capabilities)
    json.dumps(_new(kind).get_params())


@pytest.mark.parametrize("kind", KINDS)
def test_fit_returns_self_and_records_training(kind, split):
    model = _new(kind)
    assert model.fit(split.train_set(), np.random.default_rng(0)) is model
    assert model.train_seconds_ > 0
    assert isinstance(model.history_, list) and model.history_ and all(isinstance(h, dict) for h in model.history_)
    json.dumps(model.get_params())
    json.dumps(model.history_)
    assert model.state() and all(isinstance(v, np.ndarray) for v in model.state().values())


@pytest.mark.parametrize("kind", KINDS)
def test_answers_warm_and_cold_queries(kind, split):
    model = _fit(kind, split)
    n_items = split.dataset.n_items
    if model.capabilities.item_vectors:
        V = model.item_vectors
        assert V.dtype == np.float32 and V.shape[0] == n_items and np.isfinite(V).all()
        width = V.shape[1]
    else:
        assert not hasattr(model, "item_vectors")
        width = n_items
    qs = _queries(model, split)
    assert len(split.warm_eval_users) > 0 and len(split.cold_eval_users) > 0
    for name, q in qs.items():
        n = len(split.warm_eval_users) if name == "warm" else len(split.cold_eval_users)
        assert q.shape == (n, width), name
        assert q.dtype == np.float32 and np.isfinite(q).all(), name
    if model.family in ("mf", "dnn"):  # personalised models: the revealed history changes a cold query
        assert not np.allclose(qs["cold_r0"], qs["cold_r3"])


@pytest.mark.parametrize("kind", [k for k in KINDS if registry.get(k).capabilities.item_vectors])
def test_uses_features_flag_matches_behaviour(kind, split):
    model = _fit(kind, split)
    cold = split.cold_eval_users
    empty = split.cold_history(0)[cold]
    with_features = model.query_vectors(empty, {f: c[cold] for f, c in split.train_set().features.items()})
    without = model.query_vectors(empty, None)
    assert np.array_equal(with_features, without) != model.capabilities.uses_features


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_answers(kind, split, tmp_path):
    model = _fit(kind, split)
    run = load_run(save_run(tmp_path / "run", model, split, seed=0))
    assert run.kind == kind and type(run.model) is type(model)
    assert run.meta["params"] == json.loads(json.dumps(model.get_params()))
    if model.capabilities.item_vectors:
        np.testing.assert_array_equal(run.model.item_vectors, model.item_vectors)
    a, b = _queries(model, split), _queries(run.model, split)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert run.model.history_ == json.loads(json.dumps(model.history_))


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_same_seed(kind, split):
    a, b = _fit(kind, split, seed=3), _fit(kind, split, seed=3)
    qa, qb = _queries(a, split), _queries(b, split)
    for name in qa:
        np.testing.assert_array_equal(qa[name], qb[name], err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluator_end_to_end(kind, split):
    model = _fit(kind, split)
    evals = evaluator.evaluate_model(model, split, (5, 10))
    assert list(evals) == ["warm", "r=0", "r=1", "r=3", "r=5"]
    for name, ev in evals.items():
        rec = ev.per_user["recall", 10]
        assert rec.shape == (len(ev.users),) and np.all((rec >= 0) & (rec <= 1)), name
        assert 0 < ev.scalars["coverage", 10] <= 1 and ev.embed_seconds >= 0 and ev.topk_seconds >= 0
        assert np.all((ev.per_user["leakage", 5] >= 0) & (ev.per_user["leakage", 5] <= 1)), name
    serving = cost.serving_cost(model, split, 10, np.random.default_rng(0), n_sample=3)
    assert (serving["cache_bytes"] is not None) == model.capabilities.candidate_cache
    if model.capabilities.candidate_cache:
        assert serving["cache_bytes"] == len(split.warm_users) * 10 * 4
    assert serving["model_bytes"] == cost.model_bytes(model) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_known_items_are_never_ranked(kind, split):
    model = _fit(kind, split)
    warm = split.warm_eval_users
    hist = split.known()[warm]
    idx, scores = ranking.rank(model, hist, None, warm, pops_mod.query_groups_of(split, warm), hist, 15)
    assert idx.shape == scores.shape == (len(warm), 15) and (idx >= 0).all()
    picked = sp.csr_matrix((np.ones(idx.size), (np.repeat(np.arange(len(warm)), 15), idx.ravel())), shape=hist.shape)
    assert picked.multiply(hist).nnz == 0
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


@pytest.mark.parametrize("index_kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_exhaustive_index_serves_the_exact_scores(kind, index_kind, split):
    # a beam over the whole catalogue (efSearch >= items, every IVF list probed) must give exact's
    # scores for every model with item vectors, the baselines' heavily tied ones included
    pytest.importorskip("faiss")
    import warnings

    from mfvsdnn.core.topk import top_k_with_scores
    from mfvsdnn.models.index import build_index

    model = _fit(kind, split)
    if not model.capabilities.item_vectors:
        pytest.skip(f"{kind} has no item vectors to index")
    warm = split.warm_eval_users
    hist = sp.csr_matrix(split.known()[warm])
    items = np.asarray(model.item_vectors, np.float32)
    queries = np.asarray(model.query_vectors(hist, {f: c[warm] for f, c in split.train_set().features.items()},
                                             users=warm, groups=pops_mod.query_groups_of(split, warm)), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # all-zero item vectors
        index = build_index(index_kind, items, 10 * len(items))
    found, scores = index.search(queries, 15, hist)
    ref_s = top_k_with_scores(queries, items, hist, 15)[1]
    assert np.allclose(scores, ref_s, rtol=1e-5, atol=1e-6)
    picked = sp.csr_matrix((np.ones(found.size), (np.repeat(np.arange(len(warm)), 15), found.ravel())), shape=hist.shape)
    assert picked.multiply(hist).nnz == 0
