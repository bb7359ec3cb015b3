"""MAP fold-in: the WALS row solve of a new query with a Gaussian prior centred on a feature mean.

Plain fold-in (the user half-step against fixed item factors V (n_items, d)) ignores what the query's
features say; the feature heuristic ignores its history. The MAP fold-in is the row solve of the
WALS objective plus ``lam * ||u - u_bar||^2``, where ``u_bar`` (d,) is the query's prior mean (the
feature heuristic's vector):

    (w0·VᵀV + (1 − w0)·Σ_{j∈Ω} v_j v_jᵀ + (reg + lam)·I) u = Σ_{j∈Ω} v_j + lam·u_bar

    A (d, d) = G + lam·I + s·Σ_{j∈Ω} v_j v_jᵀ      G = w0·VᵀV + reg·I,  s = 1 − w0
    b (d,)   = lam·u_bar + Σ_{j∈Ω} v_j

At lam = 0 this is the plain fold-in; as lam grows, u tends to u_bar (with an empty history it is
``lam (G + lam I)^{-1} u_bar``, the prior shrunk towards 0 by the unobserved-weight term).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...core.numba_util import CACHE, compile_twin
from .kernels import cholesky_row


# Exact solve by Cholesky, in float64, of  A_i x_i = b0_i + Σ_{j∈Ω_i} y_j  with  A_i = G + s Σ y_j y_jᵀ.
# The same per-row solve as kernels.solve_rows_cholesky (``kernels.cholesky_row``), so G without
# the prior term and b0 = 0 give its result bit for bit. Rows with no entries solve G x = b0.
# Shapes: indptr (n+1,), indices (nnz,), Y (m, d) f32, G (d, d) f64 (already holding + lam I),
#         b0 (n, d) f64 (lam · u_bar), out (n, d) f32 (written). Buffers once per chunk of rows.
@njit(parallel=True, cache=CACHE)
def solve_rows_cholesky_prior(indptr, indices, Y, G, s, b0, out, chunk):
    n, d = out.shape
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        A = np.empty((d, d), dtype=np.float64)
        b = np.empty(d, dtype=np.float64)
        y64 = np.empty(d, dtype=np.float64)
        stop = min(n, (c + 1) * chunk)
        for i in range(c * chunk, stop):
            for a in range(d):
                b[a] = b0[i, a]
            cholesky_row(indptr[i], indptr[i + 1], indices, Y, G, s, A, b, y64)
            for a in range(d):
                out[i, a] = b[a]


# A request of a few rows (one new user) would pay the thread pool's start-up for nothing.
solve_rows_cholesky_prior_serial = compile_twin(solve_rows_cholesky_prior.py_func, "serial", cache=CACHE)
