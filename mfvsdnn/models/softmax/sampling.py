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
- ``in-batch``: the candidates are the mini-batch's own B targets (Yi et al. 2019). A slot of a
  shuffled pass holds item j with probability exactly q(j) = c_j / sum_k c_k (the item's share of
  training examples), so the exact training frequency is used, not Yi et al.'s streaming estimate
  (which is for unbounded streams). log Q(j) = log(B q(j)), the expected number of copies of j among
  the candidates (the log B cancels in the softmax; it matters only when mixing).
- ``mixed``: in-batch plus N items from a ``uniform`` or ``popularity`` pool (Yang et al. 2020). An
  item can come from either part, so every candidate and the positive use the expected count under
  the mixture, log Q(j) = log(B q(j) + N p(j)) with p the pool's proposal; duplicates are kept (the
  sum over copies is the sampled-softmax estimate of the full partition function).

Every sampler's candidates that are one of the example user's training positives are masked (see
:func:`positive_hits`), not only the example's own target.
"""

from __future__ import annotations

import threading

import numpy as np

from ...core.errors import ModelError
from . import kernels

SAMPLERS = ("uniform", "popularity", "hard", "in-batch", "mixed")
MIX_SAMPLERS = ("uniform", "popularity")


class _Proposer:
    """``propose``: the candidates of one batch with their log Q and the targets' log Q."""

    def propose(self, rng: np.random.Generator, targets: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cand = self.draw(rng, size)  # type: ignore[attr-defined]
        return cand, self.log_q(cand), self.log_q(targets)  # type: ignore[attr-defined]


class UniformSampler(_Proposer):
    """Q(j) = 1 / n_items."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """(size,) int64 item indices, with replacement."""
        return rng.integers(0, self.n, size=size, dtype=np.int64)

    def log_q(self, items: np.ndarray) -> np.ndarray:
        """log Q(j) for each item, (len(items),) float64."""
        return np.full(len(items), -np.log(self.n))


class PopularitySampler(_Proposer):
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


class HardPoolSampler(_Proposer):
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


class InBatchSampler:
    """The batch's targets are the candidates; log Q(j) = log(B q(j)), q(j) = c_j / sum_k c_k.

    With a ``pool`` (mixed negatives) N pool draws are appended and
    log Q(j) = log(B q(j) + N p(j)), p the pool's proposal probability.
    """

    def __init__(self, counts: np.ndarray, pool: UniformSampler | PopularitySampler | None = None) -> None:
        c = np.asarray(counts, dtype=np.float64)
        self.q = c / max(c.sum(), 1.0)
        self.pool = pool
        self.pool_p = None if pool is None else (
            np.full(len(c), 1.0 / len(c)) if isinstance(pool, UniformSampler) else np.exp(pool.logq_all))

    def log_q(self, items: np.ndarray, batch: int, size: int) -> np.ndarray:
        """log of the expected copies of each item among ``batch`` in-batch and ``size`` pool candidates."""
        expected = batch * self.q[items]
        if self.pool_p is not None and size:
            expected = expected + size * self.pool_p[items]
        with np.errstate(divide="ignore"):  # an item never trained on is never an in-batch candidate
            return np.log(expected)

    def propose(self, rng: np.random.Generator, targets: np.ndarray, size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        targets = np.asarray(targets, dtype=np.int64)
        n_pool = size if self.pool is not None else 0
        cand = targets.copy() if not n_pool else np.concatenate([targets, self.pool.draw(rng, n_pool)])
        B = len(targets)
        return cand, self.log_q(cand, B, n_pool), self.log_q(targets, B, n_pool)


def positive_hits(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, cand: np.ndarray,
                  n_items: int) -> np.ndarray:
    """(B, N) bool: True where candidate k is one of example b's user's training positives.

    ``indptr``, ``indices``: the training csr over ``n_items`` columns. Each example walks its own history once against the
    candidates chained by item (cost N + the batch's history lengths, next to the (B, N, d) logits).
    """
    out = np.zeros((len(users), len(cand)), dtype=np.bool_)
    kernels.positive_hits(indptr, indices, np.asarray(users, dtype=np.int64), np.asarray(cand, dtype=np.int64),
                          _item_heads(n_items), out)
    return out


# The kernel's (n_items,) chain heads, all -1 between calls (it restores them on return), kept per thread:
# filling a fresh one every step cost ~40 us at 200k items, a third of the whole mask.
_SCRATCH = threading.local()


def _item_heads(n_items: int) -> np.ndarray:
    head = getattr(_SCRATCH, "head", None)
    if head is None or len(head) != n_items:
        head = _SCRATCH.head = np.full(n_items, -1, dtype=np.int64)
    return head


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


def make_sampler(name: str, counts: np.ndarray, mix: str = "uniform"
                 ) -> UniformSampler | PopularitySampler | HardPoolSampler | InBatchSampler:
    """The sampler called ``name`` for items with training ``counts`` (n_items,); ``mix`` is the pool
    of the ``mixed`` sampler."""
    if name == "uniform":
        return UniformSampler(len(counts))
    if name == "popularity":
        return PopularitySampler(counts)
    if name == "hard":
        return HardPoolSampler(len(counts))
    if name == "in-batch":
        return InBatchSampler(counts)
    if name == "mixed":
        if mix not in MIX_SAMPLERS:
            raise ModelError(f"--mix-sampler must be one of {', '.join(MIX_SAMPLERS)}; got {mix!r}")
        return InBatchSampler(counts, UniformSampler(len(counts)) if mix == "uniform" else PopularitySampler(counts))
    raise ModelError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
