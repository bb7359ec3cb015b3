"""Ranking with any model: the one path from a model's queries to a top-k list.

:func:`rank` embeds the queries of a dot-product model (``model.query_vectors``) and scores them
against ``model.item_vectors``, or asks a model without item vectors (``capabilities.item_vectors``
False) for ``model.scores`` on chunks of queries sized by the same memory budget. Either way the
selection is ``core.topk``'s. A ``backend`` may take over the scoring of dot-product models (the
Spark engine scores in Spark tasks).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.topk import (
    TopKBackend,
    auto_chunk_size,
    empty_top,
    exclusion_parts,
    select_rows,
    top_k_with_scores,
)


def _rows(values: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if values is None else values[start:stop]


def rank(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
         users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
         chunk_size: int | None = None, timings: dict[str, float] | None = None,
         backend: TopKBackend | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of a set of queries: the one path from any model to a ranked list.

    Parameters
    ----------
    model : a fitted model (``models/base.py``). With ``capabilities.item_vectors`` its queries are
        embedded by ``query_vectors`` and scored against ``item_vectors`` (:func:`top_k_with_scores`);
        otherwise ``model.scores`` is called on chunks of queries sized by the same 64 MiB budget and
        each chunk goes through :func:`top_k_from_scores`.
    histories, features, users, groups : passed to the model (see ``Retriever.query_vectors``).
    exclude : csr (q, n_items) of items never to return, or None. k : how many.
    chunk_size : queries scored at a time (default: as many as fit in 64 MiB).
    timings : if given, receives ``embed`` (seconds in ``query_vectors``; 0 for a model that only
        scores) and ``topk`` (seconds scoring and selecting).
    backend : scores and selects for dot-product models instead of :func:`top_k_with_scores` (same
        contract); None = here.

    Returns
    -------
    ((q, k) int64 item indices best first, -1 where fewer than k items are eligible; (q, k) float32
    scores).
    """
    histories = sp.csr_matrix(histories)
    t0 = time.perf_counter()
    if model.capabilities.item_vectors:
        qv = model.query_vectors(histories, features, users=users, groups=groups)
        t1 = time.perf_counter()
        if backend is None:
            out = top_k_with_scores(qv, model.item_vectors, exclude, k, chunk_size)
        else:
            out = backend(np.asarray(qv, dtype=np.float32), np.asarray(model.item_vectors, dtype=np.float32),
                          exclude, k)
    else:
        t1 = t0
        out = _rank_by_scores(model, histories, features, users, groups, exclude, k, chunk_size)
    if timings is not None:
        timings["embed"] = t1 - t0
        timings["topk"] = time.perf_counter() - t1
    return out


def _rank_by_scores(model: Any, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None,
                    users: np.ndarray | None, groups: np.ndarray | None, exclude: sp.csr_matrix | None, k: int,
                    chunk_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank` for a model without item vectors: ``model.scores`` chunk by chunk, then top-k."""
    q, n_items = histories.shape
    ex_ptr, ex_ind = exclusion_parts(exclude, q, n_items)
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(n_items)
    out, out_s = empty_top(q, k)
    for start in range(0, q if k else 0, chunk):
        stop = min(q, start + chunk)
        feats = None if features is None else {f: c[start:stop] for f, c in features.items()}
        s = model.scores(histories[start:stop], feats, users=_rows(users, start, stop),
                         groups=_rows(groups, start, stop))
        s = np.ascontiguousarray(s, dtype=np.float32)
        if s.shape != (stop - start, n_items):
            raise ModelError(f"model {model.kind!r}: scores returned shape {s.shape} for "
                             f"{stop - start} queries over {n_items} items")
        select_rows(s, ex_ptr[start:stop + 1], ex_ind, k, out[start:stop], out_s[start:stop])
    return out, out_s
