"""Sampled-softmax training step: the row optimiser (lazy Adam) and row-gradient merge, old vs new.

Times whole sampled-50 training steps of the default model (dim 32, one hidden layer of 64, two user
features, batch 256; as benchmarks/bench_softmax.py drives ``model._train_step``) at 2k, 20k and 200k
items with

- old: lazy Adam rows with numba's checked division (scalar loop) and the moments as two (n, d)
  tables; row gradients merged with ``np.unique`` (a sort); the positives mask filling a fresh
  (n_items,) scratch every step;
- new: the shipped ``Adam`` (vectorisable row loop, moments interleaved per row in one (n, 2, d)
  array, rows prefetched ahead), the first-occurrence hash dedup and the reused mask scratch.

Both run in the same process on one thread, in alternating blocks (A B A B ...), each on its own copy
of the same parameters driven by the same seeded batches, so after the run their parameters must be
equal (printed: max |difference|). Prints per-step medians, the optimiser and scatter phases, and
every new/old ratio (phases as bench_softmax.py's: ``optimizer``, ``scatter`` = the row merges,
``batch`` = batch build, sampler and positives mask).

    .venv/bin/python benchmarks/bench_lazy_adam.py [--items 2000,20000,200000] [--blocks 12] [--steps 100]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from numba import njit  # noqa: E402

import mfvsdnn.models.softmax.kernels as softmax_kernels  # noqa: E402
import mfvsdnn.models.softmax.threads as softmax_threads  # noqa: E402
from mfvsdnn.models.softmax import batch as batching  # noqa: E402
from mfvsdnn.models.softmax import model as softmax_model  # noqa: E402
from mfvsdnn.models.softmax.model import SoftmaxDNN  # noqa: E402
from mfvsdnn.models.softmax.optim import Adam, RowGrad  # noqa: E402
from mfvsdnn.models.softmax.sampling import make_sampler  # noqa: E402
from mfvsdnn.models.softmax.threads import blas_threads  # noqa: E402

from bench_softmax import add_data_arguments, uniform_interactions  # noqa: E402  (the same synthetic data as bench_softmax.py)


# the previous row kernel, verbatim: numba's default error model checks every division
@njit(cache=False)
def _old_adam_rows(p, rows, g, m, v, lr_t, b1, b2, eps):
    d = p.shape[1]
    for r in range(rows.shape[0]):
        j = rows[r]
        for k in range(d):
            gi = g[r, k]
            mi = b1 * m[j, k] + (1.0 - b1) * gi
            vi = b2 * v[j, k] + (1.0 - b2) * gi * gi
            m[j, k] = mi
            v[j, k] = vi
            p[j, k] -= lr_t * mi / (np.sqrt(vi) + eps)


class _OldAdam(Adam):
    """The previous Adam.step: separate (n, d) moments for every parameter, rows by the old kernel."""

    def step(self, params, grads):
        self.t += 1
        lr_t = self.lr * np.sqrt(1.0 - self.b2 ** self.t) / (1.0 - self.b1 ** self.t)
        for name, g in grads.items():
            p = params[name]
            if name not in self.m:
                self.m[name] = np.zeros_like(p)
                self.v[name] = np.zeros_like(p)
            m, v = self.m[name], self.v[name]
            if isinstance(g, RowGrad):
                _old_adam_rows(p, g.rows, g.values.astype(p.dtype, copy=False), m, v, lr_t, self.b1, self.b2, self.eps)
            else:
                softmax_kernels.adam_dense(p.reshape(-1), np.ascontiguousarray(g, dtype=p.dtype).reshape(-1),
                                           m.reshape(-1), v.reshape(-1), lr_t, self.b1, self.b2, self.eps)


def _old_merge(self, d, dtype):
    """The previous _Rows.merge: rows deduplicated by np.unique (sorted)."""
    if not self.parts:
        return RowGrad(np.zeros(0, dtype=np.int64), np.zeros((0, d), dtype=dtype))
    uniq, inv = np.unique(np.concatenate([p[1] for p in self.parts]), return_inverse=True)
    out = np.zeros((len(uniq), d), dtype=dtype)
    o = 0
    for p in self.parts:
        k = len(p[1])
        if p[0] == "rows":
            softmax_kernels.scatter_rows(inv[o:o + k], np.ascontiguousarray(p[2], dtype=dtype), out)
        else:
            softmax_kernels.scatter_weighted(inv[o:o + k], p[2], p[3].astype(dtype),
                                             np.ascontiguousarray(p[4], dtype=dtype), out)
        o += k
    return RowGrad(uniq, out)


_NEW_MERGE = batching._Rows.merge
_NEW_HITS = softmax_model.positive_hits


def _old_positive_hits(indptr, indices, users, cand, n_items):
    """The previous positives mask: a fresh (n_items,) chain-head array every call."""
    out = np.zeros((len(users), len(cand)), dtype=np.bool_)
    head = np.full(n_items, -1, dtype=np.int64)
    softmax_kernels.positive_hits(indptr, indices, np.asarray(users, dtype=np.int64), np.asarray(cand, dtype=np.int64),
                                  head, out)
    return out


class _Arm:
    """One side of the A/B: its own parameters, optimiser and batch generator (same seeds on both sides)."""

    def __init__(self, old: bool, X: sp.csr_matrix, codes: list, batch: int, seed: int) -> None:
        n_users, n_items = X.shape
        self.old = old
        self.model = SoftmaxDNN(negatives=50, dim=32, hidden=(64,), batch_size=batch)
        self.P = self.model.init_params(n_items, {"f0": 10, "f1": 5}, np.random.default_rng(seed))
        self.opt = _OldAdam(lr=self.model.lr) if old else Adam(lr=self.model.lr)
        self.cfg = self.model._loss_config()
        self.indptr, self.indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
        self.pair_u = np.repeat(np.arange(n_users), np.diff(self.indptr))
        self.sampler = make_sampler("uniform", np.bincount(self.indices, minlength=n_items))
        self.codes, self.batch = codes, batch
        self.rng = np.random.default_rng(seed + 1)
        self.times: list[float] = []
        self.phases: dict[str, list[float]] = {"optimizer": [], "scatter": [], "batch": []}

    def run(self, steps: int, record: bool = True) -> None:
        batching._Rows.merge = _old_merge if self.old else _NEW_MERGE
        softmax_model.positive_hits = _old_positive_hits if self.old else _NEW_HITS
        try:
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            for _ in range(steps):
                idx = self.rng.integers(0, len(self.pair_u), self.batch)
                self.model._train_step(self.P, self.opt, self.cfg, self.indptr, self.indices, self.codes,
                                       self.pair_u[idx], self.indices[idx], self.rng, self.sampler, 50, 0, timings)
            if record:
                self.times.append((time.perf_counter() - t0) / steps)
                for k in self.phases:
                    self.phases[k].append(timings.get(k, 0.0) / steps)
        finally:
            batching._Rows.merge = _NEW_MERGE
            softmax_model.positive_hits = _NEW_HITS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.add_argument("--blocks", type=int, default=12, help="timed blocks per side (alternating)")
    ap.add_argument("--steps", type=int, default=100, help="steps per block")
    args = ap.parse_args()
    softmax_threads.BIG_PRODUCT = 1 << 62  # one thread everywhere: steadier on shared cores
    softmax_kernels.PAR_MIN = 1 << 62
    rng = np.random.default_rng(0)
    print(f"sampled-50 step, batch {args.batch}, dim 32, hidden 64, 2 features, {args.users} users x "
          f"{args.per_user} items; one thread; {args.blocks} alternating blocks of {args.steps} steps per side; "
          f"load average before {os.getloadavg()[0]:.1f}")
    print(f"{'items':>8} {'old ms':>8} {'new ms':>8} {'new/old':>8} {'opt old':>8} {'opt new':>8} {'new/old':>8} "
          f"{'scat old':>8} {'scat new':>8} {'new/old':>8} {'bat old':>8} {'bat new':>8} {'new/old':>8} {'max|dP|':>9}")
    for n_items in [int(x) for x in args.items.split(",")]:
        X = uniform_interactions(n_items, args.users, args.per_user, rng)
        codes = [rng.integers(0, 10, args.users), rng.integers(0, 5, args.users)]
        arms = [_Arm(True, X, codes, args.batch, 7), _Arm(False, X, codes, args.batch, 7)]
        with blas_threads(None):
            for arm in arms:
                arm.run(5, record=False)  # compile and warm up
            for b in range(args.blocks):
                for arm in (arms if b % 2 == 0 else arms[::-1]):
                    arm.run(args.steps)
        old, new = arms
        diff = max(float(np.max(np.abs(old.P[k] - new.P[k]))) for k in old.P)
        med = [float(np.median(a.times)) for a in arms]
        opt = [float(np.median(a.phases["optimizer"])) for a in arms]
        sc = [float(np.median(a.phases["scatter"])) for a in arms]
        bt = [float(np.median(a.phases["batch"])) for a in arms]
        print(f"{n_items:>8} {med[0] * 1e3:>8.3f} {med[1] * 1e3:>8.3f} {med[1] / med[0]:>8.2f} {opt[0] * 1e3:>8.3f} "
              f"{opt[1] * 1e3:>8.3f} {opt[1] / opt[0]:>8.2f} {sc[0] * 1e3:>8.3f} {sc[1] * 1e3:>8.3f} "
              f"{sc[1] / sc[0]:>8.2f} {bt[0] * 1e3:>8.3f} {bt[1] * 1e3:>8.3f} {bt[1] / bt[0]:>8.2f} {diff:>9.1e}")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
