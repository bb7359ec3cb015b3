"""numba kernels for WALS: the per-row solves and the observed part of the objective.

Notation (one half-iteration, solving the rows X (n, d) against the fixed other side Y (m, d)):

    A_i = G + s * sum_{j in Omega_i} y_j y_j^T        G = w0 * Y^T Y + lam * I   (d, d),  s = 1 - w0
    b_i = sum_{j in Omega_i} y_j
    x_i = A_i^{-1} b_i

``Omega_i`` is row i of a CSR structure (``indptr`` (n + 1,), ``indices`` (nnz,)); the stored values
are ignored: every stored entry is a positive (binary implicit feedback).

The Cholesky kernels loop ``prange`` over chunks of ``chunk`` rows; the CG kernel over runs of row
blocks cut at equal work (:func:`row_blocks`, :func:`block_parts`). All allocate their work buffers
once per chunk or run, never per row, and never an (nnz, d) array. Every row's result depends only on
that row's inputs and its block (fixed by the data), so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...core.numba_util import CACHE, compile_twin

CHUNK = 64
# The CG kernel gathers a block's y_j rows once into a buffer and reads them from there in every CG
# step (instead of gathering them again from Y each step); a block holds at most this many bytes of
# gathered rows, so the buffer stays in the core's L2 cache and its size is bounded. Only a single
# row with more entries than fit (a very popular item) is a block of its own and reads Y directly.
BLOCK_BYTES = 1 << 19


@njit(cache=CACHE, fastmath=True, inline="always")
def _dot32(a, b, d):
    # a . b for two float32 vectors of length d (float32 accumulation, SIMD-friendly).
    acc = np.float32(0.0)
    for k in range(d):
        acc += a[k] * b[k]
    return acc



# One row's sparse pass:  out += sum_{jj in [lo, hi)} (c0 + c1 * y_jj . v) y_jj      v, out (d,) f32
#   y_jj = src[jj - base] (the block's gathered rows) if buffered, else src[indices[jj]] (Y itself).
# Four entries per step: four independent dot products share each load of v, and out is read and
# written once per four entries instead of once per entry (its load-add-store chain was the bound;
# measured on one thread, 5-60 entries a row: 0.63x the one-entry loop's time; eight entries at a
# time measured no better inside the whole fit).
@njit(cache=CACHE, fastmath=True, inline="always")
def _row_pass(src, indices, lo, hi, base, buffered, v, out, c0, c1):
    d = v.shape[0]
    jj = lo
    while jj + 3 < hi:
        if buffered:
            j0, j1, j2, j3 = jj - base, jj + 1 - base, jj + 2 - base, jj + 3 - base
        else:
            j0, j1, j2, j3 = indices[jj], indices[jj + 1], indices[jj + 2], indices[jj + 3]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for a in range(d):
            va = v[a]
            a0 += src[j0, a] * va
            a1 += src[j1, a] * va
            a2 += src[j2, a] * va
            a3 += src[j3, a] * va
        k0, k1, k2, k3 = c0 + c1 * a0, c0 + c1 * a1, c0 + c1 * a2, c0 + c1 * a3
        for a in range(d):
            out[a] += (k0 * src[j0, a] + k1 * src[j1, a]) + (k2 * src[j2, a] + k3 * src[j3, a])
        jj += 4
    while jj < hi:
        j = jj - base if buffered else indices[jj]
        acc = np.float32(0.0)
        for a in range(d):
            acc += src[j, a] * v[a]
        kj = c0 + c1 * acc
        for a in range(d):
            out[a] += kj * src[j, a]
        jj += 1


# Row blocks for the CG kernel: cut where a block reaches an equal share of the work, so that no block
# carries many times the mean (real interaction counts are skewed: the popular items sit together).
# A row's work per CG step is about 4 d flops per entry (y.p, then the axpy) and 2 d^2 for its share of
# the block product G.P, i.e. proportional to nnz_i + d / 2. Blocks hold at most ``chunk`` rows (the
# size of their buffers), close once their gathered rows reach ``block_bytes``, and depend only on the
# data and d, never on the thread count, so neither do the results. Returns bounds (n_blocks + 1,)
# int64 row offsets.
def row_blocks(indptr: np.ndarray, d: int, chunk: int = CHUNK, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    n = len(indptr) - 1
    if n <= 0:
        return np.zeros(1, dtype=np.int64)
    entries = np.diff(indptr)
    work = entries.astype(np.float64) + 0.5 * d
    target = float(work.sum()) / ((n + chunk - 1) // chunk)
    return _cut_blocks(work, entries, target, chunk, max(1, block_bytes // (4 * d)))


@njit(cache=CACHE)
def _cut_blocks(work, entries, target, chunk, max_entries):
    n = work.shape[0]
    bounds = np.empty(n + 1, dtype=np.int64)
    bounds[0] = 0
    nb, acc, start, held = 1, 0.0, 0, 0
    for i in range(n):
        if i > start and held + entries[i] > max_entries:  # a row that would overflow opens a new block
            bounds[nb] = i
            nb += 1
            acc, start, held = 0.0, i, 0
        acc += work[i]
        held += entries[i]
        if acc >= target or i + 1 - start >= chunk or held >= max_entries:
            bounds[nb] = i + 1
            nb += 1
            acc, start, held = 0.0, i + 1, 0
    if bounds[nb - 1] != n:
        bounds[nb] = n
        nb += 1
    return bounds[:nb].copy()


# Blocks to threads: contiguous runs of blocks with equal total work (the thread that gets the
# light blocks gets more of them). Returns parts (n_parts + 1,) int64 block offsets.
def block_parts(indptr: np.ndarray, bounds: np.ndarray, d: int, n_parts: int) -> np.ndarray:
    n_blocks = len(bounds) - 1
    n_parts = max(1, min(int(n_parts), n_blocks))
    rows = np.diff(bounds).astype(np.float64)
    work = np.cumsum(np.diff(indptr[bounds]).astype(np.float64) + 0.5 * d * rows)
    cuts = np.searchsorted(work, work[-1] * np.arange(1, n_parts) / n_parts, side="left") + 1
    parts = np.concatenate([[0], np.minimum(cuts, n_blocks), [n_blocks]]).astype(np.int64)
    return np.maximum.accumulate(parts)


# CG without forming A_i:   A_i p = G p + s * sum_j y_j (y_j . p)
#   r0 = b - A x0 = -G x0 + sum_j (1 - s * y_j . x0) y_j,  then ``cg_steps`` standard CG steps.
# The rows of a block run their CG steps in lockstep, so the dense part of A_i p for the whole block
# is one BLAS product P (nb, d) @ G (d, d) per step; only the sparse part is a per-row loop. A row
# that has converged (or met p.Ap <= 0) keeps p = 0 and stops changing, exactly as it would alone.
# Shapes: indptr (n+1,), indices (nnz,), Y (m, d) f32, X (n, d) f32 updated in place (warm start),
#         G (d, d) f32 C-contiguous, bounds (n_blocks+1,) from row_blocks, parts (n_parts+1,) from
#         block_parts. Rows with no entries get x = 0 (the exact solution, b = 0).
@njit(parallel=True, cache=CACHE, fastmath=True)
def solve_rows_cg(indptr, indices, Y, X, G, s, cg_steps, bounds, parts):
    d = X.shape[1]
    s32 = np.float32(s)
    for part in prange(parts.shape[0] - 1):
        cap = 1
        for c in range(parts[part], parts[part + 1]):
            cap = max(cap, bounds[c + 1] - bounds[c])
        xb = np.empty((cap, d), dtype=np.float32)
        r = np.empty((cap, d), dtype=np.float32)
        p = np.empty((cap, d), dtype=np.float32)
        ap = np.empty((cap, d), dtype=np.float32)
        rs = np.empty(cap, dtype=np.float64)
        active = np.empty(cap, dtype=np.bool_)
        max_entries = max(1, BLOCK_BYTES // (4 * d))
        held = 1
        for c in range(parts[part], parts[part + 1]):
            block_held = indptr[bounds[c + 1]] - indptr[bounds[c]]
            if block_held <= max_entries:
                held = max(held, block_held)
        yb = np.empty((held, d), dtype=np.float32)
        for c in range(parts[part], parts[part + 1]):
            r0 = bounds[c]
            nb = bounds[c + 1] - r0
            base = indptr[r0]
            buffered = indptr[r0 + nb] - base <= max_entries
            src = yb if buffered else Y
            if buffered:
                for jj in range(base, indptr[r0 + nb]):
                    j = indices[jj]
                    for a in range(d):
                        yb[jj - base, a] = Y[j, a]
            # fresh C-contiguous views of exactly nb rows: what the BLAS call needs
            xv, rv, pv, apv = xb[:nb], r[:nb], p[:nb], ap[:nb]
            for k in range(nb):
                for a in range(d):
                    xv[k, a] = X[r0 + k, a]
            np.dot(xv, G, rv)  # G symmetric: row k of X G is G x_k
            n_active = 0
            for k in range(nb):
                i = r0 + k
                lo, hi = indptr[i], indptr[i + 1]
                active[k] = False
                if hi == lo:
                    for a in range(d):
                        xv[k, a] = 0.0
                        pv[k, a] = 0.0
                    continue
                rk = rv[k]
                for a in range(d):
                    rk[a] = -rk[a]
                _row_pass(src, indices, lo, hi, base, buffered, xv[k], rk, np.float32(1.0), -s32)
                rs[k] = np.float64(_dot32(rk, rk, d))
                if rs[k] < 1e-20:
                    for a in range(d):
                        pv[k, a] = 0.0
                    continue
                active[k] = True
                n_active += 1
                for a in range(d):
                    pv[k, a] = rk[a]
            for _ in range(cg_steps):
                if n_active == 0:
                    break
                np.dot(pv, G, apv)
                for k in range(nb):
                    if not active[k]:
                        continue
                    i = r0 + k
                    pk, apk = pv[k], apv[k]
                    _row_pass(src, indices, indptr[i], indptr[i + 1], base, buffered, pk, apk, np.float32(0.0), s32)
                    pap = np.float64(_dot32(pk, apk, d))
                    if pap <= 0.0:
                        active[k] = False
                        n_active -= 1
                        for a in range(d):
                            pk[a] = 0.0
                        continue
                    alpha = np.float32(rs[k] / pap)
                    x, rk = xv[k], rv[k]
                    for a in range(d):
                        x[a] += alpha * pk[a]
                        rk[a] -= alpha * apk[a]
                    rsnew = np.float64(_dot32(rk, rk, d))
                    if rsnew < 1e-20:
                        active[k] = False
                        n_active -= 1
                        for a in range(d):
                            pk[a] = 0.0
                        continue
                    beta = np.float32(rsnew / rs[k])
                    for a in range(d):
                        pk[a] = rk[a] + beta * pk[a]
                    rs[k] = rsnew
            for k in range(nb):
                for a in range(d):
                    X[r0 + k, a] = xv[k, a]


# One row's exact solve by Cholesky, in float64:  A = G + s Σ_{j∈Ω} y_j y_jᵀ,  b += Σ_{j∈Ω} y_j,
# A = L Lᵀ, L z = b, Lᵀ x = z; x is left in b. Shapes: Y (m, d) f32, G (d, d) f64; A (d, d), b (d,)
# and y64 (d,) are the caller's f64 buffers (b holds the right-hand side's constant part on entry).
# Shared by the plain solve below and the MAP fold-in (foldin.py), so both do the same arithmetic.
@njit(cache=CACHE, inline="always")
def cholesky_row(lo, hi, indices, Y, G, s, A, b, y64):
    d = b.shape[0]
    for a in range(d):
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


# Exact solve by Cholesky of every row, in float64 (``cholesky_row``); an empty row is 0.
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
            cholesky_row(lo, hi, indices, Y, G, s, A, b, y64)
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
