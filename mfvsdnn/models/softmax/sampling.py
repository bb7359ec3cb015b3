"""Negative samplers for the sampled softmax.

All samplers draw ONE set of candidates per mini-batch, shared by every example in it (the logits
are then a (B, N) matrix product instead of B separate gathers). Each returns the candidates and
log Q(j), the log-probability with which the sampler proposes item j; the loss subtracts log Q from
every sampled logit, the positive's included (the "logQ correction", so the sampled softmax
estimates the full one without favouring rarely-sampled items).

- ``uniform``: N items uniformly with replacement; Q(j) = 1/n (a constant, so the correction cancels).
- ``popularity``: N items with replacement, Q(j) = (c_j + 1) / sum_k (c_k + 1) where c_j is item j's
  training count (+1 so that items never seen in training can still be pushed down).
- ``hard``: a pool of ``pool`` items drawn uniformly (shared by the batch; the whole catalogue, each item
  once, when ``pool`` >= the number of items); then each example picks its
  own N negatives from the pool without replacement with probability proportional to
  exp(psi(x) . V_j) under its *current* scores (Gumbel-top-N over the pool's logits, see
  :func:`choose_hard`). No logQ correction is applied (log Q = 0): the point of hard negatives is to
  over-weight confusable items, which the correction would undo. The per-example choice is a mask
  over the pool's (B, pool) logits, so the cost stays one (B, pool) product.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import ModelError

SAMPLERS = ("uniform", "popularity", "hard")


class UniformSampler:
    """Q(j) = 1 / n_items."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size,) int64 item indices, with replacement."""
        return rng.integers(0, self.n, size=size, dtype=np.int64)

    def log_q(self, items: np.ndarray) -> np.ndarray:
        """log Q(j) for each item, (len(items),) float64."""
        return np.full(len(items), -np.log(self.n))


class PopularitySampler:
    """Q(j) proportional to (training count of j) + 1."""

    def __init__(self, counts: np.ndarray) -> None:
        w = np.asarray(counts, dtype=np.float64) + 1.0
        self.logq_all = np.log(w / w.sum())
        self.cdf = np.cumsum(w / w.sum())
        self.cdf[-1] = 1.0

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), len(self.cdf) - 1)

    def log_q(self, items: np.ndarray) -> np.ndarray:
        return self.logq_all[items]


class HardPoolSampler:
    """A uniform pool shared by the batch; per-example choice by :func:`choose_hard`. log Q = 0."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(min(size, n),) int64: a uniform pool with replacement, or every item once when the pool
        would cover the catalogue (a bigger pool only repeats items and costs (B, size) scores)."""
        if size >= self.n:
            return np.arange(self.n, dtype=np.int64)
        return rng.integers(0, self.n, size=size, dtype=np.int64)

    def log_q(self, items: np.ndarray) -> np.ndarray:
        return np.zeros(len(items))


def choose_hard(logits: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-example hard negatives from a shared pool.

    Each row picks ``n`` of the pool's P columns without replacement with probability
    proportional to exp(logit) (Gumbel-top-n: the n largest of logit + Gumbel noise).

    Parameters
    ----------
    logits : (B, P) current scores psi_b . V_pool (treated as constants).
    n : negatives per example (n >= P selects the whole pool).

    Returns
    -------
    (B, P) bool mask of the chosen columns.
    """
    B, P = logits.shape
    if n >= P:
        return np.ones((B, P), dtype=bool)
    noisy = logits.astype(np.float64) - np.log(-np.log(rng.random((B, P)) + 1e-300) + 1e-300)
    top = np.argpartition(-noisy, n - 1, axis=1)[:, :n]
    mask = np.zeros((B, P), dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


def make_sampler(name: str, counts: np.ndarray) -> UniformSampler | PopularitySampler | HardPoolSampler:
    """The sampler called ``name`` for items with training ``counts`` (n_items,)."""
    if name == "uniform":
        return UniformSampler(len(counts))
    if name == "popularity":
        return PopularitySampler(counts)
    if name == "hard":
        return HardPoolSampler(len(counts))
    raise ModelError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
