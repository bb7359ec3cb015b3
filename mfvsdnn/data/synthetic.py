"""Grouped synthetic interaction data: the folding laboratory.

Users and items each belong to one of ``G`` groups (think languages). A user interacts mostly with
items of their own group; a tunable fraction ``cross_rate`` of their interactions goes to items of
other groups. Which items, within the allowed set, follows a score

    score(u, j) = -zipf * log(rank_j) + <taste_u, taste_j> * TASTE_SCALE / sqrt(taste_dim)

where ``rank_j`` is the item's popularity rank *within its own group* (every group has its own
head) and the tastes live in one latent space shared by all groups (so a model that ignores the
group structure folds groups onto each other). Items are drawn without replacement with
probabilities proportional to ``exp(score)`` (Gumbel-top-k), so there are no duplicates to remove
and the measured cross-group rate is unbiased.

Users carry two informative categorical features:

- ``country``: with probability ``HOME_COUNTRY_SHARE`` the home country of the user's group
  (``c{g}_a``), else uniformly one of the other countries (each group owns
  ``COUNTRIES_PER_GROUP`` countries ``c{g}_a``, ``c{g}_b``, ...).
- ``age_band``: the first taste component plus noise, cut into ``AGE_BANDS``; the first taste
  component carries the largest share of the affinity variance, so the band predicts taste.

Every random choice comes from one ``np.random.Generator(np.random.PCG64(seed))``, consumed in a
fixed order: the same config gives a byte-identical CSV.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

__all__ = [
    "AGE_BANDS",
    "COLUMNS",
    "COUNTRIES_PER_GROUP",
    "HOME_COUNTRY_SHARE",
    "SyntheticConfig",
    "generate",
    "write_csv",
]

#: Output columns, in order.
COLUMNS: tuple[str, ...] = ("user_id", "item_id", "user_group", "item_group", "country", "age_band")
#: Age bands, youngest first; the band is a noisy quantisation of the first taste component.
AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-49", "50+")
#: Target share of users in each band (cumulative cut points are taken from a normal law).
AGE_BAND_SHARES: tuple[float, ...] = (0.2, 0.3, 0.3, 0.2)
#: Standard deviation of the noise added to the first taste component before banding.
AGE_NOISE: float = 0.5
#: Countries owned by each group: ``c{g}_a`` (the home country), ``c{g}_b``, ...
COUNTRIES_PER_GROUP: int = 2
#: Probability that a user's country is the home country of their group.
HOME_COUNTRY_SHARE: float = 0.85
#: Standard deviation of the taste affinity term, in log-odds units.
TASTE_SCALE: float = 1.5
#: Minimum number of interactions per user.
MIN_INTERACTIONS: int = 3
#: Bound on the number of score cells materialised at once while sampling.
_MAX_CELLS: int = 1 << 21
#: Candidate sets larger than this are sampled by :func:`_proposal_top_k` instead of exactly.
DENSE_MAX_COLS: int = 4096
#: Proposal pool size per user: ``PROPOSAL_FACTOR * k + PROPOSAL_EXTRA`` candidates.
PROPOSAL_FACTOR: int = 4
PROPOSAL_EXTRA: int = 32


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the grouped synthetic generator.

    Parameters
    ----------
    users : int
        Number of users (>= 1).
    items : int
        Number of items (>= groups and >= 3).
    groups : int
        Number of user/item groups (>= 1).
    cross_rate : float
        Expected fraction of interactions with items outside the user's group, in [0, 1]. Must be
        0 when ``groups == 1``.
    mean_interactions : float
        Mean number of interactions per user (>= 3). Counts are ``2 + Geometric`` (minimum 3),
        capped at the size of the user's group (or 3 if the group is smaller), so the realised
        mean is slightly lower when groups are small.
    taste_dim : int
        Dimension of the latent taste space shared by all groups (>= 1).
    zipf : float
        Popularity exponent within a group (>= 0; 0 means no popularity bias).
    seed : int
        Seed of the single PCG64 generator (>= 0).

    Notes
    -----
    Constructing a config never raises; ``validate()`` (called by ``generate`` and ``write_csv``)
    raises ``ValueError`` naming the offending field.
    """

    users: int = 3000
    items: int = 1000
    groups: int = 4
    cross_rate: float = 0.05
    mean_interactions: float = 20
    taste_dim: int = 8
    zipf: float = 1.0
    seed: int = 0

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the offending field."""

        def is_int(x: object) -> bool:
            return isinstance(x, int | np.integer) and not isinstance(x, bool)

        def is_real(x: object) -> bool:
            return (
                isinstance(x, int | float | np.integer | np.floating)
                and not isinstance(x, bool)
                and math.isfinite(float(x))
            )

        for name in ("users", "items", "groups", "taste_dim", "seed"):
            if not is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("cross_rate", "mean_interactions", "zipf"):
            if not is_real(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")
        if self.items < max(self.groups, MIN_INTERACTIONS):
            raise ValueError(
                f"items must be >= groups ({self.groups}) and >= {MIN_INTERACTIONS} "
                f"(the minimum interactions per user), got {self.items}"
            )
        if not 0.0 <= self.cross_rate <= 1.0:
            raise ValueError(f"cross_rate must be in [0, 1], got {self.cross_rate}")
        if self.groups == 1 and self.cross_rate != 0:
            raise ValueError(
                f"cross_rate must be 0 when groups is 1 (there is no other group), "
                f"got {self.cross_rate}"
            )
        if self.mean_interactions < MIN_INTERACTIONS:
            raise ValueError(
                f"mean_interactions must be >= {MIN_INTERACTIONS}, got {self.mean_interactions}"
            )
        if self.taste_dim < 1:
            raise ValueError(f"taste_dim must be >= 1, got {self.taste_dim}")
        if self.zipf < 0:
            raise ValueError(f"zipf must be >= 0, got {self.zipf}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def _within_group_rank(rng: np.random.Generator, item_group: np.ndarray) -> np.ndarray:
    """Random popularity rank of each item inside its group.

    Parameters
    ----------
    rng : np.random.Generator
    item_group : np.ndarray, shape (items,), int
        Group of each item.

    Returns
    -------
    np.ndarray, shape (items,), int64
        Rank 1..n_g of each item among the items of its group.
    """
    tiebreak = rng.random(item_group.shape[0])
    order = np.lexsort((tiebreak, item_group))  # grouped, random order inside each group
    sorted_groups = item_group[order]
    starts = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(item_group.shape[0], dtype=np.int64)
    rank[order] = np.arange(item_group.shape[0]) - starts + 1
    return rank


def _split_counts(
    rng: np.random.Generator,
    n: np.ndarray,
    cross_rate: float,
    cap_in: np.ndarray,
    cap_out: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Split each user's interaction count into in-group and cross-group parts.

    ``n_out ~ Binomial(n, cross_rate)``, so ``E[sum n_out] / sum n = cross_rate`` exactly; counts
    that exceed what a side can hold move to the other side. With ``n`` capped at the group size
    this only happens for degenerate configs (a group with fewer than 3 items forces cross-group
    interactions even at ``cross_rate = 0``; ``cross_rate`` near 1 with two unequal groups).

    Parameters
    ----------
    rng : np.random.Generator
    n : np.ndarray, shape (users,), int64
        Total interactions per user, ``n <= cap_in + cap_out``.
    cross_rate : float
    cap_in, cap_out : np.ndarray, shape (users,), int64
        Number of items inside / outside each user's group.

    Returns
    -------
    n_in, n_out : np.ndarray, shape (users,), int64
    """
    n_out = rng.binomial(n, cross_rate).astype(np.int64)
    n_in = n - n_out
    excess = np.maximum(n_in - cap_in, 0)
    n_in -= excess
    n_out += excess
    excess = np.maximum(n_out - cap_out, 0)
    n_out -= excess
    n_in += excess
    return n_in, n_out


def _gumbel_top_k(
    rng: np.random.Generator,
    users: np.ndarray,
    k: np.ndarray,
    cols: np.ndarray,
    user_taste: np.ndarray,
    item_taste: np.ndarray,
    log_prior: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``k[i]`` distinct items from ``cols`` for each user, P ∝ exp(score), no replacement.

    Adding i.i.d. Gumbel noise to the scores and keeping the top ``k`` is an exact sample without
    replacement (Plackett-Luce). Users are processed in chunks sorted by ``k`` so that each chunk
    holds at most ``_MAX_CELLS`` scores and the partial sort only goes as deep as needed.

    Parameters
    ----------
    rng : np.random.Generator
    users : np.ndarray, shape (m,), int64
        User indices.
    k : np.ndarray, shape (m,), int64
        Items to draw per user, ``0 <= k <= len(cols)``.
    cols : np.ndarray, shape (c,), int64
        Candidate item indices.
    user_taste : np.ndarray, shape (users_total, d)
    item_taste : np.ndarray, shape (items_total, d)
        Item tastes, already scaled so that ``user_taste @ item_taste.T`` is the affinity.
    log_prior : np.ndarray, shape (items_total,)
        Popularity log-prior of each item.

    Returns
    -------
    u, j : np.ndarray, shape (sum(k),), int64
        User and item index of each drawn interaction.
    """
    keep = k > 0
    users, k = users[keep], k[keep]
    if users.size == 0 or cols.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    order = np.argsort(k, kind="stable")
    users, k = users[order], k[order]
    v = item_taste[cols]
    prior = log_prior[cols]
    chunk = max(1, _MAX_CELLS // cols.size)
    out_u: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    for start in range(0, users.size, chunk):
        u = users[start : start + chunk]
        kk = k[start : start + chunk]
        kmax = int(kk[-1])
        keys = user_taste[u] @ v.T
        keys += prior
        keys += rng.gumbel(size=keys.shape)
        if kmax < cols.size:
            top = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
        else:
            top = np.broadcast_to(np.arange(cols.size), keys.shape)
        top_keys = np.take_along_axis(keys, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-top_keys, axis=1, kind="stable"), axis=1)
        mask = np.arange(kmax)[None, :] < kk[:, None]
        out_u.append(np.broadcast_to(u[:, None], top.shape)[mask])
        out_j.append(cols[top[mask]])
    return np.concatenate(out_u), np.concatenate(out_j)


def _proposal_top_k(
    rng: np.random.Generator,
    users: np.ndarray,
    k: np.ndarray,
    cols: np.ndarray,
    user_taste: np.ndarray,
    item_taste: np.ndarray,
    log_prior: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_gumbel_top_k` for large catalogues, in O(sum(k)) instead of O(users x cols).

    Sampling-importance-resampling: each user draws ``PROPOSAL_FACTOR * k + PROPOSAL_EXTRA``
    candidates from the popularity prior (with replacement), scores them by taste affinity plus
    Gumbel noise, drops repeated candidates and keeps the top ``k``. As the candidate pool grows this
    tends to the exact draw ∝ exp(prior + affinity); at the default pool size it is a close
    approximation (used only when a candidate set exceeds ``DENSE_MAX_COLS`` items, e.g. by
    ``mfvsdnn scale``; the shipped sample is drawn exactly). A user may receive fewer than ``k``
    distinct items when the pool repeats itself (rare: only with very peaked popularity).

    Shapes as in :func:`_gumbel_top_k`.
    """
    keep = k > 0
    users, k = users[keep], k[keep]
    if users.size == 0 or cols.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    p = np.exp(log_prior[cols] - log_prior[cols].max())
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    pool = PROPOSAL_FACTOR * k + PROPOSAL_EXTRA
    ends = np.cumsum(pool)
    out_u: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    start = 0
    while start < users.size:
        # users [start, stop) hold at most _MAX_CELLS candidates (at least one user)
        base = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + _MAX_CELLS, side="right")))
        u = np.repeat(users[start:stop], pool[start:stop])
        cand = cols[np.minimum(np.searchsorted(cdf, rng.random(u.size), side="right"), cols.size - 1)]
        keys = np.einsum("nd,nd->n", user_taste[u], item_taste[cand]) + rng.gumbel(size=u.size)
        order = np.argsort(-keys, kind="stable")  # best key first
        u, cand = u[order], cand[order]
        pair = np.argsort(u * np.int64(log_prior.size) + cand, kind="stable")  # by pair, best first
        first = np.ones(u.size, dtype=bool)
        pu, pc = u[pair], cand[pair]
        first[1:] = (pu[1:] != pu[:-1]) | (pc[1:] != pc[:-1])
        keep_first = np.empty(u.size, dtype=bool)
        keep_first[pair] = first  # back in best-key-first order
        u, cand = u[keep_first], cand[keep_first]
        order = np.argsort(u, kind="stable")  # by user, best key first within the user
        u, cand = u[order], cand[order]
        pos = np.arange(u.size) - np.searchsorted(u, u, side="left")
        take = pos < np.repeat(k[start:stop], np.bincount(np.searchsorted(users[start:stop], u),
                                                           minlength=stop - start))
        out_u.append(u[take])
        out_j.append(cand[take])
        start = stop
    return np.concatenate(out_u), np.concatenate(out_j)


def _labels(prefix: str, count: int, min_width: int) -> np.ndarray:
    """Zero-padded fixed-width labels ``prefix + digits``; shape (count,), dtype object."""
    width = max(min_width, len(str(count - 1)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(count)], dtype=object)


def generate(config: SyntheticConfig) -> pd.DataFrame:
    """Generate a grouped synthetic interaction log.

    Parameters
    ----------
    config : SyntheticConfig

    Returns
    -------
    pandas.DataFrame, shape (rows, 6)
        Columns ``COLUMNS`` = user_id, item_id, user_group, item_group, country, age_band, all
        strings. One row per unique (user, item), sorted by user then item; each user has at
        least 3 rows and repeats their constant features on every row. Ids are fixed-width
        (``u000123``, ``i00042``), groups ``g0..g{G-1}``, countries ``c{g}_a``, ``c{g}_b``, age
        bands from ``AGE_BANDS``. Users and items that received no interaction do not appear
        (every user has >= 3; an item may get none).

    Raises
    ------
    ValueError
        If the config is invalid.
    """
    config.validate()
    rng = np.random.Generator(np.random.PCG64(config.seed))
    n_users, n_items, n_groups, d = config.users, config.items, config.groups, config.taste_dim

    # Items: balanced groups in random order, popularity rank inside the group.
    item_group = rng.permutation(np.arange(n_items, dtype=np.int64) % n_groups)
    rank = _within_group_rank(rng, item_group)
    log_prior = -float(config.zipf) * np.log(rank.astype(np.float64))

    # Tastes: one latent space for all groups; component k has weight ∝ 1/(k+1) in the
    # affinity, so the first component (which decides the age band) matters most.
    weights = 1.0 / np.arange(1, d + 1, dtype=np.float64)
    weights *= d / weights.sum()
    user_taste = rng.standard_normal((n_users, d))
    item_taste = rng.standard_normal((n_items, d)) * np.sqrt(weights)
    item_taste *= TASTE_SCALE / math.sqrt(d)  # affinity ~ N(0, TASTE_SCALE^2)

    # Users: group, country, age band.
    user_group = rng.integers(0, n_groups, size=n_users, dtype=np.int64)
    n_countries = n_groups * COUNTRIES_PER_GROUP
    home = user_group * COUNTRIES_PER_GROUP
    other = rng.integers(0, max(n_countries - 1, 1), size=n_users, dtype=np.int64)
    other += other >= home  # uniform over the countries other than home
    at_home = rng.random(n_users) < HOME_COUNTRY_SHARE
    country = np.where(at_home, home, other)
    z = user_taste[:, 0] + AGE_NOISE * rng.standard_normal(n_users)
    law = NormalDist(0.0, math.sqrt(1.0 + AGE_NOISE**2))
    cuts = np.array([law.inv_cdf(c) for c in np.cumsum(AGE_BAND_SHARES)[:-1]])
    band = np.searchsorted(cuts, z)

    # Interaction counts: 2 + Geometric(mean - 2), i.e. min 3 and the requested mean.
    n = 2 + rng.geometric(1.0 / (float(config.mean_interactions) - 2.0), size=n_users)
    # Capped at the size of the user's group (at least 3), so that the binomial split below
    # almost never has to move interactions across the group boundary (which would bias the rate).
    group_size = np.bincount(item_group, minlength=n_groups)
    cap_in = group_size[user_group]
    n = np.minimum(n.astype(np.int64), np.maximum(cap_in, MIN_INTERACTIONS))
    n_in, n_out = _split_counts(rng, n, float(config.cross_rate), cap_in, n_items - cap_in)

    # Sampling, group by group: own-group items, then the other groups' items.
    parts_u: list[np.ndarray] = []
    parts_j: list[np.ndarray] = []
    for g in range(n_groups):
        members = np.flatnonzero(user_group == g)
        inside = item_group == g
        for k, cols in ((n_in, np.flatnonzero(inside)), (n_out, np.flatnonzero(~inside))):
            draw = _gumbel_top_k if cols.size <= DENSE_MAX_COLS else _proposal_top_k
            u, j = draw(rng, members, k[members], cols, user_taste, item_taste, log_prior)
            parts_u.append(u)
            parts_j.append(j)
    u = np.concatenate(parts_u)
    j = np.concatenate(parts_j)
    order = np.lexsort((j, u))
    u, j = u[order], j[order]

    group_labels = np.array([f"g{g}" for g in range(n_groups)], dtype=object)
    country_labels = np.array(
        [
            f"c{c // COUNTRIES_PER_GROUP}_{chr(ord('a') + c % COUNTRIES_PER_GROUP)}"
            for c in range(n_countries)
        ],
        dtype=object,
    )
    band_labels = np.array(AGE_BANDS, dtype=object)
    return pd.DataFrame(
        {
            "user_id": _labels("u", n_users, 6)[u],
            "item_id": _labels("i", n_items, 5)[j],
            "user_group": group_labels[user_group[u]],
            "item_group": group_labels[item_group[j]],
            "country": country_labels[country[u]],
            "age_band": band_labels[band[u]],
        },
        columns=list(COLUMNS),
    )


def write_csv(config: SyntheticConfig, path: str | os.PathLike[str], overwrite: bool = False) -> int:
    """Generate data for ``config`` and write it as CSV, atomically.

    The CSV (header, ``\\n`` line endings, no index) is written to a temporary file in the target
    directory and renamed into place with ``os.replace``, so readers never see a partial file.
    Missing parent directories are created; the file's mode follows the umask.

    Parameters
    ----------
    config : SyntheticConfig
    path : str or os.PathLike
        Destination file. An existing file is replaced only if it is empty or was written by
        mfvsdnn (its first line is exactly the header ``user_id,item_id,...``), or ``overwrite``.
    overwrite : bool
        Replace any existing file.

    Returns
    -------
    int
        Number of data rows written (header excluded).

    Raises
    ------
    ValueError
        If the config is invalid (nothing is written).
    mfvsdnn.core.errors.StoreError
        If the file may not or cannot be written (another file is there, a full disk, ...).
    """
    from ..core.fsutil import write_file_atomic

    df = generate(config)
    write_file_atomic(path, lambda fh: df.to_csv(fh, index=False, lineterminator="\n"), option="",
                      header=",".join(COLUMNS), overwrite=overwrite)
    return len(df)
