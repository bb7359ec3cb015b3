"""Identical item vectors are indexed once: known groups, the hash-collision fallback, and exact answers
from HNSW / IVF on the popularity baselines' tied vectors (where a graph over the duplicates fails)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core.errors import StoreError
from mfvsdnn.core.topk import top_k_with_scores
from mfvsdnn.models import distinct as distinct_mod
from mfvsdnn.models.distinct import distinct_rows, expand_best
from mfvsdnn.models.index import HNSWIndex, IVFIndex, overlap_recall

faiss = pytest.importorskip("faiss")


def _groups(d: distinct_mod.DistinctRows) -> list[list[int]]:
    return [d.members[d.ptr[g]:d.ptr[g + 1]].tolist() for g in range(d.n_groups)]


def test_identical_rows_are_grouped_in_item_order():
    a, b, c = [1.0, 2.0], [0.5, -1.0], [3.0, 3.0]
    x = np.array([a, b, a, [0.0, 0.0], [-0.0, 0.0], b, c, a], dtype=np.float32)
    d = distinct_rows(x)
    assert d.first.tolist() == [0, 1, 3, 6]
    assert _groups(d) == [[0, 2, 7], [1, 5], [3, 4], [6]]  # -0.0 is 0.0, as for a dot product
    assert d.sizes.tolist() == [3, 2, 2, 1] and d.nbytes == 8 * (4 + 5 + 8 + 4)
    assert distinct_rows(np.eye(5, dtype=np.float32)) is None  # nothing to group: no detour
    assert distinct_rows(np.ones((1, 3), np.float32)) is None


def test_a_hash_collision_of_distinct_rows_falls_back_to_the_rows_themselves(monkeypatch):
    x = np.array([[1.0], [2.0], [1.0], [3.0], [2.0]], dtype=np.float32)
    honest = _groups(distinct_rows(x))
    monkeypatch.setattr(distinct_mod, "_row_hashes", lambda v: np.zeros(len(v), dtype=np.uint64))
    assert _groups(distinct_rows(x)) == honest == [[0, 2], [1, 4], [3]]


def _popularity_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    # like the most-popular baseline's: one coordinate, a training count over the largest, heavily tied
    counts = np.minimum(rng.zipf(1.6, n) - 1, 400)
    return (counts / counts.max())[:, None].astype(np.float32)


def _exclude(rng: np.random.Generator, q: int, n: int, per_row: list[int]) -> sp.csr_matrix:
    rows = np.repeat(np.arange(q), per_row)
    cols = np.concatenate([rng.choice(n, c, replace=False) for c in per_row])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(q, n))


@pytest.mark.parametrize("make", [lambda: HNSWIndex(), lambda: HNSWIndex(graph="inner-product", storage="flat"),
                                  lambda: IVFIndex(64)], ids=["hnsw", "hnsw-ip", "ivf"])
def test_tied_popularity_vectors_get_the_exact_lists(make):
    rng = np.random.default_rng(0)
    items = _popularity_vectors(rng, 3000)
    assert len(np.unique(items)) < 200 and (items == 0).sum() > 1000  # the case the graph alone fails on
    queries = np.ones((12, 1), np.float32)
    per_row = [0, 5, 60, 300] * 3
    ex = _exclude(rng, 12, 3000, per_row)
    with pytest.warns(UserWarning, match="all zero"):
        index = make().build(items)
    assert index.n_indexed == len(np.unique(items)) and index.index.ntotal == index.n_indexed
    found, scores = index.search(queries, 20, ex)
    ref, ref_s = top_k_with_scores(queries, items, ex, 20)
    # ties go to the lower item index in both, so the lists are the same items, not just the same scores
    assert overlap_recall(found, ref) == 1.0 and np.array_equal(found, ref)
    assert np.allclose(scores, ref_s)
    # a read-back index finds the same groups again from the vectors
    again = type(index).from_faiss(faiss.deserialize_index(faiss.serialize_index(index.index)), items,
                                   index.search_param)
    assert np.array_equal(again.search(queries, 20, ex)[0], found)


def test_expanded_groups_stop_at_k_plus_the_excluded_and_pad_when_too_few_remain():
    # items 0..5 in three groups: {0, 3, 4} score 3, {1, 5} score 2, {2} score 1 for the query [1]
    items = np.array([[3.0], [2.0], [1.0], [3.0], [3.0], [2.0]], dtype=np.float32)
    d = distinct_rows(items)
    group_vectors = items[d.first]
    queries = np.ones((3, 1), np.float32)
    candidates = np.array([[2, 0, 1], [0, 1, -1], [1, -1, -1]])  # faiss's order is not trusted: rescored
    ex = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 1], [3, 5, 0])), shape=(3, 6))
    found, scores = expand_best(candidates, queries, group_vectors, d, ex, 4)
    assert found.tolist() == [[0, 4, 1, 2], [3, 4, 1, 5], [1, 5, -1, -1]]
    assert scores[0].tolist() == [3, 3, 2, 1] and np.isinf(scores[2, 2:]).all()


def test_group_popularity_ties_across_groups_keep_their_scores():
    # group-popularity's vectors: many distinct vectors, items of other groups tied on the last column
    rng = np.random.default_rng(3)
    n, groups = 1500, 6
    g = rng.integers(0, groups, n)
    counts = np.minimum(rng.zipf(1.8, n) - 1, 60)
    v = np.zeros((n, groups + 1), np.float32)
    v[:, -1] = counts / (counts.max() + 1)
    group_max = np.zeros(groups)
    np.maximum.at(group_max, g, counts)
    v[np.arange(n), g] = 1.0 + counts / np.maximum(group_max[g], 1)
    queries = np.zeros((groups, groups + 1), np.float32)
    queries[np.arange(groups), np.arange(groups)] = 1.0
    queries[:, -1] = 1.0
    ex = _exclude(rng, groups, n, [0, 10, 40, 0, 10, 40])
    index = HNSWIndex(200).build(v)
    assert index.distinct is not None and index.n_indexed < n
    found, scores = index.search(queries, 50, ex)
    ref_s = top_k_with_scores(queries, v, ex, 50)[1]
    assert np.allclose(scores, ref_s)  # which of several tied items comes first may differ: the scores may not
    for r in range(groups):
        assert not np.isin(found[r], ex[r].indices).any() and len(set(found[r])) == 50


def test_a_stored_popularity_index_round_trips(tmp_path):
    from mfvsdnn.data import ColumnSpec, dataset_from_frame
    from mfvsdnn.data.split import SplitConfig, make_split
    from mfvsdnn.data.synthetic import SyntheticConfig, generate
    from mfvsdnn.experiment import runner
    from mfvsdnn.experiment.spec import ModelSpec
    from mfvsdnn.models.store import load_index, load_run, run_index, save_index

    frame = generate(SyntheticConfig(users=200, items=300, groups=3, mean_interactions=8, seed=2))
    ds = dataset_from_frame(frame, ColumnSpec(user_col="user_id", item_col="item_id"), name="tiny")
    split = make_split(ds, SplitConfig(seed=2, cold_users=0.0, test_frac=0.2, valid_frac=0.0))
    out = tmp_path / "pop"
    runner.fit_model(ModelSpec("popularity", {}), split, 2, save_to=out)
    run = load_run(out)
    with pytest.warns(UserWarning):  # items never seen in training: zero vectors
        built, fresh = run_index(run, "hnsw")
    assert fresh and built.distinct is not None
    again, fresh_again = run_index(load_run(out), "hnsw")
    assert not fresh_again and again.n_indexed == built.n_indexed
    queries = np.ones((3, 1), np.float32)
    assert np.array_equal(again.search(queries, 10)[0], built.search(queries, 10)[0])
    # an index stored over every vector (as before identical ones were grouped) is refused, then rebuilt
    with pytest.warns(UserWarning):
        save_index(out, HNSWIndex(group_identical=False).build(run.model.item_vectors))
    with pytest.raises(StoreError, match=f"indexes {run.model.item_vectors.shape[0]:,} vectors"):
        load_index(out, "hnsw", np.asarray(run.model.item_vectors, np.float32))
    with pytest.warns(UserWarning):
        rebuilt, fresh = run_index(load_run(out), "hnsw")
    assert fresh and rebuilt.n_indexed == built.n_indexed


def test_groups_match_a_reference_on_random_repeats():
    # 600 rows drawn from 40 base rows plus 200 distinct ones: the groups of a dict keyed by row bytes
    rng = np.random.default_rng(11)
    base = rng.normal(size=(40, 6)).astype(np.float32)
    x = np.concatenate([base[rng.integers(0, 40, 600)], rng.normal(size=(200, 6)).astype(np.float32)])
    x = x[rng.permutation(len(x))]
    reference: dict[bytes, list[int]] = {}
    for i, row in enumerate(x):
        reference.setdefault(row.tobytes(), []).append(i)
    d = distinct_rows(x)
    assert _groups(d) == sorted(reference.values()) and d.first.tolist() == sorted(g[0] for g in reference.values())
    assert np.array_equal(d.sizes, np.diff(d.ptr))
