"""numba kernels for WALS: the per-row solves and the observed part of the objective.

Notation (one half-iteration, solving the rows X (n, d) against the fixed other side Y (m, d)):

    A_i = G + s * sum_{j in Omega_i} y_j y_j^T        G = w0 * Y^T Y + lam * I   (d, d),  s = 1 - w0
    b_i = sum_{j in Omega_i} y_j
    x_i = A_i^{-1} b_i

``Omega_i`` is row i of a CSR structure (``indptr`` (n + 1,), ``indices`` (nnz,)); the stored values
are ignored: every stored entry is a positive (binary implicit feedback).

All kernels loop ``prange`` over chunks of ``chunk`` rows and allocate their work buffers once per
chunk, never per row, and never an (nnz, d) array. Every row's result depends only on that row's
inputs, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...core.numba_util import CACHE, compile_twin

CHUNK = 64


@njit(cache=CACHE, fastmath=True, inline="always")
def _dot32(a, b, d):
    # a . b for two float32 vectors of length d (float32 accumulation, SIMD-friendly).
    acc = np.float32(0.0)
    for k in range(d):
        acc += a[k] * b[k]
    return acc


# CG without forming A_i:   A_i p = G p + s * sum_j y_j (y_j . p)
#   r0 = b - A x0 = -G x0 + sum_j (1 - s * y_j . x0) y_j,  then ``cg_steps`` standard CG steps.
# Shapes: indptr (n+1,), indices (nnz,), Y (m, d) f32, X (n, d) f32 updated in place (warm start),
#         G (d, d) f32.  Rows with no entries get x = 0 (the exact solution, b = 0).
@njit(parallel=True, cache=CACHE, fastmath=True)
def solve_rows_cg(indptr, indices, Y, X, G, s, cg_steps, chunk):
    n, d = X.shape
    s32 = np.float32(s)
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        x = np.empty(d, dtype=np.float32)
        r = np.empty(d, dtype=np.float32)
        p = np.empty(d, dtype=np.float32)
        ap = np.empty(d, dtype=np.float32)
        stop = min(n, (c + 1) * chunk)
        for i in range(c * chunk, stop):
            lo, hi = indptr[i], indptr[i + 1]
            if hi == lo:
                for a in range(d):
                    X[i, a] = 0.0
                continue
            for a in range(d):
                x[a] = X[i, a]
            # r = -G x  (G symmetric: accumulate rows scaled by x, vertical SIMD, no horizontal sums)
            for a in range(d):
                r[a] = 0.0
            for b in range(d):
                xb = -x[b]
                gb = G[b]
                for a in range(d):
                    r[a] += xb * gb[a]
            for jj in range(lo, hi):
                y = Y[indices[jj]]
                coef = np.float32(1.0) - s32 * _dot32(y, x, d)
                for a in range(d):
                    r[a] += coef * y[a]
            rsold = np.float64(_dot32(r, r, d))
            if rsold < 1e-20:
                continue
            for a in range(d):
                p[a] = r[a]
            for _ in range(cg_steps):
                for a in range(d):
                    ap[a] = 0.0
                for b in range(d):
                    pb = p[b]
                    gb = G[b]
                    for a in range(d):
                        ap[a] += pb * gb[a]
                for jj in range(lo, hi):
                    y = Y[indices[jj]]
                    coef = s32 * _dot32(y, p, d)
                    for a in range(d):
                        ap[a] += coef * y[a]
                pap = np.float64(_dot32(p, ap, d))
                if pap <= 0.0:
                    break
                alpha = np.float32(rsold / pap)
                for a in range(d):
                    x[a] += alpha * p[a]
                    r[a] -= alpha * ap[a]
                rsnew = np.float64(_dot32(r, r, d))
                if rsnew < 1e-20:
                    break
                beta = np.float32(rsnew / rsold)
                for a in range(d):
                    p[a] = r[a] + beta * p[a]
                rsold = rsnew
            for a in range(d):
                X[i, a] = x[a]


# Exact solve by Cholesky, in float64:  A_i = L L^T,  L z = b_i,  L^T x_i = z.
# Shapes: indptr (n+1,), indices (nnz,), Y (m, d) f32, G (d, d) f64, out (n, d) f32 (written).
# Used for training (--solver cholesky) and for folding in new queries against fixed item factors.
@njit(parallel=True, cache=CACHE)
def solve_rows_cholesky(indptr, indices, Y, G, s, out, chunk):
    n, d = out.shape
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        A = np.empty((d, d), dtype=np.float64)
        b = np.empty(d, dtype=np.float64)
        y64 = np.empty(d, dtype=np.float64)
        stop = min(n, (c + 1) * chunk)
        for i in range(c * chunk, stop):
            lo, hi = indptr[i], indptr[i + 1]
            if hi == lo:
                for a in range(d):
                    out[i, a] = 0.0
                continue
            for a in range(d):
                b[a] = 0.0
                for k in range(a + 1):
                    A[a, k] = G[a, k]
            for jj in range(lo, hi):
                y = Y[indices[jj]]
                for a in range(d):
                    y64[a] = y[a]
                for a in range(d):
                    b[a] += y64[a]
                    sa = s * y64[a]
                    for k in range(a + 1):
                        A[a, k] += sa * y64[k]
            # in-place Cholesky of the lower triangle
            for j in range(d):
                acc = A[j, j]
                for k in range(j):
                    acc -= A[j, k] * A[j, k]
                if acc <= 0.0:
                    acc = 1e-12
                ljj = np.sqrt(acc)
                A[j, j] = ljj
                for a in range(j + 1, d):
                    acc = A[a, j]
                    for k in range(j):
                        acc -= A[a, k] * A[j, k]
                    A[a, j] = acc / ljj
            # forward: L z = b  (z stored in b)
            for a in range(d):
                acc = b[a]
                for k in range(a):
                    acc -= A[a, k] * b[k]
                b[a] = acc / A[a, a]
            # backward: L^T x = z
            for a in range(d - 1, -1, -1):
                acc = b[a]
                for k in range(a + 1, d):
                    acc -= A[k, a] * b[k]
                b[a] = acc / A[a, a]
            for a in range(d):
                out[i, a] = b[a]


# The same solve compiled without threads: a request of a few rows (serving a new user) would
# otherwise pay the thread pool's start-up, which costs more than the solve itself.
solve_rows_cholesky_serial = compile_twin(solve_rows_cholesky.py_func, "serial", cache=CACHE)


# Observed part of the objective via  sum_{(i,j) in Omega} [(1 - u_i.v_j)^2 - w0 (u_i.v_j)^2];
# the caller adds w0 * <U^T U, V^T V> (= w0 * sum over ALL pairs of (u.v)^2) and the L2 term.
# Shapes: indptr (n+1,), indices (nnz,), U (n, d) f32, V (m, d) f32.  Returns a float64 sum.
@njit(parallel=True, cache=CACHE, fastmath=True)
def observed_loss(indptr, indices, U, V, w0):
    n, d = U.shape
    total = 0.0
    for i in prange(n):
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            v = V[indices[jj]]
            sc = 0.0
            for a in range(d):
                sc += np.float64(U[i, a]) * np.float64(v[a])
            acc += (1.0 - sc) ** 2 - w0 * sc * sc
        total += acc
    return total
