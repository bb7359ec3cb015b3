"""The interface both retrievers implement: ``score(query, item) = q . v_item``.

A model is built from plain constructor keywords (its hyper-parameters), learns in ``fit`` (which
returns ``self``), and exposes:

- ``query_vectors(histories, features, users)`` -> (q, d): embeds any set of queries, warm or cold;
- ``item_vectors`` -> (n_items, d);
- ``get_params()`` -> JSON-able dict of hyper-parameters;
- ``state()`` -> dict of numpy arrays (everything learned), and ``from_state(params, arrays, info)``
  to rebuild it; the store writes these with ``np.savez`` and reads them with ``allow_pickle=False``.

Learned attributes end in ``_`` (``train_seconds_``, ``history_``). Models never print: they report
progress through a ``ProgressFn`` callback.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from ..data.split import TrainSet


class ProgressFn(Protocol):
    """Called after each iteration/epoch: ``progress(done, total, metrics)``."""

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None: ...


def no_progress(done: int, total: int, metrics: dict[str, float]) -> None:
    """A ProgressFn that does nothing."""


class Retriever(Protocol):
    kind: ClassVar[str]
    train_seconds_: float
    history_: list[dict[str, float]]

    def fit(self, train: TrainSet, rng: np.random.Generator, progress: ProgressFn = no_progress) -> Retriever:
        """Learn the parameters from ``train.matrix`` (n_users, n_items). Returns self."""
        ...

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None) -> np.ndarray:
        """Query embeddings.

        Parameters
        ----------
        histories : csr (q, n_items). Items known for each query (its history).
        features : name -> (q,) int codes (-1 = unknown), or None.
        users : (q,) training-user indices when the queries are warm training users (a model may use
            its learned per-user state then), or None for new (cold) queries.

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


def model_class(kind: str) -> type:
    """The model class registered under ``kind`` ("wals" or "softmax")."""
    from ..core.errors import ModelError

    if kind == "wals":
        from .wals import WALS

        return WALS
    if kind == "softmax":
        from .softmax import SoftmaxDNN

        return SoftmaxDNN
    raise ModelError(f"unknown model kind {kind!r} (expected 'wals' or 'softmax')")
