"""Hyper-parameter checks in the models, divergence, the memory estimate and the hard-pool cap."""

from __future__ import annotations

import inspect
import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mfvsdnn.core.memory as memory
import mfvsdnn.models.params as params
import mfvsdnn.models.wals.model as W
from mfvsdnn.api import prepare_split
from mfvsdnn.cli import app
from mfvsdnn.core.errors import ModelError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.params import HYPER_PARAMETERS
from mfvsdnn.models.registry import check_params
from mfvsdnn.models.registry import get as model_class
from mfvsdnn.models.softmax import SoftmaxDNN
from mfvsdnn.models.softmax.sampling import HardPoolSampler
from mfvsdnn.models.wals import WALS

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """60 items, 200 users, 3 groups."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    write_csv(SyntheticConfig(users=200, items=60, groups=3, seed=1), path)
    return path


@pytest.fixture(scope="module")
def train(tiny):
    return prepare_split(tiny, ColumnSpec(user_features=("country",)), SplitConfig(seed=1)).train_set()


@pytest.mark.parametrize("kind", ["wals", "softmax"])
def test_listed_hyper_parameters_are_the_constructor_keywords(kind):
    keys = [p for p in inspect.signature(model_class(kind).__init__).parameters if p != "self"]
    assert list(HYPER_PARAMETERS[kind]) == keys


def test_unknown_key_lists_valid_keys_and_suggests_the_close_one():
    with pytest.raises(ModelError) as e:
        check_params("softmax", {"epoch": 3}, "--softmax-param")
    msg = str(e.value)
    assert "--softmax-param epoch=" in msg and "did you mean 'epochs'" in msg
    assert "valid keys: " + ", ".join(HYPER_PARAMETERS["softmax"]) in msg
    with pytest.raises(ModelError, match="valid keys: factors, w0"):
        check_params("wals", {"nosuch": 1}, "--wals-param")
    assert check_params("wals", {"iterations": 2}, "--wals-param")["iterations"] == 2


@pytest.mark.parametrize("kw, needle", [
    ({"factors": True}, "--factors"), ({"factors": 3.5}, "--factors"), ({"factors": "x"}, "--factors"),
    ({"factors": 4097}, "--factors"), ({"reg": float("inf")}, "--reg"), ({"reg": float("nan")}, "--reg"),
    ({"w0": float("nan")}, "--w0"), ({"iterations": None}, "--iterations"), ({"solver": 3}, "--solver"),
    ({"init_scale": 0}, "init_scale"), ({"min_support": 0}, "--min-support"),
])
def test_wals_refuses_bad_values_with_the_option_name(kw, needle):
    with pytest.raises(ModelError, match=needle):
        WALS(**kw)


@pytest.mark.parametrize("kw, needle", [
    ({"lr": 1e30}, "--lr"), ({"lr": float("nan")}, "--lr"), ({"gravity": float("inf")}, "--gravity"),
    ({"l2": float("nan")}, "--l2"), ({"hidden": 5.5}, "--hidden"), ({"hidden": [8, True]}, "--hidden"),
    ({"hidden": [100_000_000]}, "--hidden"), ({"feature_dim": 10**8}, "--feature-dim"), ({"dim": 0}, "--dim"),
    ({"negatives": True}, "--negatives"), ({"negatives": 10**7}, "--negatives"), ({"sampler": None}, "--sampler"),
    ({"tie_embeddings": "yes"}, "tie_embeddings"), ({"history_dropout": 1.0}, "--history-dropout"),
    ({"feature_dropout": -0.1}, "feature_dropout"), ({"epochs": 2.5}, "--epochs"),
    ({"sampler": "hard", "negatives": 50, "hard_pool": 3}, "--hard-pool"),
])
def test_softmax_refuses_bad_values_with_the_option_name(kw, needle):
    with pytest.raises(ModelError, match=needle):
        SoftmaxDNN(**kw)


def test_sane_values_pass_and_keep_their_types():
    m = SoftmaxDNN(dim=16.0, hidden=64, negatives="7", hard_pool=5, sampler="uniform")  # pool unused: no check
    assert (m.dim, m.hidden, m.negatives, m.hard_pool) == (16, (64,), 7, 5)
    assert SoftmaxDNN(sampler="hard", negatives=5, hard_pool=5).hard_pool == 5
    assert WALS(factors=np.int64(8), w0=0).w0 == 0.0


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
@example(0.0)
@example(10.0)
@example(10.000001)
@example(float("nan"))
def test_lr_is_accepted_exactly_in_its_documented_range(lr):
    ok = np.isfinite(lr) and 0 < lr <= params.MAX_LR
    if ok:
        assert SoftmaxDNN(lr=lr).lr == lr
    else:
        with pytest.raises(ModelError, match="--lr"):
            SoftmaxDNN(lr=lr)


# ------------------------------------------------------------------------------------------------
# divergence


@pytest.mark.parametrize("negatives, optimizer", [("all", "adam"), (5, "adam"), (0, "adagrad")])
def test_softmax_divergence_stops_with_a_clear_error(train, negatives, optimizer):
    m = SoftmaxDNN(epochs=2, batch_size=64, negatives=negatives, optimizer=optimizer)
    m.lr = 1e30  # past the constructor's range check: what --lr 1e30 used to do
    with np.errstate(all="ignore"), pytest.raises(ModelError, match=r"training diverged at epoch 1 \(.*\); lower --lr"):
        m.fit(train, np.random.default_rng(0))


def test_wals_non_finite_objective_stops_training(train, monkeypatch):
    monkeypatch.setattr(W, "objective", lambda *a: float("nan"))
    with pytest.raises(ModelError, match=r"training diverged at iteration 1 \(objective is nan\)"):
        WALS(iterations=3, factors=4).fit(train, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------
# memory


@pytest.fixture(scope="module")
def mid(tmp_path_factory):
    """1,500 users x 1,799 items: big enough that the model's arrays dominate Python's overheads."""
    path = tmp_path_factory.mktemp("mid") / "mid.csv"
    write_csv(SyntheticConfig(users=1500, items=2000, groups=3, mean_interactions=10, seed=1), path)
    return prepare_split(path, ColumnSpec(user_features=("country",)), SplitConfig(seed=1)).train_set()


@pytest.mark.parametrize("model", [
    WALS(factors=64, iterations=2), WALS(factors=16, iterations=1, solver="cholesky"),
    SoftmaxDNN(dim=64, epochs=1, min_steps=0, negatives="all", patience=0),
    SoftmaxDNN(dim=16, epochs=1, min_steps=0, negatives=20),
    SoftmaxDNN(dim=16, epochs=1, min_steps=0, sampler="hard", negatives=5, hard_pool=40, batch_size=512),
    SoftmaxDNN(dim=8, epochs=1, min_steps=0, negatives=0, gravity=0.1, optimizer="adagrad"),
    SoftmaxDNN(dim=16, epochs=1, min_steps=0, sampler="mixed", negatives=20, batch_size=512),
    SoftmaxDNN(dim=32, epochs=1, min_steps=0, negatives="all", patience=0, item_buckets=300, hash_output=True,
               feature_buckets=2),
], ids=["wals-cg", "wals-cholesky", "full", "sampled", "hard", "positives-gravity", "mixed", "full-hashed"])
def test_memory_estimate_bounds_what_training_allocates(mid, model):
    """fit plus the validation recall that train_model computes, traced after a warm-up run (the
    first run also loads the compiled kernels)."""
    from mfvsdnn.evaluation.evaluator import validation_recall

    def run():
        model.fit(mid, np.random.default_rng(0))
        validation_recall(model, mid, k=20, rng=np.random.default_rng(1))

    run()
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n_users, n_items = mid.matrix.shape
    est = model.estimate_bytes(n_users, n_items, int(mid.matrix.nnz), dict(mid.cardinalities))
    assert peak <= est < 4 * peak, (peak, est)  # measured: 1.45x (WALS) to 2.4x (full softmax)


def test_memory_estimate_grows_with_the_model():
    small = SoftmaxDNN(dim=8).estimate_bytes(1000, 10_000, 20_000, {})
    big = SoftmaxDNN(dim=64).estimate_bytes(1000, 10_000, 20_000, {})
    assert big - small >= 4 * 4 * 2 * 10_000 * (64 - 8)  # float32 x (params, 2 Adam moments, best copy) x 2 tables
    assert WALS(factors=4096).estimate_bytes(10**6, 10**6, 10**7, {}) > 2 * 4 * 2 * 10**6 * 4096


def test_too_big_for_memory_is_refused_before_training(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 1_000_000)
    out = tmp_path / "run"
    res = runner.invoke(app, ["train-wals", str(tiny), "--out", str(out), "--factors", "512"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    line = " ".join(res.output.split())
    assert "not enough memory for training wals on" in line and "it needs about" in line
    assert "976.6 KiB is available" in line and "lower --factors" in line
    assert not out.exists()


def test_available_memory_reads_meminfo():
    avail = memory.available_memory()
    assert avail is None or avail > 0
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert avail <= total


# ------------------------------------------------------------------------------------------------
# the hard sampler's pool


def test_a_pool_covering_the_catalogue_is_every_item_once():
    rng = np.random.default_rng(0)
    s = HardPoolSampler(60)
    np.testing.assert_array_equal(s.draw(rng, 1_000_000), np.arange(60))
    assert len(s.draw(rng, 59)) == 59


def test_huge_hard_pool_on_a_small_catalogue_finishes_with_a_note(tiny, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train-softmax", str(tiny), "--out", str(out), "--sampler", "hard",
                              "--hard-pool", "1000000", "--negatives", "5", "--epochs", "1", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["notes"] == ["--hard-pool 1,000,000 exceeds the catalogue (60 items): every batch's pool is "
                                "the whole catalogue"]
    assert summary["params"]["hard_pool"] == 1_000_000 and out.is_dir()
    res = runner.invoke(app, ["train-softmax", str(tiny), "--out", str(out), "--sampler", "hard",
                              "--hard-pool", "1000000", "--negatives", "5", "--epochs", "1"])
    assert res.exit_code == 0 and "note: --hard-pool 1,000,000 exceeds the catalogue" in res.output


def test_softmax_param_typo_is_refused_before_wals_trains(tiny, tmp_path, monkeypatch):
    import mfvsdnn.api as api

    trained = []
    monkeypatch.setattr(api, "train_model", lambda *a, **k: trained.append(a) or (_ for _ in ()).throw(AssertionError))
    rep = tmp_path / "rep"
    res = runner.invoke(app, ["compare", str(tiny), "--report-dir", str(rep), "--softmax-param", "epoch=1"])
    assert res.exit_code == 1 and "did you mean 'epochs'" in res.output and "Traceback" not in res.output
    assert trained == [] and not rep.exists()
    res = runner.invoke(app, ["compare", str(tiny), "--report-dir", str(rep), "--wals-param", "nosuch=1"])
    assert res.exit_code == 1 and "valid keys: " + ", ".join(HYPER_PARAMETERS["wals"]) in res.output
    assert trained == [] and not rep.exists()
