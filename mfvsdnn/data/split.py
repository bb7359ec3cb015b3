"""The one split both models are trained and evaluated on.

Every random choice is a seeded hash of raw ids (not of row positions), so the split does not depend
on the order of the CSV's rows, and the same seed always gives the same split.

Populations
-----------
warm users : keep >= 1 training interaction; a fraction ``test_frac`` of each user's interactions is
    held out as ``test`` (random by hash, or the latest ones with ``strategy="temporal"``), and a
    fraction ``valid_frac`` of the rest as ``valid`` (for early stopping; never touches test).
cold users : a fraction ``cold_users`` of users held out whole (hash of the raw user id). Each cold
    user's interactions are put in one seeded order (time order when temporal); for every revealed
    count r in ``revealed`` the first r are the query-time history. Targets are the interactions after
    position max(revealed), so every r is scored on the same users and the same targets: the
    cold-start curve moves only because the history grows. Cold users with fewer than
    max(revealed) + 1 interactions cannot be scored at every r and are left out of cold evaluation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..core.errors import SplitError
from .loader import Dataset


@dataclass(frozen=True)
class SplitConfig:
    """Split parameters; all of them enter the fingerprint."""

    seed: int = 42
    cold_users: float = 0.1
    test_frac: float = 0.2
    valid_frac: float = 0.1
    strategy: str = "random"  # "random" | "temporal"
    revealed: tuple[int, ...] = (0, 1, 3, 5)

    def __post_init__(self) -> None:
        if not 0.0 <= self.cold_users < 1.0:
            raise SplitError(f"--cold-users must be in [0, 1), got {self.cold_users}")
        if not 0.0 <= self.test_frac < 1.0:
            raise SplitError(f"--test-frac must be in [0, 1), got {self.test_frac}")
        if not 0.0 <= self.valid_frac < 1.0 or self.test_frac + self.valid_frac >= 1.0:
            raise SplitError(
                f"--valid-frac must be in [0, 1) with test-frac + valid-frac < 1, got {self.valid_frac}"
            )
        if self.strategy not in ("random", "temporal"):
            raise SplitError(f"--split must be 'random' or 'temporal', got {self.strategy!r}")
        if not self.revealed or any(r < 0 for r in self.revealed):
            raise SplitError(f"--revealed must be a non-empty list of counts >= 0, got {self.revealed}")
        object.__setattr__(self, "revealed", tuple(sorted(set(int(r) for r in self.revealed))))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["revealed"] = list(self.revealed)
        return d


@dataclass
class TrainSet:
    """What a model's ``fit`` sees.

    Attributes
    ----------
    matrix : csr (n_users, n_items) float32. Training positives; rows of cold users are empty.
    users : (n_warm,) int. Users with at least one training interaction.
    features : name -> (n_users,) int32 codes (-1 unknown); defined for every user.
    cardinalities : name -> number of values of that feature.
    valid : csr (n_users, n_items) or None. Validation positives of warm users (disjoint from matrix).
    item_groups : (n_items,) int32 group codes, or None when the data has no item-group column.
    user_groups : (n_users,) int32 codes of the user-group column (same code space), or None.
    group_count : number of group labels (0 without group columns).
    user_ids, item_ids : (n_users,), (n_items,) raw ids (str), index -> id; None for data built in memory
        without ids. A fitted model keeps them to answer ``recommend`` in ids.
    feature_values : name -> labels of the feature's codes.
    """

    matrix: sp.csr_matrix
    users: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    cardinalities: dict[str, int] = field(default_factory=dict)
    valid: sp.csr_matrix | None = None
    item_groups: np.ndarray | None = None
    user_groups: np.ndarray | None = None
    group_count: int = 0
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    feature_values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def known(self) -> sp.csr_matrix:
        """Every user's items known at query time: training plus validation positives (n_users, n_items)."""
        return self.matrix if self.valid is None else (self.matrix + self.valid).tocsr()


def as_train_set(data: TrainSet | Split) -> TrainSet:
    """What ``fit`` accepts: a TrainSet as it is, or a Split's training part."""
    return data.train_set() if isinstance(data, Split) else data


@dataclass
class Split:
    """Train / valid / test for warm users and revealed / target for cold users (all n_users x n_items)."""

    dataset: Dataset
    config: SplitConfig
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    cold: sp.csr_matrix  # cold users' interactions; data = 1-based position in the seeded order
    cold_users: np.ndarray
    fingerprint: str

    @property
    def warm_users(self) -> np.ndarray:
        """Users with at least one training interaction."""
        return np.flatnonzero(np.diff(self.train.indptr) > 0)

    @property
    def warm_eval_users(self) -> np.ndarray:
        """Warm users with at least one test interaction."""
        return np.flatnonzero(np.diff(self.test.indptr) > 0)

    @property
    def cold_eval_users(self) -> np.ndarray:
        """Cold users with more than max(revealed) interactions."""
        n = np.diff(self.cold.indptr)
        return np.flatnonzero(n > max(self.config.revealed))

    def known(self) -> sp.csr_matrix:
        """Warm users' items known at query time (train + valid), shape (n_users, n_items)."""
        return (self.train + self.valid).tocsr()

    def cold_history(self, r: int) -> sp.csr_matrix:
        """Revealed history of every user at count r: the first r of each cold user's order."""
        m = self.cold.copy()
        m.data = (m.data <= r).astype(np.float32)
        m.eliminate_zeros()
        return m

    def cold_targets(self) -> sp.csr_matrix:
        """Targets of cold users: interactions after position max(revealed)."""
        m = self.cold.copy()
        m.data = (m.data > max(self.config.revealed)).astype(np.float32)
        m.eliminate_zeros()
        return m

    def train_set(self) -> TrainSet:
        ds = self.dataset
        return TrainSet(
            matrix=self.train, users=self.warm_users, features=dict(ds.features),
            cardinalities={f: len(v) for f, v in ds.feature_values.items()},
            valid=self.valid if self.valid.nnz else None,
            item_groups=ds.item_groups, user_groups=ds.user_groups, group_count=len(ds.group_names),
            user_ids=ds.user_ids, item_ids=ds.item_ids, feature_values=dict(ds.feature_values),
        )

    def untrained_held_out(self) -> tuple[int, int]:
        """(interactions, distinct items) of the held-out targets (warm test + cold targets) whose item
        has no training interaction. A model that only scores items it was trained on can never
        recommend these items, so they cap every model's recall below 1."""
        trained = np.bincount(self.train.indices, minlength=self.train.shape[1]) > 0
        held_out = np.concatenate([self.test.indices, self.cold_targets().indices])
        untrained = held_out[~trained[held_out]]
        return int(len(untrained)), int(len(np.unique(untrained)))

    def summary(self) -> dict:
        cold_eval = self.cold_eval_users
        untrained_interactions, untrained_items = self.untrained_held_out()
        return {
            "fingerprint": self.fingerprint,
            "config": self.config.as_dict(),
            "train_interactions": int(self.train.nnz),
            "valid_interactions": int(self.valid.nnz),
            "test_interactions": int(self.test.nnz),
            "warm_users": int(len(self.warm_users)),
            "warm_eval_users": int(len(self.warm_eval_users)),
            "cold_users": int(len(self.cold_users)),
            "cold_eval_users": int(len(cold_eval)),
            "cold_target_interactions": int(self.cold_targets().nnz),
            "held_out_interactions_untrained_item": untrained_interactions,
            "held_out_untrained_items": untrained_items,
        }


def _hash_u64(values: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """A seeded 64-bit hash (SipHash via pandas) of each string. Shape of ``values``, uint64."""
    key = hashlib.sha256(f"{salt}:{seed}".encode()).hexdigest()[:16]
    return pd.util.hash_array(np.asarray(values, dtype=object), hash_key=key, categorize=False)


def _to_unit(h: np.ndarray) -> np.ndarray:
    """uint64 -> float64 in [0, 1) from the top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _hash_unit(values: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """A seeded hash of strings mapped to [0, 1). Shape of ``values``."""
    return _to_unit(_hash_u64(values, seed, salt))


def _pair_hash(ds: Dataset, rows: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """Seeded hash of each stored (raw user id, raw item id) pair in [0, 1), shape (nnz,)."""
    hu = _hash_u64(ds.user_ids, seed, salt + "u")[rows]
    hi = _hash_u64(ds.item_ids, seed, salt + "i")[ds.matrix.indices]
    with np.errstate(over="ignore"):
        # splitmix64 finaliser over a non-commutative combination of the two id hashes
        x = hu * np.uint64(0x9E3779B97F4A7C15) + hi
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return _to_unit(x)


def fingerprint(ds: Dataset, config: SplitConfig) -> str:
    """Hash of the input bytes, the column options and every split parameter."""
    # the side tables' bytes are in file_hash; their paths, like the interaction file's, are not hashed
    columns = {k: v for k, v in ds.columns.as_dict().items() if k not in ("user_file", "item_file")}
    payload = json.dumps({"file": ds.file_hash, "columns": columns, "split": config.as_dict(),
                          "explicit_test": ds.is_test is not None}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def make_split(ds: Dataset, config: SplitConfig = SplitConfig()) -> Split:
    """Split a dataset deterministically. See the module docstring for the populations."""
    if config.strategy == "temporal" and ds.times is None:
        raise SplitError("--split temporal needs a time column (--time-col)")
    m = ds.matrix
    n_users = ds.n_users
    per_user = np.diff(m.indptr)
    rows = np.repeat(np.arange(n_users), per_user)

    if ds.is_test is not None:
        # explicit held-out file: users with no interaction in the main file are cold
        has_train = np.bincount(rows[~ds.is_test], minlength=n_users) > 0
        cold_mask = ~has_train
    else:
        cold_mask = _hash_unit(ds.user_ids, config.seed, "cold") < config.cold_users
    # a seeded order of each user's interactions: time (temporal) with a hash tie-break, else hash
    h = _pair_hash(ds, rows, config.seed, "order")
    if config.strategy == "temporal":
        order = np.lexsort((h, ds.times, rows))
    else:
        order = np.lexsort((h, rows))
    pos = np.empty(m.nnz, dtype=np.int64)
    pos[order] = np.arange(m.nnz) - m.indptr[rows[order]]  # 0-based position within the user

    label = np.zeros(m.nnz, dtype=np.int8)  # 0 train, 1 valid, 2 test, 3 cold
    if ds.is_test is not None:
        label[ds.is_test] = 2
        n_train_rows = np.bincount(rows[label == 0], minlength=n_users)
        n_valid = np.minimum(np.floor(config.valid_frac * n_train_rows + 0.5).astype(np.int64),
                             np.maximum(n_train_rows - 1, 0))
        tpos = np.empty(m.nnz, dtype=np.int64)  # position among the main-file rows
        tr = np.flatnonzero(label[order] == 0)
        o_tr = order[tr]
        starts = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(n_train_rows, out=starts[1:])
        tpos[o_tr] = np.arange(len(o_tr)) - starts[rows[o_tr]]
        if config.strategy == "temporal":  # validation = the latest training rows
            vmask = (label == 0) & (tpos >= n_train_rows[rows] - n_valid[rows])
        else:
            vmask = (label == 0) & (tpos < n_valid[rows])
        label[vmask] = 1
    else:
        n_test = np.minimum(np.floor(config.test_frac * per_user + 0.5).astype(np.int64),
                            np.maximum(per_user - 1, 0))
        n_left = per_user - n_test
        n_valid = np.minimum(np.floor(config.valid_frac * per_user + 0.5).astype(np.int64),
                             np.maximum(n_left - 1, 0))
        if config.strategy == "temporal":
            # latest n_test are test, the n_valid before them valid
            from_end = per_user[rows] - pos  # 1 for the latest
            label[from_end <= n_test[rows]] = 2
            label[(from_end > n_test[rows]) & (from_end <= n_test[rows] + n_valid[rows])] = 1
        else:
            label[pos < n_test[rows]] = 2
            label[(pos >= n_test[rows]) & (pos < n_test[rows] + n_valid[rows])] = 1
    label[cold_mask[rows]] = 3

    def part(mask: np.ndarray, data: np.ndarray | None = None) -> sp.csr_matrix:
        d = np.where(mask, data if data is not None else 1.0, 0.0).astype(np.float32)
        out = sp.csr_matrix((d, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        out.eliminate_zeros()
        out.has_sorted_indices = True
        return out

    train, valid, test = part(label == 0), part(label == 1), part(label == 2)
    if train.nnz == 0:
        raise SplitError(
            f"no training interactions left ({ds.n_users} users, {ds.nnz} interactions); "
            "lower --cold-users or --test-frac"
        )
    cold = part(label == 3, (pos + 1).astype(np.float64))
    return Split(dataset=ds, config=config, train=train, valid=valid, test=test, cold=cold,
                 cold_users=np.flatnonzero(cold_mask), fingerprint=fingerprint(ds, config))
