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

from ..core.progress import ProgressFn, no_progress
from ..data.split import TrainSet

__all__ = ["FAMILIES", "Capabilities", "ProgressFn", "Retriever", "Scorer", "no_progress"]

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
