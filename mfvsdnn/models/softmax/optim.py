"""Adam and Adagrad for named parameter arrays, with dense and sparse (row) gradients.

A gradient is either a dense array shaped like its parameter or a :class:`RowGrad` (unique row
indices + one gradient row each) for embedding tables, where only the rows touched by the
mini-batch are updated:

- Adagrad on rows is exact (an untouched row has a zero gradient, and Adagrad leaves it unchanged).
- Adam on rows is *lazy Adam* (as TensorFlow's LazyAdam): the moments of untouched rows are not
  decayed and those rows do not move. The bias correction uses the global step count. This is the
  usual trade for sparse embeddings: the cost per step is proportional to the rows touched, not to
  the table size.

Storage: a table updated by rows keeps its two Adam moments interleaved, one (n, 2, d) array
``Adam.mv[name]`` (``mv[j, 0]`` = m_j, ``mv[j, 1]`` = v_j), so a touched row's state is one contiguous
block rather than rows of two tables (random rows of big tables are cache misses, one per table);
the parameter itself stays the model's ordinary (n, d) array. A parameter with dense gradients keeps
``Adam.m[name]`` and ``Adam.v[name]`` shaped like it. A table's storage is chosen by its first gradient;
a row gradient for a table with dense moments moves them into the interleaved array, and a dense
gradient for a row table is applied as a row update of every row (the same maths).

Updates are fused numba loops (``kernels`` dense, ``optim_kernels`` rows), in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import ModelError
from . import kernels, optim_kernels


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
        self.m: dict[str, np.ndarray] = {}  # dense gradients' moments, shaped like the parameter
        self.v: dict[str, np.ndarray] = {}
        self.mv: dict[str, np.ndarray] = {}  # row-updated tables' moments, (n, 2, d) interleaved

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray | RowGrad]) -> None:
        """Apply one update to every parameter that has a gradient in ``grads`` (in place)."""
        self.t += 1
        lr_t = self.lr * np.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t)
        for name, g in grads.items():
            p = params[name]
            if isinstance(g, RowGrad) or name in self.mv:
                rows, values = (g.rows, g.values) if isinstance(g, RowGrad) else (np.arange(len(p)), g)
                optim_kernels.adam_rows(p, rows, np.ascontiguousarray(values, dtype=p.dtype), self._row_moments(name, p),
                                        lr_t, self.b1, self.b2, self.eps)
            else:
                if name not in self.m:
                    self.m[name] = np.zeros_like(p)
                    self.v[name] = np.zeros_like(p)
                m, v = self.m[name], self.v[name]
                kernels.adam_dense(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1), m.reshape(-1),
                             v.reshape(-1), lr_t, self.b1, self.b2, self.eps)

    def _row_moments(self, name: str, p: np.ndarray) -> np.ndarray:
        """The (n, 2, d) interleaved moments of row-updated table ``name`` (made on its first row
        gradient; dense moments it already had move in)."""
        mv = self.mv.get(name)
        if mv is None:
            if p.ndim != 2:
                raise ModelError(f"row gradients need a 2-d table; {name} has shape {p.shape}")
            mv = np.zeros((p.shape[0], 2, p.shape[1]), dtype=p.dtype)
            if name in self.m:
                mv[:, 0], mv[:, 1] = self.m.pop(name), self.v.pop(name)
            self.mv[name] = mv
        return mv


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
                optim_kernels.adagrad_rows(p, g.rows, g.values.astype(p.dtype, copy=False), a, self.lr, self.eps)
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
