"""Split invariants: disjoint, complete, deterministic, row-order independent, seed dependent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfvsdnn.core.errors import SplitError
from mfvsdnn.data import ColumnSpec, read_interactions
from mfvsdnn.data.split import SplitConfig, make_split
from mfvsdnn.data.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = generate(SyntheticConfig(users=300, items=120, groups=3, seed=1))
    df["ts"] = np.random.default_rng(0).integers(0, 10_000, len(df))
    return df


def load(tmp_path, df, name="d.csv", **cols):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return read_interactions(p, ColumnSpec(**cols))


def pairs(ds, m):
    r, c = m.nonzero()
    return {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(r, c)}


@pytest.mark.parametrize("strategy", ["random", "temporal"])
def test_parts_are_disjoint_and_complete(tmp_path, frame, strategy):
    ds = load(tmp_path, frame, time_col="ts")
    s = make_split(ds, SplitConfig(seed=3, strategy=strategy))
    cold_full = s.cold.copy()
    cold_full.data[:] = 1
    parts = [s.train, s.valid, s.test, cold_full]
    total = sum(p.nnz for p in parts)
    assert total == ds.nnz
    union = parts[0] + parts[1] + parts[2] + parts[3]
    assert union.nnz == ds.nnz and union.max() == 1  # no overlap: every entry counted once
    train_users = set(np.flatnonzero(np.diff(s.train.indptr)))
    assert train_users.isdisjoint(s.cold_users)  # cold users never train
    warm = np.setdiff1d(np.arange(ds.n_users), s.cold_users)
    assert np.all(np.diff(s.train.indptr)[warm] >= 1)  # every warm user keeps >= 1 training item
    assert 0.03 < len(s.cold_users) / ds.n_users < 0.2


def test_temporal_holds_out_the_latest(tmp_path, frame):
    ds = load(tmp_path, frame, time_col="ts")
    s = make_split(ds, SplitConfig(seed=0, strategy="temporal", valid_frac=0.0))
    for u in s.warm_eval_users[:50]:
        lo, hi = ds.matrix.indptr[u], ds.matrix.indptr[u + 1]
        t = dict(zip(ds.matrix.indices[lo:hi], ds.times[lo:hi]))
        tr = s.train.indices[s.train.indptr[u]:s.train.indptr[u + 1]]
        te = s.test.indices[s.test.indptr[u]:s.test.indptr[u + 1]]
        assert max(t[i] for i in tr) <= min(t[i] for i in te)


def test_same_seed_same_split_when_rows_are_shuffled(tmp_path, frame):
    a = load(tmp_path, frame, "a.csv")
    b = load(tmp_path, frame.sample(frac=1.0, random_state=7), "b.csv")
    sa, sb = make_split(a, SplitConfig(seed=5)), make_split(b, SplitConfig(seed=5))
    for part in ("train", "valid", "test"):
        assert pairs(a, getattr(sa, part)) == pairs(b, getattr(sb, part))
    assert set(a.user_ids[sa.cold_users]) == set(b.user_ids[sb.cold_users])
    assert pairs(a, sa.cold_history(3)) == pairs(b, sb.cold_history(3))
    assert sa.fingerprint != sb.fingerprint  # different file bytes


def test_different_seeds_differ_and_fingerprint_tracks_params(tmp_path, frame):
    ds = load(tmp_path, frame)
    s1, s2 = make_split(ds, SplitConfig(seed=1)), make_split(ds, SplitConfig(seed=2))
    assert pairs(ds, s1.test) != pairs(ds, s2.test)
    assert s1.fingerprint != s2.fingerprint
    assert make_split(ds, SplitConfig(seed=1)).fingerprint == s1.fingerprint
    assert make_split(ds, SplitConfig(seed=1, test_frac=0.3)).fingerprint != s1.fingerprint


def test_cold_revealed_histories(tmp_path, frame):
    ds = load(tmp_path, frame)
    s = make_split(ds, SplitConfig(seed=4, revealed=(0, 1, 3, 5)))
    users = s.cold_eval_users
    assert len(users) > 0
    targets = s.cold_targets()
    prev = None
    for r in (0, 1, 3, 5):
        h = s.cold_history(r)
        n = np.diff(h.indptr)[users]
        assert np.all(n == r)
        all_items = ds.matrix[users]
        assert (h[users] - h[users].multiply(all_items)).nnz == 0  # revealed subset of the user's items
        assert h[users].multiply(targets[users]).nnz == 0  # never a target
        if prev is not None:
            assert (prev - prev.multiply(h)).nnz == 0  # histories grow: r=1 inside r=3
        prev = h
    assert np.all(np.diff(targets.indptr)[users] >= 1)


def test_explicit_test_file_makes_unseen_users_cold(tmp_path):
    (tmp_path / "tr.csv").write_text("user_id,item_id\na,x\na,y\nb,x\nb,z\n")
    (tmp_path / "te.csv").write_text("user_id,item_id\na,z\nc,x\nc,y\nc,z\n")
    ds = read_interactions(tmp_path / "tr.csv", test_path=tmp_path / "te.csv")
    s = make_split(ds, SplitConfig(seed=0, valid_frac=0.0, revealed=(0, 1)))
    assert pairs(ds, s.test) == {("a", "z")}
    assert list(ds.user_ids[s.cold_users]) == ["c"]
    assert pairs(ds, s.train) == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "z")}


def test_held_out_items_without_training_interactions_are_counted(tmp_path):
    # trained items: x, y, z. Warm test: a-w, b-w, b-y; cold user c (revealed 0: every row a target):
    # c-v, c-w, c-x. Held out on an untrained item: a-w, b-w, c-v, c-w = 4 rows over 2 items (v, w).
    (tmp_path / "tr.csv").write_text("user_id,item_id\na,x\na,y\nb,x\nb,z\n")
    (tmp_path / "te.csv").write_text("user_id,item_id\na,w\nb,w\nb,y\nc,v\nc,w\nc,x\n")
    ds = read_interactions(tmp_path / "tr.csv", test_path=tmp_path / "te.csv")
    s = make_split(ds, SplitConfig(seed=0, valid_frac=0.0, revealed=(0,)))
    assert pairs(ds, s.test) == {("a", "w"), ("b", "w"), ("b", "y")} and s.cold_targets().nnz == 3
    summary = s.summary()
    assert summary["held_out_interactions_untrained_item"] == 4
    assert summary["held_out_untrained_items"] == 2


def test_held_out_untrained_counts_match_a_loop(tmp_path):
    # many items for few users, so some held-out items are never trained on
    df = generate(SyntheticConfig(users=80, items=400, groups=3, seed=1))
    s = make_split(load(tmp_path, df), SplitConfig(seed=5, cold_users=0.2, test_frac=0.3))
    ds = s.dataset
    trained = {ds.item_ids[j] for j in s.train.indices}
    held_out = [(u, i) for u, i in pairs(ds, s.test) | pairs(ds, s.cold_targets()) if i not in trained]
    assert len(held_out) > 0
    assert s.untrained_held_out() == (len(held_out), len({i for _, i in held_out}))


def test_bad_split_parameters():
    with pytest.raises(SplitError, match="--cold-users"):
        SplitConfig(cold_users=1.5)
    with pytest.raises(SplitError, match="--test-frac"):
        SplitConfig(test_frac=-0.1)


def test_temporal_needs_time_column(tmp_path, frame):
    ds = load(tmp_path, frame)
    with pytest.raises(SplitError, match="--time-col"):
        make_split(ds, SplitConfig(strategy="temporal"))
