"""A model's memory estimate, checked before ``fit`` allocates anything large."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.memory import check_memory
from ..core.topk import score_bytes
from ..data.split import TrainSet


def validation_bytes(n_users: int, n_items: int, d: int, k: int = 20, max_users: int = 5000) -> int:
    """Peak bytes of the validation recall@k run during and after training: the query vectors, the
    top-k's blocks of scores (one per worker) and the top-k indices and scores."""
    q = min(n_users, max_users)
    return 4 * q * d + score_bytes(q, n_items) + 12 * q * k


def check_model_memory(model: Any, train: TrainSet) -> int:
    """The model's ``estimate_bytes`` for this training set, refused when it exceeds the available
    memory (call it before ``fit``). Returns the estimate."""
    n_users, n_items = train.matrix.shape
    cards = {f: int(train.cardinalities.get(f, int(np.max(c, initial=-1)) + 1)) for f, c in train.features.items()}
    need = int(model.estimate_bytes(n_users, n_items, int(train.matrix.nnz), cards))
    check_memory(f"training {model.kind} on {n_users:,} users x {n_items:,} items", need, model.memory_hint)
    return need
