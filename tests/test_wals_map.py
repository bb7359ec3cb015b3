"""WALS MAP fold-in (a feature-mean prior on the cold row solve) and the choice of its weight."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from mfvsdnn.api import prepare_split
from mfvsdnn.cli import app
from mfvsdnn.core.errors import ModelError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig, TrainSet
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.evaluation import metrics
from mfvsdnn.experiment.coldstart import _loo_prior, choose_fold_in_prior, reveal
from mfvsdnn.models import store
from mfvsdnn.models.ranking import rank
from mfvsdnn.models.wals import WALS, foldin, gram_term, kernels

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def _grouped_rows(rng, n, groups=4, per=30, take=10, own=0.6):
    """Users of ``groups`` groups (the feature ``g``); each row: ~own of ``take`` items from the
    user's group's ``per`` items, the rest uniform over all items, so the feature predicts items."""
    g = rng.integers(0, groups, n)
    rows, cols = [], []
    for u in range(n):
        items = set((rng.choice(per, rng.binomial(take, own), replace=False) + g[u] * per).tolist())
        while len(items) < take:
            items.add(int(rng.integers(0, groups * per)))
        rows += [u] * len(items)
        cols += sorted(items)
    R = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, groups * per))
    return R, g.astype(np.int32)


@pytest.fixture(scope="module")
def grouped():
    """400 training users (2 items each held out as validation), a WALS fit, 200 fresh cold users."""
    rng = np.random.default_rng(0)
    R, g = _grouped_rows(rng, 400)
    held = np.zeros(R.nnz, dtype=bool)
    for u in range(R.shape[0]):
        held[rng.choice(np.arange(R.indptr[u], R.indptr[u + 1]), 2, replace=False)] = True
    coo = R.tocoo()
    part = lambda mask: sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=R.shape)  # noqa: E731
    train = TrainSet(matrix=part(~held), users=np.arange(R.shape[0]), features={"g": g}, cardinalities={"g": 4},
                     valid=part(held))
    model = WALS(factors=8, iterations=8, solver="cholesky").fit(train, np.random.default_rng(1))
    cold, cold_g = _grouped_rows(np.random.default_rng(2), 200)
    return model, train, cold, cold_g


def _dense_map(model, hist_row, prior, lam):
    V = model.item_factors_.astype(np.float64)
    Vo = V[hist_row.indices]
    A = gram_term(model.item_factors_, model.w0, model.reg) + lam * np.eye(model.factors) \
        + (1 - model.w0) * Vo.T @ Vo
    return np.linalg.solve(A, Vo.sum(axis=0) + lam * prior)


def test_map_fold_in_solves_the_documented_system_serial_and_parallel(grouped):
    model, _, cold, _ = grouped
    prior = np.random.default_rng(3).standard_normal((cold.shape[0], model.factors))
    for q in (5, cold.shape[0]):  # <= one chunk: the serial kernel; more: the parallel one
        got = model.fold_in_map(cold[:q], prior[:q], 2.5)
        want = np.stack([_dense_map(model, cold[i], prior[i], 2.5) for i in range(q)])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_map_fold_in_at_zero_is_plain_fold_in_bit_for_bit(grouped):
    model, _, cold, _ = grouped
    prior = np.ones((cold.shape[0], model.factors))
    np.testing.assert_array_equal(model.fold_in_map(cold, prior, 0.0), model.fold_in(cold))
    # the prior kernel itself, with no prior term, repeats the plain kernel's arithmetic exactly
    ptr, idx = cold.indptr.astype(np.int64), cold.indices.astype(np.int32)
    G = gram_term(model.item_factors_, model.w0, model.reg)
    plain = np.zeros((cold.shape[0], model.factors), np.float32)
    kernels.solve_rows_cholesky(ptr, idx, model.item_factors_, G, 1 - model.w0, plain, kernels.CHUNK)
    zero_prior = np.zeros_like(plain)
    foldin.solve_rows_cholesky_prior(ptr, idx, model.item_factors_, G, 1 - model.w0,
                                     np.zeros((cold.shape[0], model.factors)), zero_prior, kernels.CHUNK)
    np.testing.assert_array_equal(zero_prior, plain)
    feats = {"g": np.zeros(cold.shape[0], np.int32)}
    np.testing.assert_array_equal(model.with_fold_in_prior(0).query_vectors(cold, feats), model.fold_in(cold))


def test_map_fold_in_tends_to_the_feature_mean(grouped):
    model, _, cold, cold_g = grouped
    h = reveal(cold, 1, np.random.default_rng(4))
    feats = {"g": cold_g}
    u_bar = model.feature_backoff(feats, cold.shape[0])[0]
    lams = (0.0, 0.1, 1.0, 10.0, 100.0, 1e4, 1e9)
    dist = [float(np.linalg.norm(model.with_fold_in_prior(lam).query_vectors(h, feats) - u_bar, axis=1).mean())
            for lam in lams]
    assert all(a > b for a, b in zip(dist, dist[1:], strict=False)), dist
    assert dist[-1] < 1e-6 * float(np.linalg.norm(u_bar, axis=1).mean())
    # the prior mean is the features-only vector: the global mean when the query knows no feature
    glob = model.feature_backoff(None, 1)[0][0]
    np.testing.assert_allclose(model.with_fold_in_prior(1e9).query_vectors(h[:3], None), np.tile(glob, (3, 1)),
                               atol=1e-6)


def _recall(model, hist, feats, targets, k=20):
    top = rank(model, hist, feats, None, None, hist, k)[0]
    return float(metrics.recall_at_k(metrics.hits_matrix(top, targets), np.diff(targets.indptr), k).mean())


def test_map_beats_plain_fold_in_with_one_revealed_item_when_features_predict_items(grouped):
    model, _, cold, cold_g = grouped
    h = reveal(cold, 1, np.random.default_rng(5))
    targets = (cold - h).tocsr()
    targets.eliminate_zeros()
    plain = _recall(model, h, {"g": cold_g}, targets)
    with_prior = _recall(model.with_fold_in_prior(10.0), h, {"g": cold_g}, targets)
    assert with_prior > plain + 0.05, (plain, with_prior)


def test_with_fold_in_prior_shares_the_factors_and_leaves_the_original(grouped):
    model, *_ = grouped
    twin = model.with_fold_in_prior(3.0)
    assert twin.fold_in_prior == 3.0 and model.fold_in_prior == 0.0
    assert twin.user_factors_ is model.user_factors_ and twin.item_factors_ is model.item_factors_
    assert twin.get_params() == {**model.get_params(), "fold_in_prior": 3.0}


def test_choose_fold_in_prior_picks_a_grid_value_deterministically(grouped):
    model, train, *_ = grouped
    grid = (0.0, 1.0, 10.0, 100.0)
    a = choose_fold_in_prior(model, train, (0, 1, 3), np.random.default_rng(7), grid=grid)
    b = choose_fold_in_prior(model, train, (0, 1, 3), np.random.default_rng(7), grid=grid)
    assert a == b and a.lam in grid and a.users == 400
    assert [lam for lam, _ in a.table] == list(grid) and sorted(a.by_revealed) == [1, 3]
    best = max(recall for _, recall in a.table)
    assert dict(a.table)[a.lam] == best and a.lam > 0  # here the features predict items
    assert choose_fold_in_prior(model, train, (1,), np.random.default_rng(7), grid=grid, max_users=50).users == 50


def test_choose_fold_in_prior_without_validation_is_zero_with_nan():
    model, train = _tiny_model(valid=False)
    c = choose_fold_in_prior(model, train, (1, 3), np.random.default_rng(0), grid=(1.0, 3.0))
    assert c.lam == 0.0 and [lam for lam, _ in c.table] == [1.0, 3.0] and all(np.isnan(r) for _, r in c.table)
    model, train = _tiny_model(valid=True)
    assert choose_fold_in_prior(model, train, (0,), np.random.default_rng(0)).lam == 0.0  # r = 0 folds nothing


def _tiny_model(valid: bool):
    """One factor, positive vectors: every query vector is positive for every lam, so every lam ranks
    items alike (by their factor) and recalls tie."""
    R = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 0, 0]], np.float32))
    va = sp.csr_matrix(np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0]], np.float32))
    train = TrainSet(matrix=R, users=np.arange(3), features={"g": np.array([0, 0, 1], np.int32)},
                     cardinalities={"g": 2}, valid=va if valid else None)
    U = np.array([[1.0], [2.0], [3.0]], np.float32)
    V = np.array([[0.5], [0.4], [0.3], [0.2], [0.1]], np.float32)
    return WALS.from_factors({"factors": 1, "min_support": 1}, U, V, train), train


def test_choose_fold_in_prior_breaks_ties_towards_the_smaller_lam():
    model, train = _tiny_model(valid=True)
    c = choose_fold_in_prior(model, train, (1,), np.random.default_rng(0), grid=(3.0, 1.0, 10.0), k=2)
    assert len({r for _, r in c.table}) == 1 and c.lam == 1.0


def test_the_choice_leaves_the_users_own_vector_out_of_the_prior():
    model, _ = _tiny_model(valid=True)
    prior = _loo_prior(model, {"g": np.array([0, 0, 1], np.int32)}, np.arange(3))
    # users 0 and 1 share g = 0: each one's prior is the other's vector; user 2 is alone and keeps its mean
    np.testing.assert_allclose(prior, [[2.0], [1.0], [3.0]])


def test_reveal_draws_r_items_of_each_row_seeded():
    rows = sp.csr_matrix(np.array([[1, 1, 1, 1, 0], [0, 1, 0, 1, 1]], np.float32))
    a, b = reveal(rows, 2, np.random.default_rng(1)), reveal(rows, 2, np.random.default_rng(1))
    assert (a != b).nnz == 0 and np.diff(a.indptr).tolist() == [2, 2]
    assert (a.multiply(rows) != a).nnz == 0  # only items of the row


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 1e13, True, "x"])
def test_fold_in_prior_refuses_bad_values(bad):
    with pytest.raises(ModelError, match="fold_in_prior must be a finite number in"):
        WALS(fold_in_prior=bad)
    with pytest.raises(ModelError, match="fold_in_prior"):
        WALS().with_fold_in_prior(bad)


def test_fold_in_prior_round_trips_through_a_run_directory(tmp_path):
    csv = tmp_path / "tiny.csv"
    write_csv(SyntheticConfig(users=120, items=40, groups=2, seed=3), csv)
    split = prepare_split(csv, ColumnSpec(user_features=("country",)), SplitConfig(seed=1))
    model = WALS(factors=4, iterations=2, fold_in_prior=3.0).fit(split, np.random.default_rng(0))
    run = store.load_run(store.save_run(tmp_path / "run", model, split, 0))
    assert run.model.fold_in_prior == 3.0 and run.model.get_params() == model.get_params()
    hist = split.cold_history(1)[split.cold_eval_users]
    feats = {f: c[split.cold_eval_users] for f, c in split.dataset.features.items()}
    np.testing.assert_array_equal(run.model.query_vectors(hist, feats), model.query_vectors(hist, feats))


def test_a_bad_fold_in_prior_is_one_line_before_data_is_read(tmp_path):
    res = runner.invoke(app, ["compare", str(tmp_path / "missing.csv"), "--wals-param", "fold_in_prior=-1"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "fold_in_prior must be a finite number in [0, 1e+12]" in lines[0], res.output


def test_train_wals_cli_sets_the_fold_in_prior(tmp_path):
    from typer.testing import CliRunner

    from mfvsdnn.cli import app
    from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
    from mfvsdnn.models.store import load_run

    data = tmp_path / "d.csv"
    write_csv(SyntheticConfig(users=80, items=30, groups=2, seed=4), data)
    res = CliRunner().invoke(app, ["train-wals", str(data), "--out", str(tmp_path / "run"), "--factors", "4",
                                   "--iterations", "2", "--fold-in-prior", "2.5"])
    assert res.exit_code == 0, res.output
    assert load_run(tmp_path / "run").model.fold_in_prior == 2.5
