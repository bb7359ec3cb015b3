"""The shared model contract (models/base.py Retriever), run against every model in MODELS.

To add a model: append ``pytest.param(kind, small_params, id=kind)`` to MODELS. Keep the params tiny.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfvsdnn import api
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.base import model_class
from mfvsdnn.models.store import load_run, save_run

MODELS = [
    pytest.param("wals", {"factors": 8, "iterations": 3}, id="wals"),
    pytest.param("softmax", {"dim": 8, "hidden": [16], "epochs": 2, "negatives": 10}, id="softmax"),
]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "c.csv"
    write_csv(SyntheticConfig(users=300, items=80, groups=3, cross_rate=0.1, seed=2), path)
    return api.prepare_split(path, ColumnSpec(user_features=("country", "age_band")),
                             SplitConfig(seed=1, cold_users=0.2))


def _fit(kind, params, split, seed=0):
    return model_class(kind)(**params).fit(split.train_set(), np.random.default_rng(seed))


def _queries(model, split):
    """Query vectors of warm users, cold users at r = 0, 1, 3 (features given) and with nothing."""
    tr = split.train_set()
    warm = split.warm_eval_users
    cold = split.cold_eval_users
    feats = {f: c[cold] for f, c in tr.features.items()}
    out = {"warm": model.query_vectors(split.known()[warm], {f: c[warm] for f, c in tr.features.items()},
                                       users=warm)}
    for r in (0, 1, 3):
        out[f"cold_r{r}"] = model.query_vectors(split.cold_history(r)[cold], feats)
    out["nothing"] = model.query_vectors(split.cold_history(0)[cold], None)
    return out


@pytest.mark.parametrize("kind, params", MODELS)
def test_fit_returns_self_and_records_training(kind, params, split):
    model = model_class(kind)(**params)
    assert model.kind == kind
    assert model.fit(split.train_set(), np.random.default_rng(0)) is model
    assert model.train_seconds_ > 0
    assert isinstance(model.history_, list) and model.history_ and all(isinstance(h, dict) for h in model.history_)
    json.dumps(model.get_params())
    json.dumps(model.history_)
    assert all(isinstance(v, np.ndarray) for v in model.state().values())


@pytest.mark.parametrize("kind, params", MODELS)
def test_query_vectors_warm_and_cold(kind, params, split):
    model = _fit(kind, params, split)
    V = model.item_vectors
    assert V.dtype == np.float32 and V.shape[0] == split.dataset.n_items and np.isfinite(V).all()
    qs = _queries(model, split)
    assert len(split.warm_eval_users) > 0 and len(split.cold_eval_users) > 0
    for name, q in qs.items():
        n = len(split.warm_eval_users) if name == "warm" else len(split.cold_eval_users)
        assert q.shape == (n, V.shape[1]), name
        assert q.dtype == np.float32 and np.isfinite(q).all(), name
    # revealed history changes the cold query
    assert not np.allclose(qs["cold_r0"], qs["cold_r3"])


@pytest.mark.parametrize("kind, params", MODELS)
def test_save_load_round_trip(kind, params, split, tmp_path):
    model = _fit(kind, params, split)
    run = load_run(save_run(tmp_path / "run", model, split, seed=0))
    assert run.kind == kind and run.meta["params"] == json.loads(json.dumps(model.get_params()))
    np.testing.assert_array_equal(run.model.item_vectors, model.item_vectors)
    a, b = _queries(model, split), _queries(run.model, split)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert run.model.history_ == json.loads(json.dumps(model.history_))


@pytest.mark.parametrize("kind, params", MODELS)
def test_determinism_same_seed(kind, params, split):
    a, b = _fit(kind, params, split, seed=3), _fit(kind, params, split, seed=3)
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    qa, qb = _queries(a, split), _queries(b, split)
    for name in qa:
        np.testing.assert_array_equal(qa[name], qb[name], err_msg=name)
