"""The evaluator against a slow, obviously-correct reference (plain loops) on tiny data.

The test model has fixed integer vectors, so every score is an exact integer in float32: the
evaluator's BLAS products and the reference's loops agree exactly, ties included (lower index first).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core import topk
from mfvsdnn.data import ColumnSpec, read_interactions
from mfvsdnn.data.split import SplitConfig, make_split
from mfvsdnn.data.synthetic import SyntheticConfig, generate
from mfvsdnn.evaluation import cost, evaluator, maps, uncertainty
from mfvsdnn.evaluation import populations as pops_mod
from mfvsdnn.experiment.results import WARM
from mfvsdnn.experiment.runner import population_result
from mfvsdnn.models.base import Capabilities

KS = (3, 5, 10)


class FixedModel:
    """Warm users: a fixed row of U. New queries: the sum of their history's item vectors plus one
    fixed vector per feature value. Integer entries, so scores are exact."""

    kind = "fixed"
    capabilities = Capabilities(candidate_cache=False)

    def __init__(self, n_users: int, n_items: int, features: dict[str, int], d: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.U = rng.integers(-3, 4, (n_users, d)).astype(np.float32)
        self.V = rng.integers(-3, 4, (n_items, d)).astype(np.float32)
        self.F = {f: rng.integers(-2, 3, (c, d)).astype(np.float32) for f, c in features.items()}
        self.train_seconds_ = 1.5
        self.history_ = [{"loss": 1.0}, {"loss": 0.5}]

    def query_vectors(self, histories, features=None, users=None, groups=None):
        if users is not None:
            return self.U[users]
        q = np.asarray(histories @ self.V, dtype=np.float32)
        for f, codes in (features or {}).items():
            q += np.where((codes >= 0)[:, None], self.F[f][np.maximum(codes, 0)], 0)
        return q

    @property
    def item_vectors(self):
        return self.V

    def state(self):
        return {"U": self.U, "V": self.V}


class OracleModel(FixedModel):
    """Scores every warm user's test items 1 and everything else 0 (a perfect ranking)."""

    def __init__(self, split):
        n_users, n_items = split.test.shape
        super().__init__(n_users, n_items, {})
        self.U = split.test.toarray().astype(np.float32)
        self.V = np.eye(n_items, dtype=np.float32)


@pytest.fixture(scope="module", params=["column", "majority"])
def split(request, tmp_path_factory):
    df = generate(SyntheticConfig(users=160, items=60, groups=3, cross_rate=0.2, mean_interactions=9, seed=4))
    p = tmp_path_factory.mktemp("ev") / "d.csv"
    df.to_csv(p, index=False)
    cols = ColumnSpec(user_features=("country", "age_band"),
                      user_group_col=None if request.param == "column" else "")
    ds = read_interactions(p, cols)
    return make_split(ds, SplitConfig(seed=1, cold_users=0.25, revealed=(0, 1, 3)))


@pytest.fixture(scope="module")
def model(split):
    ds = split.dataset
    return FixedModel(ds.n_users, ds.n_items, {f: len(v) for f, v in ds.feature_values.items()})


# ---------------------------------------------------------------------------------------------
# the slow reference


def row_set(m: sp.csr_matrix, u: int) -> set[int]:
    return set(m.indices[m.indptr[u]:m.indptr[u + 1]].tolist())


def ref_query(model, ds, u: int, history: set[int], warm: bool) -> np.ndarray:
    if warm:
        return model.U[u].astype(np.float64)
    q = np.zeros(model.V.shape[1])
    for j in history:
        q += model.V[j]
    for f, codes in ds.features.items():
        if codes[u] >= 0:
            q += model.F[f][codes[u]]
    return q


def ref_rank(q: np.ndarray, V: np.ndarray, excluded: set[int], K: int) -> list[int]:
    scores = {j: float(np.dot(q, V[j])) for j in range(len(V)) if j not in excluded}
    return sorted(scores, key=lambda j: (-scores[j], j))[:K]


def ref_group(ds, interactions: sp.csr_matrix, u: int) -> int:
    if ds.user_groups is not None:
        return int(ds.user_groups[u])
    counts: dict[int, int] = {}
    for j in row_set(interactions, u):
        counts[int(ds.item_groups[j])] = counts.get(int(ds.item_groups[j]), 0) + 1
    return min(counts, key=lambda g: (-counts[g], g)) if counts else -1


def ref_metrics(ranked: list[int], targets: set[int], k: int, pct: np.ndarray, ds, group: int) -> dict:
    top = ranked[:k]
    hits = [j in targets for j in top]
    out = {
        ("recall", k): sum(hits) / len(targets),
        ("recall_truncated", k): sum(hits) / min(k, len(targets)),
        ("precision", k): sum(hits) / k,
        ("hit_rate", k): float(any(hits)),
        ("ndcg", k): sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        / sum(1 / math.log2(r + 2) for r in range(min(k, len(targets)))),
        ("popularity", k): sum(pct[j] for j in top) / len(top),
        ("leakage", k): sum(ds.item_groups[j] != group for j in top) / len(top) if group >= 0 else math.nan,
    }
    return out


def reference_population(model, split, name: str) -> tuple[dict[tuple, list[float]], dict[tuple, float]]:
    ds = split.dataset
    counts = [0] * ds.n_items
    for j in split.train.indices:
        counts[j] += 1
    pct = np.array([(sum(c < counts[j] for c in counts) + (sum(c == counts[j] for c in counts) + 1) / 2)
                    / ds.n_items for j in range(ds.n_items)])
    per: dict[tuple, list[float]] = {}
    recommended: dict[int, set[int]] = {k: set() for k in KS}
    if name == "warm":
        users = [u for u in range(ds.n_users) if row_set(split.test, u)]
    else:
        R = max(split.config.revealed)
        users = [u for u in range(ds.n_users) if len(row_set(split.cold, u)) > R]
    for u in users:
        if name == "warm":
            history = row_set(split.train, u) | row_set(split.valid, u)
            targets = row_set(split.test, u)
            group = ref_group(ds, split.train, u)
        else:
            r = int(name[2:])
            pos = {j: int(p) for j, p in zip(split.cold.indices[split.cold.indptr[u]:split.cold.indptr[u + 1]],
                                             split.cold.data[split.cold.indptr[u]:split.cold.indptr[u + 1]], strict=True)}
            history = {j for j, p in pos.items() if p <= r}
            targets = {j for j, p in pos.items() if p > max(split.config.revealed)}
            group = ref_group(ds, split.cold, u)
        q = ref_query(model, ds, u, history, warm=name == "warm")
        ranked = ref_rank(q, model.V, history, max(KS))
        for k in KS:
            recommended[k] |= set(ranked[:k])
            for key, v in ref_metrics(ranked, targets, k, pct, ds, group).items():
                per.setdefault(key, []).append(v)
        nat = sum(ds.item_groups[j] != group for j in targets) / len(targets) if group >= 0 else math.nan
        per.setdefault(("natural_cross_rate", None), []).append(nat)
    scal = {("coverage", k): len(recommended[k]) / ds.n_items for k in KS}
    return per, scal


# ---------------------------------------------------------------------------------------------


def test_populations_shapes(split):
    pops = pops_mod.populations(split)
    assert [p.name for p in pops] == ["warm", "r=0", "r=1", "r=3"]
    for p in pops:
        q = len(p.users)
        assert p.histories.shape == p.exclude.shape == p.targets.shape == (q, split.dataset.n_items)
        assert set(p.features) == {"country", "age_band"}
        assert (p.model_users is not None) == (p.name == "warm")
    assert pops[1].histories.nnz == 0 and pops[3].histories.nnz == 3 * len(pops[3].users)


def test_evaluator_equals_reference(split, model):
    evals = evaluator.evaluate_model(model, split, KS)
    assert len(evals) == 4
    for name, ev in evals.items():
        per, scal = reference_population(model, split, name)
        assert set(ev.per_user) == set(per), name
        for key, ref in per.items():
            np.testing.assert_allclose(ev.per_user[key], np.array(ref, dtype=float), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{name} {key}")
        for key, ref in scal.items():
            assert ev.scalars[key] == pytest.approx(ref), (name, key)
    # the data must hold users with more targets than k, or the two recalls would not be told apart
    cold = evals["r=0"].per_user
    assert np.any(cold["recall", 3] < cold["recall_truncated", 3])


def test_known_items_never_recommended(split, model):
    for pop in pops_mod.populations(split):
        qv = model.query_vectors(pop.histories, pop.features, users=pop.model_users)
        tk = topk.top_k(qv, model.V, pop.exclude, 25, chunk_size=7)  # several chunks
        for i in range(len(pop.users)):
            known = set(pop.exclude.indices[pop.exclude.indptr[i]:pop.exclude.indptr[i + 1]].tolist())
            rec = [j for j in tk[i] if j >= 0]
            assert not known & set(rec)
            assert len(rec) == min(25, split.dataset.n_items - len(known))


def test_top_k_matches_full_sort_and_ties_go_to_lower_index():
    rng = np.random.default_rng(3)
    Q = rng.integers(-2, 3, (40, 3)).astype(np.float32)
    V = rng.integers(-2, 3, (30, 3)).astype(np.float32)  # many exact ties
    ex = sp.random(40, 30, density=0.2, format="csr", random_state=5)
    S = Q @ V.T
    S[ex.nonzero()] = -np.inf
    ref = np.argsort(-S, axis=1, kind="stable")[:, :12]
    for chunk in (1, 7, None):
        np.testing.assert_array_equal(topk.top_k(Q, V, ex, 12, chunk), ref)


def test_top_k_fewer_eligible_than_k_and_nan_scores():
    V = np.eye(4, dtype=np.float32)
    Q = np.array([[1, 2, 3, 4], [1, 1, 0, 0]], dtype=np.float32)
    V[0, 0] = np.nan  # item 0 scores NaN for every query
    ex = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    tk = topk.top_k(Q, V, ex, 4)
    assert tk[0].tolist() == [2, -1, -1, -1]
    assert tk[1].tolist() == [1, 2, 3, -1]  # NaN score never returned


def test_leakage_zero_in_group_and_one_across(split):
    ds = split.dataset
    G = int(ds.item_groups.max()) + 1
    pop = pops_mod.populations(split)[0]
    ug = pop.user_group
    # item vector = one-hot of its group; in-group model: user vector = one-hot of own group
    V = np.eye(G, dtype=np.float32)[ds.item_groups]
    onehot = np.eye(G, dtype=np.float32)[np.maximum(ug, 0)]
    per, _ = evaluator.metric_arrays(topk.top_k(onehot, V, pop.exclude, 5), pop.targets, (5,),
                             evaluator.item_popularity(split), ds.item_groups, ug)
    ok = ug >= 0
    assert np.all(per["leakage", 5][ok] == 0.0)
    per, _ = evaluator.metric_arrays(topk.top_k(-onehot, V, pop.exclude, 5), pop.targets, (5,),
                             evaluator.item_popularity(split), ds.item_groups, ug)
    assert np.all(per["leakage", 5][ok] == 1.0)


def test_summary_and_paired_comparison(split, model):
    oracle = OracleModel(split)
    pops = pops_mod.populations(split)[:1]
    a = evaluator.evaluate_model(oracle, split, KS, pops=pops)["warm"]
    b = evaluator.evaluate_model(model, split, KS, pops=pops)["warm"]
    s = population_result(a, WARM, 300, np.random.default_rng(0), split.dataset.group_names)
    assert s.users == len(pops[0].users)
    assert s.mean("recall", 10) == pytest.approx(1.0) and s.get("recall", 10).ci == (1.0, 1.0)
    assert s.mean("ndcg", 5) == pytest.approx(1.0)
    lo, hi = s.get("natural_cross_rate").ci
    assert lo <= s.mean("natural_cross_rate") <= hi
    assert s.get("coverage", 10) is not None and s.get("coverage", 10).ci is None and s.by_group
    assert sum(g.users for g in s.by_group) == int(np.sum(pops[0].user_group >= 0))
    c = uncertainty.paired_estimates(a, b, 300, np.random.default_rng(0))
    assert c["recall", 10].diff > 0 and uncertainty.is_significant(c["recall", 10].p) and c["recall", 10].p < 0.05
    same = uncertainty.paired_estimates(b, b, 300, np.random.default_rng(0))
    assert same["recall", 10].diff == 0.0 and not uncertainty.is_significant(same["recall", 10].p)


def test_serving_cost_and_cache(split, model):
    s = cost.serving_cost(model, split, 10, np.random.default_rng(0), n_sample=20)
    assert s["sample_users"] == 20 and s["query_ms_p50"] <= s["query_ms_p99"]
    assert s["cache_bytes"] is None and s["model_bytes"] == model.U.nbytes + model.V.nbytes

    class StaticModel(FixedModel):
        capabilities = Capabilities(candidate_cache=True)

    m2 = StaticModel(split.dataset.n_users, split.dataset.n_items, {"country": 10, "age_band": 10})
    s2 = cost.serving_cost(m2, split, 10, np.random.default_rng(0), n_sample=5)
    assert s2["cache_bytes"] == len(split.warm_users) * 10 * 4 and s2["cache_build_seconds"] >= 0


def test_embedding_map_separates_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 50)
    V = rng.normal(size=(100, 8)) * 0.1 + np.where(groups[:, None] == 0, 1.0, -1.0)
    m = maps.embedding_map(V, rng)
    x = m["xy"][:, 0]
    assert np.sign(x[:50]).std() == 0 and np.sign(x[50:]).std() == 0 and np.sign(x[0]) != np.sign(x[-1])
    assert m["explained"][0] > 0.9


@pytest.mark.parametrize("k", [1, 7, 40])
def test_top_k_kernel_long_rows_ties_nan_inf_match_reference(k):
    # rows long enough for the block-max threshold (many 64-score blocks per k), heavy ties, NaN and
    # +-inf scores, a fully NaN block, a fully excluded block and rows with fewer than k eligible items
    from mfvsdnn.core.topk_kernels import topk_rows, topk_rows_serial

    rng = np.random.default_rng(11)
    r, n = 9, 3001
    S = rng.integers(-20, 21, (r, n)).astype(np.float32)
    S[rng.random((r, n)) < 0.02] = np.nan
    S[rng.random((r, n)) < 0.01] = np.inf
    S[rng.random((r, n)) < 0.01] = -np.inf
    S[0, 128:192] = np.nan
    S[1, :] = np.nan
    S[1, [5, 2000]] = [3.0, 3.0]
    S[2, :] = -np.inf
    S[3, 2900:] = 50.0  # the best items at the end of the row (the tail block)
    ex = sp.random(r, n, density=0.05, format="csr", random_state=2)
    ex = sp.csr_matrix(ex + sp.csr_matrix((np.ones(64), (np.full(64, 4), np.arange(640, 704))), shape=(r, n)))
    ref_S = np.where(np.isnan(S), -np.inf, S)
    ref_S[ex.nonzero()] = -np.inf
    ref = np.argsort(-ref_S, axis=1, kind="stable")[:, :k]
    ref_s = np.take_along_axis(ref_S, ref, axis=1)
    ref[ref_s == -np.inf] = -1
    for kernel in (topk_rows, topk_rows_serial):
        idx, sc = np.empty((r, k), np.int64), np.empty((r, k), np.float32)
        kernel(S.copy(), ex.indptr.astype(np.int64), ex.indices.astype(np.int64), k, idx, sc)
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_array_equal(sc, ref_s)
