"""The training full softmax cross-entropy, tiled over items so a big catalogue's (B, n_items) logits are
never formed.

    L    = (1/B) sum_b [ lse_b - psi_b . V_{t_b} ],   lse_b = log sum_j exp(psi_b . V_j)
    G    = (softmax(Z) - onehot(t)) / B   (B, n);   dpsi = G V (B, d);   dV = G^T psi (n, d) (dense)

The untiled form (:func:`.losses.full_softmax_loss`) streams the B x n logits through memory four
times (write Z, softmax in place, read for G V, read for G^T psi): 205 MB each at 200k items and
B = 256. Here the items are cut into tiles of T rows, with a (B, T) logits tile small enough to stay
in the core's L2 cache:

- pass 1, per tile: Z_t = psi V_t^T, then the running row max and sum of exponentials (kept in
  float64); nothing is stored. The tiles' partials give lse.
- pass 2, per tile: Z_t again, G_t = (exp(Z_t - lse) - onehot) / B in place, dpsi += G_t V_t and
  dV_t = G_t^T psi straight into its rows of dV.

That is four products of 2 B T d flops per tile instead of three, but the logits never leave the
cache. On one thread, when all the logits fit in most of the last-level cache (B n itemsize <=
STORED_BYTES), the three products of the untiled form win instead (B = 256, tiled vs untiled time,
interleaved, under load: 1.16 at 4k items, 1.14 at 8k, 1.08 at 12k, 0.99 at 20k), so that case keeps
one reused (B, n) buffer: Z = psi V^T, the softmax kernel in place, then the two gradient products.
On two threads the tiled form wins at every such size (0.39-0.76 of the untiled form with threaded
BLAS and the parallel softmax kernel, 4k-20k items), and at 200k it is 0.42x the untiled even on one.

With ``threads`` > 1 the tiles are split into that many contiguous ranges, one per Python thread
(numpy's products release the GIL and the tile kernels are ``nogil``), BLAS on one thread each; each
thread has its own dpsi partial and tile buffer, summed at the end. (A plain numba loop for the tile
product ran at 0.6x OpenBLAS's speed for these shapes, so the products stay BLAS calls.)

Buffers live in a :class:`FullSoftmaxWork`, created once per fit and reused by every step.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import kernels
from .threads import BIG_PRODUCT, blas_threads

TILE_BYTES = 1 << 19  # a (B, T) logits tile of ~512 KiB: half of a core's L2 here, with room for V_t, dV_t


STORED_BYTES = 24 << 20  # 24 MiB of logits: three quarters of this machine's 32 MiB L3


def tile_rows(B: int, itemsize: int) -> int:
    """Items per tile: TILE_BYTES of logits for B rows, a multiple of 16, at least 16."""
    return max(16, (TILE_BYTES // max(B * itemsize, 1)) // 16 * 16)


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="full-softmax")
    return _POOL


def _forget_pool() -> None:
    # a forked child has the executor object but none of its threads: work sent to it would never run
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class FullSoftmaxWork:
    """Reused buffers of the tiled full softmax: per thread a logits tile, a dpsi partial and a (B, d)
    scratch, and the (n, d) dV. Grown when a step needs more, never shrunk; one per fit. The dV
    returned by a step is this buffer: it is valid until the next step."""

    def __init__(self) -> None:
        self.key: tuple = ()
        self.tiles: list[np.ndarray] = []
        self.dpsi: list[np.ndarray] = []
        self.scratch: list[np.ndarray] = []
        self.dV = np.empty((0, 0))
        self.logits = np.empty(0)

    def ensure(self, B: int, n: int, d: int, T: int, threads: int, dtype: np.dtype) -> None:
        """Buffers for at least B rows, n items, T-item tiles and ``threads`` threads, of exactly d columns
        and ``dtype``. Sizes only grow (to the largest seen), so alternating steps (the last, smaller
        batch of an epoch) never reallocate; smaller steps use views."""
        sizes, exact = (B, n, T, threads), (d, np.dtype(dtype))
        if self.key and self.key[1] == exact:
            if all(a >= b for a, b in zip(self.key[0], sizes, strict=True)):
                return
            sizes = tuple(max(a, b) for a, b in zip(self.key[0], sizes, strict=True))
        self.key = (sizes, exact)
        B, n, T, threads = sizes
        self.tiles = [np.empty(B * T, dtype=dtype) for _ in range(threads)]
        self.dpsi = [np.empty((B, d), dtype=dtype) for _ in range(threads)]
        self.scratch = [np.empty((B, d), dtype=dtype) for _ in range(threads)]
        self.dV = np.empty((n, d), dtype=dtype)
        self.logits = np.empty(0, dtype=dtype)

    def logits_buffer(self, size: int, dtype: np.dtype) -> np.ndarray:
        """A flat buffer of at least ``size`` values (the stored path's (B, n) logits)."""
        if self.logits.size < size or self.logits.dtype != dtype:
            self.logits = np.empty(size, dtype=dtype)
        return self.logits[:size]


def _ranges(n: int, T: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous item ranges of whole tiles (the last tile may be short), none empty."""
    n_tiles = -(-n // T)
    parts = max(1, min(parts, n_tiles))
    bounds = [min(n, (n_tiles * p // parts) * T) for p in range(parts + 1)]
    return [(bounds[p], bounds[p + 1]) for p in range(parts)]


def _tile(buf: np.ndarray, B: int, width: int) -> np.ndarray:
    """A C-contiguous (B, width) view at the start of a flat buffer."""
    return buf[:B * width].reshape(B, width)


def _pass1(psi: np.ndarray, V: np.ndarray, lo: int, hi: int, T: int, buf: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Running (row max, sum of exp) over the tiles of items lo .. hi - 1."""
    B = psi.shape[0]
    m = np.full(B, kernels.LSE_START)
    s = np.zeros(B)
    lse = kernels.tile_lse_f32 if psi.dtype == np.float32 else kernels.tile_lse
    for j in range(lo, hi, T):
        Z = _tile(buf, B, min(hi, j + T) - j)
        np.matmul(psi, V[j:j + Z.shape[1]].T, out=Z)
        lse(Z, m, s)
    return m, s


def _pass2(psi: np.ndarray, V: np.ndarray, t: np.ndarray, lse: np.ndarray, lo: int, hi: int, T: int,
           buf: np.ndarray, dpsi: np.ndarray, scratch: np.ndarray, dV: np.ndarray) -> None:
    """dpsi <- sum over the tiles of lo .. hi - 1 of G_t V_t;  dV[tile] <- G_t^T psi."""
    B = psi.shape[0]
    grad = kernels.tile_grad_f32 if psi.dtype == np.float32 else kernels.tile_grad
    scale = 1.0 / B
    dpsi[:] = 0.0
    for j in range(lo, hi, T):
        Z = _tile(buf, B, min(hi, j + T) - j)
        Vt = V[j:j + Z.shape[1]]
        np.matmul(psi, Vt.T, out=Z)
        grad(Z, lse, t, j, scale)
        np.matmul(Z, Vt, out=scratch)
        dpsi += scratch
        np.matmul(Z.T, psi, out=dV[j:j + Z.shape[1]])


# Combining the per-range partials (m_r, s_r) of pass 1:  M = max_r m_r;  lse = M + log sum_r s_r exp(m_r - M)
def _merge_lse(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    M = np.max([m for m, _ in parts], axis=0)
    return M + np.log(sum(s * np.exp(m - M) for m, s in parts))


def _stored(psi: np.ndarray, V: np.ndarray, t: np.ndarray, work: FullSoftmaxWork, dpsi: np.ndarray,
            dV: np.ndarray) -> float:
    """The untiled form into reused buffers: Z (B, n) = psi V^T;  Z <- G in place;  dpsi = G V;  dV = G^T psi."""
    B, n = psi.shape[0], V.shape[0]
    Z = work.logits_buffer(B * n, psi.dtype).reshape(B, n)
    np.matmul(psi, V.T, out=Z)
    losses = kernels.softmax_xent_inplace(Z, t, 1.0 / B)
    np.matmul(Z, V, out=dpsi)
    np.matmul(Z.T, psi, out=dV)
    return float(losses.mean())


def full_softmax_tiled(psi: np.ndarray, V: np.ndarray, t: np.ndarray, work: FullSoftmaxWork | None = None,
                       tile: int | None = None, threads: int | None = None
                       ) -> tuple[float, np.ndarray, np.ndarray]:
    """Full softmax cross-entropy (the module docstring's equations), tiled over items.

    psi (B, d), V (n, d) of one float dtype, t (B,) int. ``tile``: items per tile (default
    :func:`tile_rows`, or the stored untiled form on one thread when the logits fit in STORED_BYTES;
    a given tile always tiles); ``threads``: Python threads over item ranges (default: every core when the
    product has at least BIG_PRODUCT multiply-adds, else one). Returns (loss, dpsi (B, d), dV (n, d));
    dV is ``work``'s buffer when a work is given.
    """
    psi = np.ascontiguousarray(psi)
    V = np.ascontiguousarray(V, dtype=psi.dtype)
    t = np.ascontiguousarray(t, dtype=np.int64)
    B, d = psi.shape
    n = V.shape[0]
    work = work if work is not None else FullSoftmaxWork()
    if threads is None:
        threads = (os.cpu_count() or 1) if B * n * d >= BIG_PRODUCT else 1
    if tile is None and threads == 1 and B * n * psi.dtype.itemsize <= STORED_BYTES:
        work.ensure(B, n, d, 16, 1, psi.dtype)
        dpsi = np.empty_like(psi)
        dV = work.dV[:n]
        return _stored(psi, V, t, work, dpsi, dV), dpsi, dV
    T = tile if tile is not None else tile_rows(B, psi.dtype.itemsize)
    ranges = _ranges(n, T, threads)
    work.ensure(B, n, d, T, len(ranges), psi.dtype)
    dV = work.dV[:n]
    # one BLAS thread per product when the parallelism is over item ranges (else as the caller set it)
    with blas_threads(None) if len(ranges) > 1 else contextlib.nullcontext():
        if len(ranges) == 1:
            parts = [_pass1(psi, V, 0, n, T, work.tiles[0])]
        else:
            parts = list(_pool().map(lambda r: _pass1(psi, V, r[1][0], r[1][1], T, work.tiles[r[0]]),
                                     enumerate(ranges)))
        lse = _merge_lse(parts)
        z_t = np.einsum("bd,bd->b", psi, V[t]).astype(np.float64)
        loss = float(np.mean(lse - z_t))
        dpsis = [p[:B] for p in work.dpsi[:len(ranges)]]
        scratch = [p[:B] for p in work.scratch[:len(ranges)]]
        if len(ranges) == 1:
            _pass2(psi, V, t, lse, 0, n, T, work.tiles[0], dpsis[0], scratch[0], dV)
        else:
            list(_pool().map(lambda r: _pass2(psi, V, t, lse, r[1][0], r[1][1], T, work.tiles[r[0]], dpsis[r[0]],
                                              scratch[r[0]], dV), enumerate(ranges)))
    dpsi = dpsis[0].copy()
    for p in dpsis[1:]:
        dpsi += p
    return loss, dpsi, dV
