"""The picture of folding: a 2-D projection of a model's item embeddings."""

from __future__ import annotations

import numpy as np


def embedding_map(item_vectors: np.ndarray, rng: np.random.Generator, max_points: int = 3000) -> dict:
    """PCA of the item embeddings to 2-D (numpy SVD of the centred matrix), on a seeded item sample.

    Returns {"items": (p,) item indices, "xy": (p, 2) coordinates, "explained": (2,) variance shares}.
    """
    V = np.asarray(item_vectors, dtype=np.float64)
    n = V.shape[0]
    idx = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    X = V[idx] - V[idx].mean(axis=0)
    _, s, vt = np.linalg.svd(X, full_matrices=False)  # X = U S Vt; principal axes = rows of Vt
    comps = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros((2 - vt.shape[0], V.shape[1]))])
    xy = X @ comps.T
    var = s ** 2
    explained = (var[:2] / var.sum()) if var.sum() > 0 else np.zeros(2)
    return {"items": idx, "xy": xy, "explained": np.pad(explained, (0, 2 - len(explained)))}
