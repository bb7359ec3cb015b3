"""Baselines every model must beat, run through the same evaluator as WALS and the softmax DNN.

- :class:`MostPopular` ("popularity"): every query gets the items with the most training
  interactions. A dot-product model with d = 1: item vector = training count / max count, query = 1.
- :class:`GroupPopularity` ("group-popularity"): the items of the query's group, most trained first,
  then every other item, most trained first. The query's group is the user-group column where the data
  has one (code >= 0), else the majority item group of the query's history (ties to the lower code),
  else unknown, and an unknown group gets the global ranking. Without item groups in the training data
  it ranks exactly as MostPopular.
- :class:`RandomRetriever` ("random"): a uniformly random ranking per query, drawn at every call from
  a generator seeded by the fit's rng (the same sequence of calls after the same fit, or after loading
  the saved run, gives the same rankings). It has no item vectors: it implements ``scores``.

None of them reads user features; all of them answer any query, warm or cold.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.progress import ProgressFn, no_progress
from ..data import user_group_of
from ..data.split import Split, TrainSet
from .base import Capabilities, RecommenderMixin


def item_counts(matrix: sp.csr_matrix) -> np.ndarray:
    """(n_items,) int64 training interactions of each item (stored non-zero entries of ``matrix``)."""
    m = sp.csr_matrix(matrix)
    return np.bincount(m.indices[m.data != 0], minlength=m.shape[1]).astype(np.int64)


def _n_queries(histories: sp.spmatrix, n_items: int, what: str) -> int:
    """The number of query rows; refuses histories over a different item catalogue."""
    if histories.shape[1] != n_items:
        raise ModelError(f"{what}: histories have {histories.shape[1]} item columns, the model {n_items} items")
    return int(histories.shape[0])


def _counts_from_state(arrays: dict[str, np.ndarray], what: str) -> np.ndarray:
    if "item_counts" not in arrays:
        raise ModelError(f"{what} state lacks the array 'item_counts'; the model file is foreign or truncated")
    counts = np.asarray(arrays["item_counts"])
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ModelError(f"{what} state: item_counts must be a 1-D array of counts >= 0")
    return counts.astype(np.int64)


def _fit_record(train: TrainSet, t_start: float, progress: ProgressFn) -> tuple[float, list[dict[str, float]]]:
    """(train_seconds, history) of a one-pass fit; reports the single step to ``progress``."""
    secs = time.perf_counter() - t_start
    progress(1, 1, {})
    return secs, [{"step": 1, "interactions": float(train.matrix.nnz), "seconds": secs}]


class MostPopular(RecommenderMixin):
    """Most popular items for everyone. No hyper-parameters."""

    kind: ClassVar[str] = "popularity"
    family: ClassVar[str] = "baseline"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=True,
                                                        uses_features=False, embeds_cold_users=True)

    def __init__(self) -> None:
        self.item_counts_: np.ndarray | None = None
        self.train_seconds_: float = 0.0
        self.history_: list[dict[str, float]] = []

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress) -> MostPopular:
        """Count each item's training interactions (``rng`` is not used)."""
        train, rng = self._fit_inputs(train, rng)
        t0 = time.perf_counter()
        self._set_counts(item_counts(train.matrix))
        self.train_seconds_, self.history_ = _fit_record(train, t0, progress)
        self.remember_training(train)
        return self

    def _set_counts(self, counts: np.ndarray) -> None:
        self.item_counts_ = counts
        self._vectors = (counts / max(int(counts.max(initial=0)), 1)).astype(np.float32)[:, None]

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, 1) float32: training count / the largest count, in [0, 1]."""
        if self.item_counts_ is None:
            raise ModelError("the popularity model is not fitted")
        return self._vectors

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, 1) ones: every query ranks items by training count (known items are excluded later)."""
        q = _n_queries(histories, self.item_vectors.shape[0], "popularity")
        return np.ones((q, 1), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"item_counts": self.item_counts_}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> MostPopular:
        model = cls(**params)
        model._set_counts(_counts_from_state(arrays, "popularity"))
        model.train_seconds_ = float(info.get("train_seconds", 0.0))
        model.history_ = list(info.get("history", []))
        return model


class GroupPopularity(RecommenderMixin):
    """Most popular items of the query's group first, then the rest by global popularity.

    Dot-product form with G groups, d = G + 1: item j of group g(j) has ``1 + count_j / max count in
    g(j)`` in column g(j) and ``count_j / (max count + 1)`` (in [0, 1)) in the last column; a query of
    group g is the one-hot of g plus 1 in the last column, an unknown group only the last column. So
    every item of the query's group (score >= 1) outranks every other item (score < 1), and each part
    is ordered by training count (ties to the lower item index).
    """

    kind: ClassVar[str] = "group-popularity"
    family: ClassVar[str] = "baseline"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=True,
                                                        uses_features=False, embeds_cold_users=True)

    def __init__(self) -> None:
        self.item_counts_: np.ndarray | None = None
        self.item_groups_: np.ndarray | None = None  # None: trained without item groups
        self.group_count_: int = 0
        self.train_seconds_: float = 0.0
        self.history_: list[dict[str, float]] = []

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress) -> GroupPopularity:
        """Count each item's training interactions and keep the item groups (``rng`` is not used)."""
        train, rng = self._fit_inputs(train, rng)
        t0 = time.perf_counter()
        groups = None if train.item_groups is None else np.asarray(train.item_groups, dtype=np.int32)
        if groups is not None and groups.shape != (train.n_items,):
            raise ModelError(f"item_groups has shape {groups.shape}, expected ({train.n_items},)")
        n_groups = 0 if groups is None else max(int(train.group_count), int(groups.max(initial=-1)) + 1)
        self._set_state(item_counts(train.matrix), groups, n_groups)
        self.train_seconds_, self.history_ = _fit_record(train, t0, progress)
        self.remember_training(train)
        return self

    def _set_state(self, counts: np.ndarray, groups: np.ndarray | None, n_groups: int) -> None:
        if groups is not None and (groups.shape != counts.shape or (groups < 0).any() or (groups >= n_groups).any()):
            raise ModelError("group-popularity state: item groups do not match the items or the group count")
        self.item_counts_, self.item_groups_, self.group_count_ = counts, groups, int(n_groups)
        n_items = len(counts)
        V = np.zeros((n_items, self.group_count_ + 1), dtype=np.float64)
        V[:, -1] = counts / (int(counts.max(initial=0)) + 1)
        if groups is not None:
            group_max = np.zeros(self.group_count_, dtype=np.int64)
            np.maximum.at(group_max, groups, counts)
            V[np.arange(n_items), groups] = 1.0 + counts / np.maximum(group_max[groups], 1)
        self._vectors = V.astype(np.float32)

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, G + 1) float32; see the class docstring."""
        if self.item_counts_ is None:
            raise ModelError("the group-popularity model is not fitted")
        return self._vectors

    def query_groups(self, histories: sp.csr_matrix, groups: np.ndarray | None = None) -> np.ndarray:
        """(q,) int32 group each query is served from: ``groups`` where >= 0 (and a known code), else the
        majority item group of the history (ties to the lower code), else -1 (global popularity)."""
        q = _n_queries(histories, self.item_vectors.shape[0], "group-popularity")
        out = np.full(q, -1, dtype=np.int32)
        if self.item_groups_ is None or q == 0:
            return out
        out = user_group_of(sp.csr_matrix(histories), self.item_groups_, None, self.group_count_)
        if groups is not None:
            given = np.asarray(groups, dtype=np.int64).reshape(-1)
            if given.shape[0] != q:
                raise ModelError(f"{given.shape[0]} group codes for {q} queries")
            ok = (given >= 0) & (given < self.group_count_)
            out[ok] = given[ok]
        return out

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, G + 1) float32: one-hot of :meth:`query_groups` (none when unknown) plus 1 in the last column."""
        g = self.query_groups(histories, groups)
        out = np.zeros((len(g), self.group_count_ + 1), dtype=np.float32)
        out[:, -1] = 1.0
        known = np.flatnonzero(g >= 0)
        out[known, g[known]] = 1.0
        return out

    def state(self) -> dict[str, np.ndarray]:
        groups = self.item_groups_ if self.item_groups_ is not None else np.zeros(0, dtype=np.int32)
        return {"item_counts": self.item_counts_, "item_groups": groups,
                "group_count": np.array(self.group_count_, dtype=np.int64)}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> GroupPopularity:
        model = cls(**params)
        counts = _counts_from_state(arrays, "group-popularity")
        if "item_groups" not in arrays or "group_count" not in arrays:
            raise ModelError("group-popularity state lacks item_groups or group_count; the model file is foreign "
                             "or truncated")
        groups = np.asarray(arrays["item_groups"], dtype=np.int32)
        n_groups = int(arrays["group_count"])
        model._set_state(counts, groups if n_groups > 0 else None, n_groups)
        model.train_seconds_ = float(info.get("train_seconds", 0.0))
        model.history_ = list(info.get("history", []))
        return model


class RandomRetriever(RecommenderMixin):
    """A uniformly random ranking per query. No hyper-parameters.

    ``fit`` draws one seed from its rng; every ``scores`` call draws fresh uniform [0, 1) scores from a
    generator started at that seed, so a fitted (or loaded) model replays the same rankings for the
    same sequence of calls, and a different fit seed gives different rankings.
    """

    kind: ClassVar[str] = "random"
    family: ClassVar[str] = "baseline"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=False, candidate_cache=False,
                                                        uses_features=False, embeds_cold_users=True)

    def __init__(self) -> None:
        self.seed_: int | None = None
        self.n_items_: int = 0
        self.train_seconds_: float = 0.0
        self.history_: list[dict[str, float]] = []

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress) -> RandomRetriever:
        """Draw the seed of the scoring generator from ``rng``."""
        train, rng = self._fit_inputs(train, rng)
        t0 = time.perf_counter()
        self._start(int(rng.integers(2**63)), train.n_items)
        self.train_seconds_, self.history_ = _fit_record(train, t0, progress)
        self.remember_training(train)
        return self

    def _start(self, seed: int, n_items: int) -> None:
        self.seed_, self.n_items_ = seed, int(n_items)
        self._rng = np.random.default_rng(seed)

    def scores(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
               users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, n_items) float32 uniform [0, 1) scores, fresh at every call."""
        if self.seed_ is None:
            raise ModelError("the random model is not fitted")
        q = _n_queries(histories, self.n_items_, "random")
        return self._rng.random((q, self.n_items_), dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"seed": np.array(self.seed_, dtype=np.int64), "n_items": np.array(self.n_items_, dtype=np.int64)}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> RandomRetriever:
        model = cls(**params)
        missing = [k for k in ("seed", "n_items") if k not in arrays]
        if missing:
            raise ModelError(f"random model state lacks the arrays {missing}; the model file is foreign or truncated")
        model._start(int(arrays["seed"]), int(arrays["n_items"]))
        model.train_seconds_ = float(info.get("train_seconds", 0.0))
        model.history_ = list(info.get("history", []))
        return model
