"""Known answers of the three baselines, and a model registered only here running everywhere."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from mfvsdnn import api
from mfvsdnn.core import topk
from mfvsdnn.core.errors import ModelError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig, TrainSet
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.evaluation import cost, evaluator
from mfvsdnn.evaluation import populations as pops_mod
from mfvsdnn.models import ranking, registry
from mfvsdnn.models.base import Capabilities
from mfvsdnn.models.baselines import GroupPopularity, MostPopular, RandomRetriever
from mfvsdnn.models.store import load_run, save_run

RNG = np.random.default_rng


def _train(rows: list[list[int]], n_items: int, item_groups=None, user_groups=None) -> TrainSet:
    m = sp.lil_matrix((len(rows), n_items), dtype=np.float32)
    for u, items in enumerate(rows):
        m[u, items] = 1.0
    m = m.tocsr()
    ig = None if item_groups is None else np.asarray(item_groups, dtype=np.int32)
    ug = None if user_groups is None else np.asarray(user_groups, dtype=np.int32)
    n_groups = 0 if ig is None else int(ig.max()) + 1
    return TrainSet(matrix=m, users=np.arange(len(rows)), item_groups=ig, user_groups=ug, group_count=n_groups)


def _hist(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [j for items in rows for j in items]
    return sp.csr_matrix((np.ones(len(c), dtype=np.float32), (r, c)), shape=(len(rows), n_items))


def _ranking(model, rows, n_items, groups=None, k=None):
    h = _hist(rows, n_items)
    g = None if groups is None else np.asarray(groups, dtype=np.int32)
    idx = ranking.rank(model, h, None, None, g, h, k or n_items)[0]
    return [[int(j) for j in row if j >= 0] for row in idx]


# training counts per item: 0:1  1:3  2:3  3:0  4:2
POP_ROWS = [[0, 1, 2], [1, 2, 4], [1, 2, 4]]


def test_most_popular_ranks_by_count_ties_to_lower_index_and_excludes_known():
    m = MostPopular().fit(_train(POP_ROWS, 5), RNG(0))
    np.testing.assert_array_equal(m.item_vectors[:, 0], np.array([1, 3, 3, 0, 2], np.float32) / 3)
    assert _ranking(m, [[], [1], [2, 4]], 5) == [[1, 2, 4, 0, 3], [2, 4, 0, 3], [1, 0, 3]]


# items 0-2 in group 0, 3-5 in group 1; training counts 0:1 1:3 2:0 3:5 4:2 5:4
GROUP_ITEMS = [0, 0, 0, 1, 1, 1]
GROUP_ROWS = [[0, 1, 3, 4, 5], [1, 3, 5], [1, 3, 4, 5], [3, 5], [3]]


@pytest.fixture(scope="module")
def group_pop():
    return GroupPopularity().fit(_train(GROUP_ROWS, 6, GROUP_ITEMS), RNG(0))


def test_group_popularity_with_a_user_group_column(group_pop):
    # the column decides, whatever the history says; unknown (-1) falls back to the history
    assert _ranking(group_pop, [[], [], [3, 4], [0, 1], [3]], 6, groups=[0, 1, 0, 1, -1]) == [
        [1, 0, 2, 3, 5, 4],  # group 0 first (an item never trained still beats every group-1 item)
        [3, 5, 4, 1, 0, 2],
        [1, 0, 2, 5],
        [3, 5, 4, 2],
        [5, 4, 1, 0, 2],  # -1: majority of the history {3} is group 1
    ]


def test_group_popularity_without_a_column_uses_the_history_majority(group_pop):
    assert _ranking(group_pop, [[0, 4, 5], [0, 3], [2, 1, 5]], 6) == [
        [3, 1, 2],  # majority group 1
        [1, 2, 5, 4],  # a tie (one item each): the lower group code, 0
        [0, 3, 4],  # majority group 0
    ]
    np.testing.assert_array_equal(group_pop.query_groups(_hist([[0, 4, 5], [0, 3], []], 6)), [1, 0, -1])


def test_group_popularity_cold_user_with_nothing_gets_global_popularity(group_pop):
    assert _ranking(group_pop, [[]], 6) == [[3, 5, 1, 4, 0, 2]]


def test_group_popularity_without_item_groups_is_most_popular():
    gp = GroupPopularity().fit(_train(GROUP_ROWS, 6), RNG(0))
    mp = MostPopular().fit(_train(GROUP_ROWS, 6), RNG(0))
    rows = [[], [3], [0, 5]]
    assert gp.item_vectors.shape == (6, 1)
    assert _ranking(gp, rows, 6, groups=[0, 1, 0]) == _ranking(mp, rows, 6) == [
        [3, 5, 1, 4, 0, 2], [5, 1, 4, 0, 2], [3, 1, 4, 2]]


@pytest.fixture(scope="module")
def grouped_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("baselines") / "g.csv"
    write_csv(SyntheticConfig(users=240, items=90, groups=3, cross_rate=0.2, seed=5), path)
    return path


def _split(path, user_group_col=None):
    return api.prepare_split(path, ColumnSpec(user_group_col=user_group_col),
                             SplitConfig(seed=3, cold_users=0.2, revealed=(0, 1, 3)))


def test_query_groups_come_only_from_the_user_group_column(grouped_csv):
    with_col, without = _split(grouped_csv), _split(grouped_csv, user_group_col="")
    for pop in pops_mod.populations(with_col):
        np.testing.assert_array_equal(pop.query_groups, with_col.dataset.user_groups[pop.users])
    pops = pops_mod.populations(without)
    assert all(p.query_groups is None for p in pops)
    assert all(p.user_group is not None for p in pops)  # leakage still has a group: derived, not given


def test_group_popularity_with_the_column_leaks_only_when_its_group_runs_out(grouped_csv):
    split = _split(grouped_csv)
    model = GroupPopularity().fit(split.train_set(), RNG(0))
    pops = pops_mod.populations(split)
    evals = evaluator.evaluate_model(model, split, (10,), pops=pops)
    for pop in pops:
        in_group = split.dataset.item_groups[None, :] == pop.query_groups[:, None]
        left = (in_group & ~pop.exclude.toarray().astype(bool)).sum(axis=1)  # unseen items of the group
        np.testing.assert_allclose(evals[pop.name].per_user["leakage", 10], np.maximum(0, 10 - left) / 10,
                                   err_msg=pop.name)
    assert (evals["warm"].per_user["leakage", 10] == 0).mean() > 0.5


def test_random_same_seed_same_top_k_different_seed_differs():
    train = _train(POP_ROWS, 5)
    h = _hist([[], [1], [0, 2]] * 20, 5)
    a = ranking.rank(RandomRetriever().fit(train, RNG(7)), h, None, None, None, h, 3)[0]
    b = ranking.rank(RandomRetriever().fit(train, RNG(7)), h, None, None, None, h, 3)[0]
    c = ranking.rank(RandomRetriever().fit(train, RNG(8)), h, None, None, None, h, 3)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not (a[1::3] == 1).any() and not np.isin(a[2::3], [0, 2]).any()  # known items excluded


def test_random_top_1_is_uniform_over_items():
    n_items, n_queries = 10, 5000
    model = RandomRetriever().fit(_train([[0]], n_items), RNG(11))
    h = sp.csr_matrix((n_queries, n_items), dtype=np.float32)
    top1 = ranking.rank(model, h, None, None, None, h, 1, chunk_size=512)[0][:, 0]
    counts = np.bincount(top1, minlength=n_items)
    chi2 = float(((counts - n_queries / n_items) ** 2 / (n_queries / n_items)).sum())
    assert chi2 < stats.chi2.ppf(0.999, n_items - 1), counts


def test_random_leakage_is_the_share_of_out_group_items(grouped_csv):
    split = _split(grouped_csv)
    model = RandomRetriever().fit(split.train_set(), RNG(0))
    pop = pops_mod.populations(split)[0]
    ev = evaluator.evaluate_model(model, split, (20,), pops=[pop])["warm"]
    out_group = split.dataset.item_groups[None, :] != pop.user_group[:, None]  # (q, n_items)
    eligible = ~pop.exclude.toarray().astype(bool)
    expected = (out_group & eligible).sum(axis=1) / eligible.sum(axis=1)
    assert abs(np.mean(ev.per_user["leakage", 20]) - np.mean(expected)) < 0.03


class Oracle:
    """A fixed-vector model that knows the held-out answers: item vectors are one-hot, a warm user's
    query is its row of test items (a cold query is zeros)."""

    kind: ClassVar[str] = "test-oracle"
    family: ClassVar[str] = "baseline"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=True)

    def __init__(self) -> None:
        self.train_seconds_, self.history_ = 0.0, []

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train, rng, progress=None):
        self.answers_ = np.zeros(train.matrix.shape, dtype=np.float32)
        self.train_seconds_, self.history_ = 1e-3, [{"step": 1}]
        return self

    def reveal(self, split):
        self.answers_ = split.test.toarray().astype(np.float32)
        return self

    @property
    def item_vectors(self):
        return np.eye(self.answers_.shape[1], dtype=np.float32)

    def query_vectors(self, histories, features=None, users=None, groups=None):
        if users is not None:
            return self.answers_[users]
        return np.zeros((histories.shape[0], self.answers_.shape[1]), np.float32)  # knows no cold user

    def state(self):
        return {"answers": self.answers_}

    @classmethod
    def from_state(cls, params, arrays, info):
        m = cls(**params)
        m.answers_ = arrays["answers"]
        m.train_seconds_, m.history_ = info["train_seconds"], info["history"]
        return m


@pytest.fixture
def oracle_kind():
    registry.register(Oracle)
    yield Oracle
    registry.unregister(Oracle.kind)


def test_a_model_registered_from_outside_evaluates_and_round_trips(oracle_kind, grouped_csv, tmp_path):
    split = _split(grouped_csv)
    model = api.train_model(Oracle.kind, split, {}, seed=0, out=None).model.reveal(split)
    warm_pop = pops_mod.populations(split)[:1]
    ev = evaluator.evaluate_model(model, split, (10,), pops=warm_pop)["warm"]
    assert np.all(ev.per_user["recall", 10] == 1.0) and np.all(ev.per_user["ndcg", 10] == pytest.approx(1.0))
    run = load_run(save_run(tmp_path / "oracle", model, split, seed=0))
    assert type(run.model) is Oracle and run.kind == "test-oracle"
    again = evaluator.evaluate_model(run.model, split, (10,), pops=warm_pop)["warm"]
    np.testing.assert_array_equal(again.per_user["recall", 10], ev.per_user["recall", 10])
    assert cost.serving_cost(run.model, split, 10, RNG(0), n_sample=3)["cache_bytes"] == len(split.warm_users) * 40


class DotAsScores:
    """A scores-only model whose scores are an exact integer dot product (so they can be compared with
    the item-vector path bit for bit); records the number of queries of every ``scores`` call."""

    kind: ClassVar[str] = "test-dot-as-scores"
    family: ClassVar[str] = "baseline"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=False)

    def __init__(self, Q, V):
        self.Q, self.V, self.calls = Q, V, []

    def scores(self, histories, features=None, users=None, groups=None):
        self.calls.append(histories.shape[0])
        return self.Q[users] @ self.V.T


@pytest.mark.parametrize("chunk", [1, 7, None])
def test_scores_path_equals_the_item_vector_path(chunk):
    rng = RNG(3)
    q, n_items = 40, 30
    Q = rng.integers(-2, 3, (q, 3)).astype(np.float32)
    V = rng.integers(-2, 3, (n_items, 3)).astype(np.float32)  # many exact ties
    V[4] = np.nan  # never returned
    ex = sp.random(q, n_items, density=0.2, format="csr", random_state=5)
    model = DotAsScores(Q, V)
    idx, sc = ranking.rank(model, sp.csr_matrix((q, n_items), dtype=np.float32), None, np.arange(q), None, ex, 12, chunk)
    ref_idx, ref_sc = topk.top_k_with_scores(Q, V, ex, 12)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(sc, ref_sc)
    assert sum(model.calls) == q and max(model.calls) == (chunk or q)
    S = Q @ V.T
    np.testing.assert_array_equal(topk.top_k_from_scores(S, ex, 12)[0], ref_idx)
    np.testing.assert_array_equal(S, Q @ V.T)  # not overwritten by default


def test_scores_chunks_follow_the_memory_budget():
    n_items = 70000  # 64 MiB / (4 bytes x 70000 items) = 239 queries per chunk
    model = DotAsScores(np.ones((600, 1), np.float32), np.ones((n_items, 1), np.float32))
    ranking.rank(model, sp.csr_matrix((600, n_items), dtype=np.float32), None, np.arange(600), None, None, 2)
    assert model.calls == [239, 239, 122] and topk.auto_chunk_size(n_items) == 239


def test_scores_of_the_wrong_shape_are_refused():
    class Short(DotAsScores):
        def scores(self, histories, features=None, users=None, groups=None):
            return np.zeros((histories.shape[0], 3), np.float32)

    model = Short(np.ones((2, 1), np.float32), np.ones((5, 1), np.float32))
    with pytest.raises(ModelError, match=r"'test-dot-as-scores': scores returned shape \(2, 3\) for 2 queries over 5"):
        ranking.rank(model, sp.csr_matrix((2, 5), dtype=np.float32), None, np.arange(2), None, None, 2)
