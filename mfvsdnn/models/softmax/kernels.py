"""Numba kernels for the softmax DNN's hot loops: bag gather/scatter, row scatter, fused softmax
cross-entropy gradient (whole rows, and per item tile for the tiled full softmax), and the dense
Adam / Adagrad updates (the row updates live in ``optim_kernels.py``).

Each is a plain loop that numpy could only express by materialising an (entries x d) array or by
``np.add.at`` (slow). All are compiled with ``cache=CACHE`` (on-disk cache unless numba_util found no
writable place); they work for float32 (training) and float64 (gradient checks).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...core.numba_util import CACHE, compile_twin, f32_from_bits, fmax_f32

# Below this many elements a kernel runs on the calling thread: on 2 shared cores, waking worker
# threads for a small array costs more than the work (and stalls badly when the machine is busy).
PAR_MIN = 1 << 20


# weighted row add: out[dst[i], :] += w[i] * table[src[i], :]    dst, src (m,) int; w (m,); table (n, d)
@njit(cache=CACHE, inline="always")
def add_weighted_rows(dst: np.ndarray, src: np.ndarray, w: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    d = table.shape[1]
    for i in range(dst.shape[0]):
        r, b, wi = dst[i], src[i], w[i]
        for k in range(d):
            out[r, k] += wi * table[b, k]


# bag forward:  out[ex[i], :] += w[i] * E[idx[i], :]      idx, ex (m,) int; w (m,); E (n, d); out (B, d)
@njit(cache=CACHE)
def gather_weighted(idx: np.ndarray, ex: np.ndarray, w: np.ndarray, E: np.ndarray, out: np.ndarray) -> None:
    add_weighted_rows(ex, idx, w, E, out)


# bag backward: out[inv[i], :] += w[i] * G[ex[i], :]      inv (m,) into unique rows; G (B, d); out (u, d)
@njit(cache=CACHE)
def scatter_weighted(inv: np.ndarray, ex: np.ndarray, w: np.ndarray, G: np.ndarray, out: np.ndarray) -> None:
    add_weighted_rows(inv, ex, w, G, out)


# row scatter: out[inv[i], :] += vals[i, :]                inv (m,); vals (m, d); out (u, d)
@njit(cache=CACHE)
def scatter_rows(inv: np.ndarray, vals: np.ndarray, out: np.ndarray) -> None:
    d = vals.shape[1]
    for i in range(inv.shape[0]):
        r = inv[i]
        for k in range(d):
            out[r, k] += vals[i, k]


# positives mask: out[b, k] = cand[k] in indices[indptr[u_b]:indptr[u_b + 1]]
#   users (B,), cand (N,) int64; out (B, N) bool, zeroed; head (n_items,) int64 all -1 (restored on return)
#   The candidates are chained by item (head[i] = first k with cand[k] == i, nxt[k] = the next), so each
#   example walks its own history once: O(N + sum of the batch's history lengths), no search.
@njit(cache=CACHE)
def positive_hits(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, cand: np.ndarray,
                  head: np.ndarray, out: np.ndarray) -> None:
    n = cand.shape[0]
    nxt = np.empty(n, dtype=np.int64)
    for k in range(n - 1, -1, -1):
        nxt[k] = head[cand[k]]
        head[cand[k]] = k
    for b in range(users.shape[0]):
        for p in range(indptr[users[b]], indptr[users[b] + 1]):
            k = head[indices[p]]
            while k >= 0:
                out[b, k] = True
                k = nxt[k]
    for k in range(n):
        head[cand[k]] = -1


# Vectorisable float32 exp for x <= 0 (Cephes expf scheme; numba's np.exp on float32 is a scalar libm
# call, ~2.3 ns/element here).  exp(x) = 2^n * exp(r):
#   x <- max(x, -87)  (exp(-87) ~ 1.6e-38 is still a normal float32; 2^n needs n >= -126)
#   n = floor(x log2(e) + 1/2);   r = x - n C1 - n C2   (Cody-Waite: C1 + C2 = ln 2, C1 exact in 9 bits)
#   exp(r) ~ 1 + r + r^2 P(r),  P degree 5 (minimax on |r| <= ln(2)/2)
#   2^n = the float32 with bits (n + 127) << 23
# Max relative error vs exp in float64 on [-87, 0]: ~8e-8 (numpy's float32 exp: ~2e-7).
_LOG2E = np.float32(1.4426950408889634)
_C1 = np.float32(0.693359375)
_C2 = np.float32(-2.12194440e-4)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_EXP_LO = np.float32(-87.0)
_EXP_BLOCK = 4096  # elements per block of a row: the exp's output is summed while still in L1

# No "reassoc" flag: it would let LLVM fold the Cody-Waite split (x - n C1) - n C2 into x - n (C1 + C2).
_EXP_MATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


# seg <- exp(seg - shift) in place, float32, for seg - shift <= 0.  seg (m,)
@njit(cache=CACHE, fastmath=_EXP_MATH)
def exp_shift_f32(seg: np.ndarray, shift: np.float32) -> None:
    for j in range(seg.shape[0]):
        x = max(seg[j] - shift, _EXP_LO)
        fn = np.floor(x * _LOG2E + np.float32(0.5))
        r = x - fn * _C1
        r = r - fn * _C2
        p = _P0
        p = p * r + _P1
        p = p * r + _P2
        p = p * r + _P3
        p = p * r + _P4
        p = p * r + _P5
        seg[j] = (p * r * r + r + np.float32(1.0)) * f32_from_bits((np.int32(fn) + np.int32(127)) << np.int32(23))


# row <- exp(row - shift) in place (row - shift <= 0), returning sum(row) in float64; float32 row (n,).
# The exp runs over L1-sized blocks and each block is summed while still in L1.
@njit(cache=CACHE, inline="always")
def exp_shift_sum_f32(row: np.ndarray, shift: np.float32) -> float:
    n = row.shape[0]
    total = 0.0
    for j0 in range(0, n, _EXP_BLOCK):
        seg = row[j0:min(n, j0 + _EXP_BLOCK)]
        exp_shift_f32(seg, shift)
        sb = np.float32(0.0)
        for j in range(seg.shape[0]):
            sb += seg[j]
        total += sb
    return total


# Full softmax cross-entropy, in place.  logits Z (b, n), targets t (b,), scale s:
#   loss_b = logsumexp(Z_b) - Z_b[t_b];   Z_b <- s * (softmax(Z_b) - onehot(t_b))   (dLoss/dZ for loss s*sum_b)
# Three passes over each row (max, exp+sum, scale); rows in parallel.  Generic (float64 gradient checks).
def _softmax_xent(Z: np.ndarray, t: np.ndarray, scale: float) -> np.ndarray:
    b, n = Z.shape
    losses = np.empty(b, dtype=np.float64)
    for i in prange(b):
        row = Z[i]
        zt = row[t[i]]
        mx = row[0]
        for j in range(1, n):
            if row[j] > mx:
                mx = row[j]
        s = 0.0
        for j in range(n):
            e = np.exp(row[j] - mx)
            row[j] = e
            s += e
        losses[i] = np.log(s) + mx - zt
        inv = scale / s
        for j in range(n):
            row[j] *= inv
        row[t[i]] -= scale
    return losses


# The same for float32 Z with the vectorised exp and a vectorised max; the exp runs over L1-sized
# blocks of the row and each block is summed right after.  Rows in parallel.
def _softmax_xent_f32(Z: np.ndarray, t: np.ndarray, scale: float) -> np.ndarray:
    b, n = Z.shape
    losses = np.empty(b, dtype=np.float64)
    for i in prange(b):
        row = Z[i]
        zt = row[t[i]]
        mx = row[0]
        for j in range(1, n):
            mx = fmax_f32(mx, row[j])
        s = exp_shift_sum_f32(row, mx)
        losses[i] = np.log(s) + mx - zt
        inv = np.float32(scale / s)
        for j in range(n):
            row[j] *= inv
        row[t[i]] -= scale
    return losses


# one body, compiled twice: serial for small batches (no thread start-up), parallel over rows for big ones
_softmax_xent_ser = compile_twin(_softmax_xent, "ser", cache=CACHE, fastmath=True)
_softmax_xent_par = compile_twin(_softmax_xent, "par", cache=CACHE, parallel=True, fastmath=True)
_softmax_xent_f32_ser = compile_twin(_softmax_xent_f32, "ser", cache=CACHE, fastmath=True)
_softmax_xent_f32_par = compile_twin(_softmax_xent_f32, "par", cache=CACHE, parallel=True, fastmath=True)


def softmax_xent_inplace(Z: np.ndarray, t: np.ndarray, scale: float) -> np.ndarray:
    """Dispatch: float32 C-contiguous logits take the vectorised-exp kernel (float64 keeps libm exp,
    exact for gradient checks); threads only when the block is big enough to pay for them (PAR_MIN)."""
    big = Z.size >= PAR_MIN
    if Z.dtype == np.float32 and Z.flags.c_contiguous:
        return (_softmax_xent_f32_par if big else _softmax_xent_f32_ser)(Z, t, scale)
    return (_softmax_xent_par if big else _softmax_xent_ser)(Z, t, scale)


# ---- item-tile kernels of the tiled full softmax (full_softmax.py) ---------------------------------
# Serial and nogil: the tiled step runs one per Python thread, each on its own item tiles, while the
# other thread's BLAS product proceeds.  Z is one tile of logits (b, T) in a scratch buffer.

# Pass 1, running log-sum-exp over tiles:  per row i with tile max mt_i = max_j Z_ij
#   m'_i = max(m_i, mt_i);   s'_i = s_i exp(m_i - m'_i) + sum_j exp(Z_ij - m'_i)
#   m, s (b,) float64 (m starts at LSE_START, s at 0); Z is overwritten (scratch).
LSE_START = -1e300  # a finite "minus infinity": the fastmath flags assume no infinities


def _tile_lse(Z: np.ndarray, m: np.ndarray, s: np.ndarray) -> None:
    b, n = Z.shape
    for i in range(b):
        row = Z[i]
        mt = row[0]
        for j in range(1, n):
            if row[j] > mt:
                mt = row[j]
        if mt > m[i]:
            s[i] *= np.exp(m[i] - mt)
            m[i] = mt
        shift = m[i]
        acc = 0.0
        for j in range(n):
            acc += np.exp(row[j] - shift)
        s[i] += acc


def _tile_lse_f32(Z: np.ndarray, m: np.ndarray, s: np.ndarray) -> None:
    b, n = Z.shape
    for i in range(b):
        row = Z[i]
        mt = row[0]
        for j in range(1, n):
            mt = fmax_f32(mt, row[j])
        if mt > m[i]:
            s[i] *= np.exp(m[i] - mt)
            m[i] = mt
        shift = np.float32(m[i])  # a float32 value of the data: row - shift <= 0 exactly
        s[i] += exp_shift_sum_f32(row, shift)


# Pass 2, the tile's gradient of the loss in place:  for tile columns j0 .. j0 + T - 1
#   Z_ij <- scale * (exp(Z_ij - lse_i) - [j0 + j == t_i])        lse (b,) float64, t (b,) int
def _tile_grad(Z: np.ndarray, lse: np.ndarray, t: np.ndarray, j0: int, scale: float) -> None:
    b, n = Z.shape
    for i in range(b):
        row = Z[i]
        shift = lse[i]
        for j in range(n):
            row[j] = scale * np.exp(row[j] - shift)
        k = t[i] - j0
        if 0 <= k < n:
            row[k] -= scale


def _tile_grad_f32(Z: np.ndarray, lse: np.ndarray, t: np.ndarray, j0: int, scale: float) -> None:
    b, n = Z.shape
    sc = np.float32(scale)
    for i in range(b):
        row = Z[i]
        # float32(lse) >= the row's max (a float32 value <= lse): every exponent stays <= 0
        exp_shift_f32(row, np.float32(lse[i]))
        for j in range(n):
            row[j] *= sc
        k = t[i] - j0
        if 0 <= k < n:
            row[k] -= sc


tile_lse = njit(cache=CACHE, nogil=True, fastmath=True)(_tile_lse)
tile_lse_f32 = njit(cache=CACHE, nogil=True, fastmath=True)(_tile_lse_f32)
tile_grad = njit(cache=CACHE, nogil=True, fastmath=True)(_tile_grad)
tile_grad_f32 = njit(cache=CACHE, nogil=True, fastmath=True)(_tile_grad_f32)


# Adam, dense: m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  p <- p - lr_t m / (sqrt(v) + eps)
# (lr_t carries the bias correction lr sqrt(1-b2^t)/(1-b1^t)).  All arrays flattened, same size.
def _adam_dense(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr_t: float, b1: float, b2: float,
                eps: float) -> None:
    for i in prange(p.shape[0]):
        gi = g[i]
        mi = b1 * m[i] + (1.0 - b1) * gi
        vi = b2 * v[i] + (1.0 - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


# error_model "numpy": without it numba guards the division with a zero check that keeps the loop from
# vectorising (measured 5.9x slower at 6.4M values). A zero denominator needs v = 0 and eps = 0, or
# inf/nan gradients: those reach the parameters as inf/nan, which fit() reports at the epoch's end.
_adam_dense_ser = compile_twin(_adam_dense, "ser", cache=CACHE, fastmath=True, error_model="numpy")
_adam_dense_par = compile_twin(_adam_dense, "par", cache=CACHE, parallel=True, fastmath=True, error_model="numpy")


def adam_dense(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr_t: float, b1: float, b2: float,
               eps: float) -> None:
    (_adam_dense_par if p.size >= PAR_MIN else _adam_dense_ser)(p, g, m, v, lr_t, b1, b2, eps)


# Adagrad, dense: a <- a + g^2;  p <- p - lr g / (sqrt(a) + eps).   Flattened arrays.
def _adagrad_dense(p: np.ndarray, g: np.ndarray, a: np.ndarray, lr: float, eps: float) -> None:
    for i in prange(p.shape[0]):
        gi = g[i]
        ai = a[i] + gi * gi
        a[i] = ai
        p[i] -= lr * gi / (np.sqrt(ai) + eps)


_adagrad_dense_ser = compile_twin(_adagrad_dense, "ser", cache=CACHE, fastmath=True, error_model="numpy")
_adagrad_dense_par = compile_twin(_adagrad_dense, "par", cache=CACHE, parallel=True, fastmath=True,
                                  error_model="numpy")


def adagrad_dense(p: np.ndarray, g: np.ndarray, a: np.ndarray, lr: float, eps: float) -> None:
    (_adagrad_dense_par if p.size >= PAR_MIN else _adagrad_dense_ser)(p, g, a, lr, eps)

