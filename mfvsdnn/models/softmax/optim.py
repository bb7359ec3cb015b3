"""Adam and Adagrad for named parameter arrays, with dense and sparse (row) gradients.

A gradient is either a dense array shaped like its parameter or a :class:`RowGrad` (unique row
indices + one gradient row each) for embedding tables, where only the rows touched by the
mini-batch are updated:

- Adagrad on rows is exact (an untouched row has a zero gradient, and Adagrad leaves it unchanged).
- Adam on rows is *lazy Adam* (as TensorFlow's LazyAdam): the moments of untouched rows are not
  decayed and those rows do not move. The bias correction uses the global step count. This is the
  usual trade for sparse embeddings: the cost per step is proportional to the rows touched, not to
  the table size.

Updates are fused numba loops (``softmax_kernels``), in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import ModelError
from . import kernels


@dataclass
class RowGrad:
    """Sparse gradient of an (n, d) table: ``rows`` (u,) unique int64, ``values`` (u, d)."""

    rows: np.ndarray
    values: np.ndarray


class Adam:
    """Adam (Kingma & Ba) with lazy row updates for :class:`RowGrad` gradients."""

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray | RowGrad]) -> None:
        """Apply one update to every parameter that has a gradient in ``grads`` (in place)."""
        self.t += 1
        lr_t = self.lr * np.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t)
        for name, g in grads.items():
            p = params[name]
            if name not in self.m:
                self.m[name] = np.zeros_like(p)
                self.v[name] = np.zeros_like(p)
            m, v = self.m[name], self.v[name]
            if isinstance(g, RowGrad):
                kernels.adam_rows(p, g.rows, g.values.astype(p.dtype, copy=False), m, v, lr_t, self.b1, self.b2, self.eps)
            else:
                kernels.adam_dense(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1), m.reshape(-1),
                             v.reshape(-1), lr_t, self.b1, self.b2, self.eps)


class Adagrad:
    """Adagrad (Duchi et al.); row updates are exact for sparse gradients."""

    def __init__(self, lr: float = 0.05, eps: float = 1e-8, initial_accumulator: float = 0.1) -> None:
        self.lr, self.eps, self.init = lr, eps, initial_accumulator
        self.a: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray | RowGrad]) -> None:
        for name, g in grads.items():
            p = params[name]
            if name not in self.a:
                self.a[name] = np.full_like(p, self.init)
            a = self.a[name]
            if isinstance(g, RowGrad):
                kernels.adagrad_rows(p, g.rows, g.values.astype(p.dtype, copy=False), a, self.lr, self.eps)
            else:
                kernels.adagrad_dense(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1), a.reshape(-1),
                                self.lr, self.eps)


def make_optimizer(name: str, lr: float) -> Adam | Adagrad:
    """``"adam"`` or ``"adagrad"`` with learning rate ``lr``."""
    if name == "adam":
        return Adam(lr=lr)
    if name == "adagrad":
        return Adagrad(lr=lr)
    raise ModelError(f"--optimizer must be 'adam' or 'adagrad', got {name!r}")
