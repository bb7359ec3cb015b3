"""Tests of the grouped synthetic generator (mfvsdnn.data.synthetic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfvsdnn.data.synthetic import AGE_BANDS, COLUMNS, SyntheticConfig, generate, write_csv

SMALL = SyntheticConfig(users=800, items=400, groups=4, seed=3)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return generate(SMALL)


def _cross_rate(df: pd.DataFrame) -> float:
    return float((df["user_group"] != df["item_group"]).mean())


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.3])
def test_measured_cross_rate_matches_config(rate: float) -> None:
    df = generate(SyntheticConfig(users=2000, items=400, groups=4, cross_rate=rate, seed=11))
    assert abs(_cross_rate(df) - rate) < 0.01
    if rate == 0.0:
        assert _cross_rate(df) == 0.0


def test_columns_and_formats(small: pd.DataFrame) -> None:
    assert tuple(small.columns) == COLUMNS
    assert small["user_id"].str.fullmatch(r"u\d{6}").all()
    assert small["item_id"].str.fullmatch(r"i\d{5}").all()
    assert set(small["user_group"]) <= {f"g{g}" for g in range(SMALL.groups)}
    assert set(small["item_group"]) <= {f"g{g}" for g in range(SMALL.groups)}
    assert small["country"].str.fullmatch(r"c\d+_[ab]").all()
    assert set(small["age_band"]) == set(AGE_BANDS)
    # rows sorted by (user, item); every user appears
    assert small.equals(small.sort_values(["user_id", "item_id"], ignore_index=True))
    assert small["user_id"].nunique() == SMALL.users


def test_min_interactions_no_duplicates_constant_features(small: pd.DataFrame) -> None:
    assert small.groupby("user_id").size().min() >= 3
    assert not small.duplicated(["user_id", "item_id"]).any()
    per_user = small.groupby("user_id")[["user_group", "country", "age_band"]].nunique()
    assert (per_user == 1).all().all()
    assert (small.groupby("item_id")["item_group"].nunique() == 1).all()


def test_mean_interactions_roughly_respected(small: pd.DataFrame) -> None:
    mean = small.groupby("user_id").size().mean()
    assert abs(mean - SMALL.mean_interactions) < 0.1 * SMALL.mean_interactions


def test_country_follows_group(small: pd.DataFrame) -> None:
    users = small.drop_duplicates("user_id")
    home = "c" + users["user_group"].str[1:] + "_a"
    share = float((users["country"] == home).mean())
    n_countries = users["country"].nunique()
    assert n_countries == 2 * SMALL.groups
    assert share > 0.75  # configured 0.85; chance would be 1 / n_countries = 0.125


def _band_item_chi2(df: pd.DataFrame) -> float:
    table = pd.crosstab(df["item_id"], df["age_band"]).to_numpy().astype(float)
    table = table[table.sum(axis=1) >= 20]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_age_band_is_associated_with_items(small: pd.DataFrame) -> None:
    # Permutation baseline: shuffle bands across users (keeps each user's rows together, so the
    # clustering of rows by user is the same under the null). Taste drives both band and items.
    users = small.drop_duplicates("user_id").set_index("user_id")["age_band"]
    rng = np.random.default_rng(0)
    null = []
    for _ in range(3):
        shuffled = pd.Series(rng.permutation(users.to_numpy()), index=users.index)
        null.append(_band_item_chi2(small.assign(age_band=small["user_id"].map(shuffled))))
    assert _band_item_chi2(small) > 1.5 * max(null)


def _top_decile_share(df: pd.DataFrame) -> float:
    counts = df.loc[df["item_group"] == "g0", "item_id"].value_counts().to_numpy()
    return float(counts[: max(1, counts.size // 10)].sum() / counts.sum())


def test_popularity_is_skewed_within_group(small: pd.DataFrame) -> None:
    # taste alone already skews counts a little; the Zipf prior must add clearly to that
    flat = generate(dataclasses.replace(SMALL, zipf=0.0))
    assert _top_decile_share(small) > _top_decile_share(flat) + 0.05


def test_same_seed_same_frame_different_seed_differs(small: pd.DataFrame) -> None:
    assert generate(SMALL).equals(small)
    other = generate(dataclasses.replace(SMALL, seed=SMALL.seed + 1))
    assert not other.equals(small)


def test_write_csv_is_deterministic_and_atomic(tmp_path) -> None:
    cfg = SyntheticConfig(users=200, items=60, groups=3, seed=5)
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    rows = write_csv(cfg, a)
    assert write_csv(cfg, b) == rows
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes().startswith(b"user_id,item_id,user_group,item_group,country,age_band\n")
    assert len(pd.read_csv(a, dtype=str)) == rows
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.csv", "b.csv", "sub"]


@pytest.mark.parametrize(
    "changes",
    [
        {"users": 0},
        {"items": 2, "groups": 2},
        {"items": 3, "groups": 4},
        {"groups": 0},
        {"cross_rate": -0.1},
        {"cross_rate": 1.5},
        {"cross_rate": float("nan")},
        {"groups": 1, "cross_rate": 0.05},
        {"mean_interactions": 2.5},
        {"taste_dim": 0},
        {"zipf": -1.0},
        {"seed": -1},
        {"users": 10.5},
        {"users": True},
    ],
)
def test_invalid_config_raises(changes: dict, tmp_path) -> None:
    cfg = SyntheticConfig(**changes)  # construction never raises: the CLI builds it first
    with pytest.raises(ValueError):
        cfg.validate()
    with pytest.raises(ValueError):
        generate(cfg)
    with pytest.raises(ValueError):
        write_csv(cfg, tmp_path / "never.csv")
    assert not any(tmp_path.iterdir())


@settings(max_examples=25, deadline=None)
@given(
    users=st.integers(1, 40),
    groups=st.integers(1, 5),
    extra_items=st.integers(0, 30),
    cross_rate=st.floats(0.0, 1.0),
    mean=st.floats(3.0, 12.0),
    seed=st.integers(0, 2**32),
)
def test_invariants_hold_for_small_configs(
    users: int, groups: int, extra_items: int, cross_rate: float, mean: float, seed: int
) -> None:
    items = max(groups, 3) + extra_items
    cfg = SyntheticConfig(
        users=users,
        items=items,
        groups=groups,
        cross_rate=cross_rate if groups > 1 else 0.0,
        mean_interactions=mean,
        seed=seed,
    )
    df = generate(cfg)
    sizes = df.groupby("user_id").size()
    assert len(sizes) == users and sizes.min() >= 3 and sizes.max() <= items
    assert not df.duplicated(["user_id", "item_id"]).any()
    if groups == 1 or (cross_rate == 0.0 and items // groups >= 3):
        # (a group with < 3 items forces cross-group rows so that every user has >= 3)
        assert _cross_rate(df) == 0.0
