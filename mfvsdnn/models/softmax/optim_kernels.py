"""Numba kernels of the sparse (row) optimiser updates: the dedup of a gradient's row indices, lazy
Adam on rows with interleaved moments, Adagrad on rows.

The update kernels use ``error_model="numpy"``: under numba's default ("python") every division
checks for a zero divisor to raise ZeroDivisionError, and that branch keeps LLVM from vectorising
the loop (the row updates ran one scalar float64 sqrt and division per element, ~6x slower when
the rows are in cache). The divisor sqrt(v) + eps is >= eps > 0 for every finite v, so the check
could only fire on inf/nan gradients; those now make the parameters nan, which the training loop's
finiteness check turns into its "training diverged" error. The arithmetic is unchanged (no
fastmath): results are bit-identical to the checked loop's.

They also prefetch the rows ``AHEAD`` updates ahead: a touched row of a big table is a cache miss,
and the out-of-order core only overlaps the misses of about the next row, so a gradient's rows were
fetched nearly one at a time (the update of 5,000 random rows of a 200k x 32 table ran ~2.5x faster
with the prefetch; see benchmarks/bench_lazy_adam.py).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ...core.numba_util import CACHE

AHEAD = 8  # rows prefetched ahead of the update: enough misses in flight, still in L1 when used
LINE = 64  # bytes of a cache line

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: Fibonacci hashing


# Distinct keys in first-occurrence order and each key's position among them:
#   keys (m,) int64  ->  uniq (u,), inv (m,) with uniq[inv[i]] == keys[i]; uniq in order of first occurrence.
# Open addressing (linear probing) over 2^b >= 2m slots, slot = top b bits of key * _GOLDEN: O(m), no sort,
# and the table (16 bytes a slot) stays in cache. Deterministic: the output depends on keys only.
@njit(cache=CACHE)
def unique_first(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = keys.shape[0]
    bits = 1
    while (1 << bits) < 2 * m:
        bits += 1
    size = 1 << bits
    shift = np.uint64(64 - bits)
    slot_key = np.empty(size, dtype=np.int64)
    slot_id = np.full(size, -1, dtype=np.int64)
    uniq = np.empty(m, dtype=np.int64)
    inv = np.empty(m, dtype=np.int64)
    n = 0
    for i in range(m):
        key = keys[i]
        s = np.int64((np.uint64(key) * _GOLDEN) >> shift)
        while slot_id[s] >= 0 and slot_key[s] != key:
            s = (s + 1) & (size - 1)
        if slot_id[s] < 0:
            slot_key[s] = key
            slot_id[s] = n
            uniq[n] = key
            n += 1
        inv[i] = slot_id[s]
    return uniq[:n], inv


# prefetch_write(a, i): hint that element i of C-contiguous a (flat index) is about to be written
# (llvm.prefetch: rw = 1 write, locality = 3 keep in every cache level, data cache). No effect on results.
@intrinsic
def prefetch_write(typingctx, a, i):  # noqa: ARG001
    def codegen(context, builder, signature, args):  # noqa: ARG001
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        builder.call(fn, [builder.bitcast(builder.gep(data, [args[1]]), i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(a, types.intp), codegen


# prefetch row j of a C-contiguous table of w values a row, one hint per cache line
@njit(cache=CACHE, inline="always")
def prefetch_row(table: np.ndarray, j: int, w: int) -> None:
    step = max(1, LINE // table.itemsize)
    for off in range(0, w, step):
        prefetch_write(table, j * w + off)


# Lazy Adam on rows.  p (n, d); rows (u,) distinct; g (u, d); mv (n, 2, d): mv[j, 0] = m_j, mv[j, 1] = v_j
# (a row's two moment rows are one contiguous block: one memory stream, not two tables' misses).
# For r in 0..u-1, j = rows[r]:
#   m_j <- b1 m_j + (1-b1) g_r;   v_j <- b2 v_j + (1-b2) g_r^2;   p_j <- p_j - lr_t m_j / (sqrt(v_j) + eps)
# (lr_t carries the bias correction of the global step; rows not in ``rows`` are not touched at all).
@njit(cache=CACHE, error_model="numpy")
def adam_rows(p: np.ndarray, rows: np.ndarray, g: np.ndarray, mv: np.ndarray, lr_t: float, b1: float,
              b2: float, eps: float) -> None:
    d = p.shape[1]
    u = rows.shape[0]
    for r in range(u):
        if r + AHEAD < u:
            prefetch_row(mv, rows[r + AHEAD], 2 * d)
            prefetch_row(p, rows[r + AHEAD], d)
        j = rows[r]
        for k in range(d):
            gi = g[r, k]
            mi = b1 * mv[j, 0, k] + (1.0 - b1) * gi
            vi = b2 * mv[j, 1, k] + (1.0 - b2) * gi * gi
            mv[j, 0, k] = mi
            mv[j, 1, k] = vi
            p[j, k] -= lr_t * mi / (np.sqrt(vi) + eps)


# Adagrad on rows (exact for sparse gradients: untouched rows have g = 0).  p, a (n, d); rows (u,); g (u, d):
#   a_j <- a_j + g_r^2;   p_j <- p_j - lr g_r / (sqrt(a_j) + eps)
@njit(cache=CACHE, error_model="numpy")
def adagrad_rows(p: np.ndarray, rows: np.ndarray, g: np.ndarray, a: np.ndarray, lr: float, eps: float) -> None:
    d = p.shape[1]
    u = rows.shape[0]
    for r in range(u):
        if r + AHEAD < u:
            prefetch_row(a, rows[r + AHEAD], d)
            prefetch_row(p, rows[r + AHEAD], d)
        j = rows[r]
        for k in range(d):
            gi = g[r, k]
            ai = a[j, k] + gi * gi
            a[j, k] = ai
            p[j, k] -= lr * gi / (np.sqrt(ai) + eps)
