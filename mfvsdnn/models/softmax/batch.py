"""Mini-batches of (user, target) pairs: histories without their target, feature codes, sampled negatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernels, optim_kernels
from .optim import RowGrad


@dataclass
class Batch:
    """One mini-batch of B examples (fixed, so the loss is a deterministic function of the params).

    targets : (B,) int64 target items.
    bag_idx, bag_ex, bag_w : (m,) bag entries: item, example, weight. bag_b = sum_i w_i E[idx_i] over
        entries with ex_i = b: +1/(n-1) for each history item and -1/(n-1) for the target.
    empty : (B,) bool, examples whose bag is the learned empty vector.
    codes : per feature (B,) int codes into its table (unknown already mapped to the last row).
    """

    targets: np.ndarray
    bag_idx: np.ndarray
    bag_ex: np.ndarray
    bag_w: np.ndarray
    empty: np.ndarray
    codes: list[np.ndarray]


@dataclass
class Sample:
    """Negatives for one batch: shared candidates, their log Q and the positives' log Q, an optional
    (B, N) per-example choice (hard sampler; True = used), and an optional (B, N) ``exclude`` (True =
    the candidate is one of the example user's training positives, never a negative)."""

    cand: np.ndarray
    logq_c: np.ndarray
    logq_t: np.ndarray
    mask: np.ndarray | None = None
    exclude: np.ndarray | None = None


def make_batch(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, targets: np.ndarray,
               codes: list[np.ndarray], dtype: Any, drop: np.ndarray | None = None) -> Batch:
    """Build the bag entries of (user, target) examples from the training csr (indptr, indices).

    Parameters
    ----------
    users, targets : (B,) int. ``codes`` : per feature (n_users,) codes (unknown mapped).
    drop : (B,) bool, examples whose history is dropped (bag = empty vector), or None.
    """
    n = (indptr[users + 1] - indptr[users]).astype(np.int64)
    keep = n > 1
    if drop is not None:
        keep &= ~drop
    ex_k = np.flatnonzero(keep)
    lens = n[ex_k]
    starts = indptr[users[ex_k]]
    total = int(lens.sum())
    offs = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    pos = offs + np.arange(total)
    w_k = (1.0 / (lens - 1)).astype(dtype)
    bag_idx = np.concatenate([indices[pos].astype(np.int64), targets[ex_k]])
    bag_ex = np.concatenate([np.repeat(ex_k, lens), ex_k])
    bag_w = np.concatenate([np.repeat(w_k, lens), -w_k])
    return Batch(targets=np.asarray(targets, dtype=np.int64), bag_idx=bag_idx, bag_ex=bag_ex, bag_w=bag_w,
                 empty=~keep, codes=[c[users] for c in codes])


class _Rows:
    """Accumulates row contributions to one (n, d) table and merges them into a RowGrad."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, rows: np.ndarray, vals: np.ndarray) -> None:
        self.parts.append(("rows", rows, vals))

    def add_weighted(self, idx: np.ndarray, ex: np.ndarray, w: np.ndarray, G: np.ndarray) -> None:
        self.parts.append(("w", idx, ex, w, G))

    def into_dense(self, out: np.ndarray) -> None:
        for p in self.parts:
            if p[0] == "rows":
                kernels.scatter_rows(p[1], np.ascontiguousarray(p[2], dtype=out.dtype), out)
            else:
                kernels.scatter_weighted(p[1], p[2], p[3].astype(out.dtype), np.ascontiguousarray(p[4], dtype=out.dtype), out)

    def merge(self, d: int, dtype: Any) -> RowGrad:
        if not self.parts:
            return RowGrad(np.zeros(0, dtype=np.int64), np.zeros((0, d), dtype=dtype))
        # rows in first-occurrence order (no sort); each row's sum still adds its parts in entry order
        uniq, inv = optim_kernels.unique_first(np.concatenate([p[1] for p in self.parts]).astype(np.int64, copy=False))
        out = np.zeros((len(uniq), d), dtype=dtype)
        o = 0
        for p in self.parts:
            k = len(p[1])
            if p[0] == "rows":
                kernels.scatter_rows(inv[o:o + k], np.ascontiguousarray(p[2], dtype=dtype), out)
            else:
                kernels.scatter_weighted(inv[o:o + k], p[2], p[3].astype(dtype), np.ascontiguousarray(p[4], dtype=dtype), out)
            o += k
        return RowGrad(uniq, out)
