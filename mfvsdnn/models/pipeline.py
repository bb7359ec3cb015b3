"""Retrieval, then scoring: a two-stage pipeline that is itself a model of the registry's protocol.

``Pipeline(retriever, scorer, candidates=N)`` answers a query with the retriever's top-N items (through
:func:`~mfvsdnn.models.ranking.rank`, the query's history excluded), re-scored by the scorer; every
other item scores -inf. It has no item vectors (``capabilities.item_vectors`` False): it implements
``scores``, so the shared evaluator, the cost measurements and ``recommend`` treat it like any model.

The pipeline's ceiling is its candidate recall: the share of a query's held-out items that are among
the N candidates (the retriever's recall@N). :meth:`Pipeline.candidate_items` gives the candidates so
the evaluator can measure it.

A dot-product scorer scores only the candidates (a gather of N item vectors per query: the cost a
serving scorer pays); a scorer without item vectors is asked for every item's score and masked.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.progress import ProgressFn, no_progress
from ..data.split import Split, TrainSet
from .base import Capabilities, RecommenderMixin
from .ranking import rank

__all__ = ["DEFAULT_CANDIDATES", "Pipeline", "pipeline_name"]

DEFAULT_CANDIDATES = 200
#: bytes of the (queries, N, d) gather of candidate item vectors held at once
_GATHER_BYTES = 32 * 2**20

_ID_ATTRIBUTES = ("user_ids_", "item_ids_", "known_", "user_features_", "feature_values_", "user_groups_")


def pipeline_name(retriever: str, scorer: str, candidates: int | None = None) -> str:
    """``retriever>scorer``, with ``@N`` when ``candidates`` is given (several N in one run)."""
    return f"{retriever}>{scorer}" + ("" if candidates is None else f"@{candidates}")


class Pipeline(RecommenderMixin):
    """The retriever's top-``candidates`` items per query, ranked by the scorer's scores.

    retriever, scorer : models of the registry (fitted, or fitted together by :meth:`fit`).
    candidates : N >= 1, how many items the retriever passes on (all eligible items when N exceeds them).
    """

    kind: ClassVar[str] = "pipeline"
    family: ClassVar[str] = "other"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=False, candidate_cache=False,
                                                        uses_features=True, embeds_cold_users=True)

    def __init__(self, retriever: Any, scorer: Any, candidates: int = DEFAULT_CANDIDATES):
        if isinstance(candidates, bool) or not isinstance(candidates, int | np.integer) or candidates < 1:
            raise ModelError(f"--candidates must be integers >= 1, got {candidates!r}")
        for role, stage in (("retriever", retriever), ("scorer", scorer)):
            if not hasattr(stage, "capabilities") or not hasattr(stage, "kind"):
                raise ModelError(f"the pipeline's {role} must be a model (with kind and capabilities), "
                                 f"got {type(stage).__name__}")
        self.retriever = retriever
        self.scorer = scorer
        self.candidates = int(candidates)
        # what the pipeline reads and whom it can answer follow from its stages
        self.capabilities = Capabilities(
            item_vectors=False, candidate_cache=False,
            uses_features=retriever.capabilities.uses_features or scorer.capabilities.uses_features,
            embeds_cold_users=retriever.capabilities.embeds_cold_users and scorer.capabilities.embeds_cold_users)
        self.train_seconds_ = float(getattr(retriever, "train_seconds_", 0.0) or 0.0) + \
            float(getattr(scorer, "train_seconds_", 0.0) or 0.0)
        self.history_: list[dict[str, float]] = []
        self._adopt_ids()

    @property
    def name(self) -> str:
        return pipeline_name(self.retriever.kind, self.scorer.kind)

    def _adopt_ids(self) -> None:
        """Take the id maps of a fitted stage, so ``recommend`` works in raw ids."""
        for stage in (self.scorer, self.retriever):
            if getattr(stage, "item_ids_", None) is not None:
                for attr in _ID_ATTRIBUTES:
                    setattr(self, attr, getattr(stage, attr, None))
                return

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress) -> Pipeline:
        """Fit both stages on the same training set, each with its own stream spawned from ``rng``.

        (``compare`` fits the stages with the runner's seeding rule instead, so a stage is the very
        model compare reports alone; this is the Python API's way to fit a pipeline in one call.)
        """
        train, rng = self._fit_inputs(train, rng)
        retriever_rng, scorer_rng = rng.spawn(2)
        self.retriever.fit(train, retriever_rng, progress)
        self.scorer.fit(train, scorer_rng, progress)
        self.train_seconds_ = float(self.retriever.train_seconds_) + float(self.scorer.train_seconds_)
        self.remember_training(train)
        return self

    # -- scoring ------------------------------------------------------------------------------

    def candidate_items(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                        users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, N) int64: the retriever's top-N per query, the history excluded; -1 past the eligible items."""
        histories = sp.csr_matrix(histories)
        return rank(self.retriever, histories, features, users, groups, histories, self.candidates)[0]

    def scores(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
               users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """(q, n_items) float32: the scorer's score on each query's candidates, -inf on every other item."""
        histories = sp.csr_matrix(histories)
        q, n_items = histories.shape
        cand = self.candidate_items(histories, features, users, groups)
        out = np.full((q, n_items), -np.inf, dtype=np.float32)
        if q == 0:
            return out
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        if self.scorer.capabilities.item_vectors:
            qv = np.asarray(self.scorer.query_vectors(histories, features, users=users, groups=groups),
                            dtype=np.float32)
            items = np.asarray(self.scorer.item_vectors, dtype=np.float32)
            picked = np.empty(cand.shape, dtype=np.float32)
            step = max(1, _GATHER_BYTES // max(1, cand.shape[1] * items.shape[1] * 4))
            for start in range(0, q, step):
                stop = min(q, start + step)
                picked[start:stop] = np.einsum("qd,qnd->qn", qv[start:stop], items[safe[start:stop]])
        else:
            full = np.asarray(self.scorer.scores(histories, features, users=users, groups=groups), dtype=np.float32)
            if full.shape != (q, n_items):
                raise ModelError(f"scorer {self.scorer.kind!r}: scores returned shape {full.shape} for "
                                 f"{q} queries over {n_items} items")
            picked = np.take_along_axis(full, safe, axis=1)
        rows = np.broadcast_to(np.arange(q)[:, None], cand.shape)
        out[rows[valid], cand[valid]] = picked[valid]
        return out

    # -- the registry's protocol --------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        return {"retriever": self.retriever.kind, "retriever_params": self.retriever.get_params(),
                "scorer": self.scorer.kind, "scorer_params": self.scorer.get_params(),
                "candidates": self.candidates}

    def state(self) -> dict[str, np.ndarray]:
        """Both stages' arrays, prefixed ``retriever/`` and ``scorer/``."""
        out = {f"retriever/{k}": v for k, v in self.retriever.state().items()}
        out.update({f"scorer/{k}": v for k, v in self.scorer.state().items()})
        return out

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Pipeline:
        """Rebuild both stages by their recorded kinds (``info`` may hold each stage's under its role)."""
        from . import registry

        stages = {}
        for role in ("retriever", "scorer"):
            prefix = f"{role}/"
            stage_arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            stages[role] = registry.get(params[role]).from_state(params[f"{role}_params"], stage_arrays,
                                                                 dict(info.get(role, {})))
        return cls(stages["retriever"], stages["scorer"], int(params["candidates"]))
