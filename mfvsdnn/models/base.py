"""The interface every retriever implements, and the capability flags the evaluator reads.

A model is built from plain constructor keywords (its hyper-parameters), learns in ``fit`` (which
returns ``self``), and declares three class attributes:

- ``kind``: its registry name (``models/registry.py``), recorded in every run;
- ``family``: ``"mf"``, ``"dnn"`` or ``"baseline"`` (code that needs "the MF model" or "the DNN model"
  looks by family, never by kind);
- ``capabilities``: a :class:`Capabilities` saying how it may be scored, cached and queried.

A dot-product model (``capabilities.item_vectors``) exposes

- ``query_vectors(histories, features, users, groups)`` -> (q, d): embeds any set of queries;
- ``item_vectors`` -> (n_items, d); scores are ``query_vectors(...) @ item_vectors.T``.

A model without item vectors implements instead ``scores(histories, features, users, groups)`` ->
(q, n_items) float32; the evaluator calls it on bounded chunks of queries.

Every model also has ``get_params()`` (JSON-able constructor keywords), ``state()`` (dict of numpy
arrays: everything learned) and ``from_state(params, arrays, info)`` to rebuild it; the store writes
these with ``np.savez`` and reads them with ``allow_pickle=False``. Learned attributes end in ``_``
(``train_seconds_``, ``history_``: a list of dicts, one per iteration/epoch, or one for a model
fitted in a single pass). Models never print: they report progress through a ``ProgressFn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.progress import ProgressFn, no_progress
from ..core.seeding import generator
from ..data.split import Split, TrainSet, as_train_set
from .ranking import rank

__all__ = ["FAMILIES", "Capabilities", "ProgressFn", "Recommendations", "RecommenderMixin", "Retriever", "Scorer",
           "no_progress"]

FAMILIES = ("mf", "dnn", "baseline", "other")


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared by its class (the evaluator and the reports read these flags).

    item_vectors : scores are ``query_vectors(...) @ item_vectors.T`` (a dot-product retriever); when
        False the model implements ``scores(...)`` and has no ``item_vectors`` (no embedding map).
    candidate_cache : a known user's query vector is fixed after fit, so its top-k can be precomputed
        and served from a table.
    uses_features : reads user features at query time.
    embeds_cold_users : gives a query for a user unseen in training (history and/or features).
    """

    item_vectors: bool = True
    candidate_cache: bool = False
    uses_features: bool = False
    embeds_cold_users: bool = True


class Retriever(Protocol):
    """A fitted model. Dot-product models implement ``query_vectors`` and ``item_vectors``; models with
    ``capabilities.item_vectors == False`` implement ``scores`` instead (see :class:`Scorer`)."""

    kind: ClassVar[str]
    family: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    train_seconds_: float
    history_: list[dict[str, float]]

    def fit(self, train: TrainSet, rng: np.random.Generator, progress: ProgressFn = no_progress) -> Retriever:
        """Learn the parameters from ``train.matrix`` (n_users, n_items). Returns self."""
        ...

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """Query embeddings.

        Parameters
        ----------
        histories : csr (q, n_items). Items known for each query (its history).
        features : name -> (q,) int codes (-1 = unknown), or None.
        users : (q,) training-user indices when the queries are warm training users (a model may use
            its learned per-user state then), or None for new (cold) queries.
        groups : (q,) int32 query-time user-group codes (-1 unknown) when the data has a user-group
            column, else None. Never derived from held-out interactions.

        Returns
        -------
        (q, d) float32.
        """
        ...

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32."""
        ...

    def get_params(self) -> dict[str, Any]: ...

    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Retriever:
        """Rebuild a fitted model; ``info`` holds train_seconds and history."""
        ...


class Scorer(Protocol):
    """The scoring entry point of a model without item vectors (``capabilities.item_vectors == False``)."""

    def scores(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
               users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, n_items) float32 scores of every item for each query (arguments as ``query_vectors``)."""
        ...


# ---------------------------------------------------------------------------------------------
# recommending in raw ids: the Python API's ``model.recommend``


@dataclass
class Recommendations:
    """Top-k answers in raw ids: ``item_ids[i, r]`` is query i's item at rank r + 1 ('' past the eligible
    items), ``scores[i, r]`` its score (-inf there). ``queries`` names each query (its user id, or
    "new user i")."""

    queries: list[str]
    item_ids: np.ndarray  # (q, k) object
    scores: np.ndarray  # (q, k) float32

    def to_frame(self):
        """One row per (query, rank): query, rank, item_id, score (pandas DataFrame)."""
        import pandas as pd

        rows = [(qid, r + 1, self.item_ids[i, r], float(self.scores[i, r]))
                for i, qid in enumerate(self.queries) for r in range(self.item_ids.shape[1]) if self.item_ids[i, r]]
        return pd.DataFrame(rows, columns=["query", "rank", "item_id", "score"])


class RecommenderMixin:
    """``fit`` conveniences and ``recommend`` in raw ids, shared by the built-in models.

    A model calls :meth:`remember_training` at the end of its ``fit`` (and the store after loading a run),
    so it keeps the id maps and every user's known items.
    """

    def _fit_inputs(self, train: TrainSet | Split, rng: np.random.Generator | None) -> tuple[TrainSet, np.random.Generator]:
        """``fit`` accepts a Split or a TrainSet, and ``rng=None`` means the seeding rule's stream of seed 0."""
        return as_train_set(train), (rng if rng is not None else generator(0, "fit", self.kind, 0))

    def remember_training(self, train: TrainSet) -> None:
        self.remember_ids(train.user_ids, train.item_ids, train.known(), train.features, train.feature_values,
                          train.user_groups)

    def remember_ids(self, user_ids: np.ndarray | None, item_ids: np.ndarray | None, known: sp.csr_matrix,
                     features: dict[str, np.ndarray] | None = None, feature_values: dict[str, list[str]] | None = None,
                     user_groups: np.ndarray | None = None) -> None:
        self.user_ids_ = None if user_ids is None else np.asarray(user_ids, dtype=object)
        self.item_ids_ = None if item_ids is None else np.asarray(item_ids, dtype=object)
        self.known_ = sp.csr_matrix(known)
        self.user_features_ = dict(features or {})
        self.feature_values_ = {k: list(v) for k, v in (feature_values or {}).items()}
        self.user_groups_ = user_groups

    def recommend(self, users: list[str] | None = None, *, histories: list[list[str]] | None = None,
                  features: dict[str, list[str]] | None = None, k: int = 10) -> Recommendations:
        """Top-k items in raw ids for known users (their known items excluded), or for new users given
        by their item histories (excluded too) and/or feature values.

        users : ids of training users. histories : one list of item ids per new user.
        features : for new users, feature name -> one value per new user (unknown values: unknown).
        """
        if getattr(self, "item_ids_", None) is None:
            raise ModelError("recommend needs a model fitted on data with ids (fit it on a Split, or load a run)")
        if (users is None) == (histories is None and features is None):
            raise ModelError("recommend takes either users=[ids] or histories=[[item ids], ...] and/or features=")
        if k < 1:
            raise ModelError(f"k must be a positive integer, got {k}")
        n_items = len(self.item_ids_)
        if users is not None:
            index = {str(u): i for i, u in enumerate(self.user_ids_)}
            missing = [u for u in users if str(u) not in index]
            if missing:
                raise ModelError(f"unknown user id(s): {', '.join(map(repr, missing[:10]))}")
            rows = np.array([index[str(u)] for u in users], dtype=np.int64)
            hist = self.known_[rows]
            feats = {f: c[rows] for f, c in self.user_features_.items()} or None
            groups = None if self.user_groups_ is None else np.asarray(self.user_groups_, dtype=np.int32)[rows]
            names, model_users = [str(u) for u in users], rows
        else:
            q = len(histories) if histories is not None else len(next(iter(features.values())))
            item_index = {str(j): i for i, j in enumerate(self.item_ids_)}
            lists = histories if histories is not None else [[] for _ in range(q)]
            unknown = sorted({str(j) for h in lists for j in h if str(j) not in item_index})
            if unknown:
                raise ModelError(f"unknown item id(s) in histories: {', '.join(map(repr, unknown[:10]))}")
            cols = [item_index[str(j)] for h in lists for j in dict.fromkeys(h)]
            ptr = np.concatenate([[0], np.cumsum([len(dict.fromkeys(h)) for h in lists])])
            hist = sp.csr_matrix((np.ones(len(cols), np.float32), np.array(cols, dtype=np.int64), ptr),
                                 shape=(q, n_items))
            feats = None
            if features:
                feats = {}
                for name, values in features.items():
                    if name not in self.feature_values_:
                        raise ModelError(f"unknown feature {name!r}; this model's features: "
                                         f"{', '.join(self.feature_values_) or 'none'}")
                    labels = {v: c for c, v in enumerate(self.feature_values_[name])}
                    feats[name] = np.array([labels.get(str(v), -1) for v in values], dtype=np.int32)
            names, model_users, groups = [f"new user {i}" for i in range(q)], None, None
        idx, scores = rank(self, hist, feats, model_users, groups, hist, k)
        ids = np.where(idx >= 0, self.item_ids_[np.maximum(idx, 0)], "")
        return Recommendations(names, ids, scores)
