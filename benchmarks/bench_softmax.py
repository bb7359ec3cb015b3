"""Softmax DNN training-step speed: full vs sampled softmax as the corpus grows.

For each corpus size (default 2k, 20k, 200k items) it times whole training steps (batch build,
query tower forward/backward, loss, embedding-gradient scatter, optimiser update) of the default
model (dim 32, one hidden layer of 64, two user features, batch 256) with ``--negatives all`` and
``--negatives 50``, and the bare logits product ``Q @ V.T`` of the same shapes (B x d times d x n) in
the same run: the floor of the full-softmax step, which needs about three such products plus a few
passes over the logits.

Targets: full step <= 4x the bare product; sampled-50 step at 200k items >= 20x faster than the full
step; the query tower and the scatter never dominate the step (breakdown printed).

    .venv/bin/python benchmarks/bench_softmax.py [--items 2000,20000,200000] [--batch 256] [--seconds 3]
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import contextlib
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn.models.softmax.optim import make_optimizer  # noqa: E402
from mfvsdnn.models.softmax.sampling import make_sampler  # noqa: E402
from mfvsdnn.models.softmax.model import SoftmaxDNN  # noqa: E402
from mfvsdnn.models.softmax.threads import blas_threads  # noqa: E402

PHASES = ("batch", "tower", "loss", "scatter", "optimizer")


def _data(n_items: int, n_users: int, per_user: int, rng: np.random.Generator) -> sp.csr_matrix:
    cols = rng.integers(0, n_items, size=n_users * per_user)
    rows = np.repeat(np.arange(n_users), per_user)
    X = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0
    X.sort_indices()
    return X


def _time_steps(model: SoftmaxDNN, X: sp.csr_matrix, codes: list, batch: int, seconds: float,
                rng: np.random.Generator) -> tuple[float, dict[str, float], int]:
    """Mean seconds per training step, mean per-phase seconds, steps timed (after 2 warm-up steps)."""
    n_users, n_items = X.shape
    P = model.init_params(n_items, {"f0": 10, "f1": 5}, rng)
    opt = make_optimizer(model.optimizer, model.lr)
    cfg = model._loss_config()
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    pair_u = np.repeat(np.arange(n_users), np.diff(indptr))
    counts = np.bincount(indices, minlength=n_items)
    sampled = isinstance(model.negatives, int) and model.negatives > 0
    sampler = make_sampler(model.sampler, counts) if sampled else None
    n_draw = model.negatives if sampled else 0

    def step(timings=None):
        idx = rng.integers(0, len(pair_u), batch)
        model._train_step(P, opt, cfg, indptr, indices, codes, pair_u[idx], indices[idx], rng, sampler,
                          n_draw, 0, timings)

    step()
    step()
    timings: dict[str, float] = {}
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step(timings)
        n += 1
    total = (time.perf_counter() - t0) / n
    return total, {k: v / n for k, v in timings.items()}, n


def _time_product(B: int, n_items: int, d: int, seconds: float, rng: np.random.Generator) -> tuple[float, float]:
    """Median seconds of ``Q @ V.T`` (allocating its result, as written) and of the same product into
    a preallocated buffer (no page faults: the tightest floor)."""
    Q = rng.normal(size=(B, d)).astype(np.float32)
    V = rng.normal(size=(n_items, d)).astype(np.float32)
    out = np.empty((B, n_items), dtype=np.float32)
    res = []
    for f in (lambda: Q @ V.T, lambda: np.matmul(Q, V.T, out=out)):
        f()
        ts = []
        t0 = time.perf_counter()
        while len(ts) < 3 or time.perf_counter() - t0 < seconds / 2:
            s = time.perf_counter()
            f()
            ts.append(time.perf_counter() - s)
        res.append(float(np.median(ts)))
    return res[0], res[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="2000,20000,200000")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--per-user", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    ap.add_argument("--threads", type=int, default=0,
                    help="1 = everything (step and bare product) on one thread: far less sensitive to other "
                         "load on shared cores; 0 = as fit() runs (all cores for the big products)")
    args = ap.parse_args()
    if args.threads == 1:
        import mfvsdnn.models.softmax.kernels as softmax_kernels
        import mfvsdnn.models.softmax.threads as softmax_threads

        softmax_threads.BIG_PRODUCT = 1 << 62
        softmax_kernels.PAR_MIN = 1 << 62
    rng = np.random.default_rng(0)
    d = 32
    print(f"batch {args.batch}, dim {d}, hidden 64, 2 features, {args.users} users x {args.per_user} items; "
          f"{os.cpu_count()} cores; load average before {os.getloadavg()[0]:.1f} (other processes slow every figure)")
    header = (f"{'items':>8} {'negatives':>9} {'ms/step':>9} {'examples/s':>11} {'Q@V.T ms':>9} {'(out=)':>7} "
              f"{'step/QV':>8} {'(out=)':>7}  "
              + " ".join(f"{p:>9}" for p in PHASES))
    print(header)
    results = {}
    for n_items in [int(x) for x in args.items.split(",")]:
        X = _data(n_items, args.users, args.per_user, rng)
        codes = [rng.integers(0, 10, args.users), rng.integers(0, 5, args.users)]
        with blas_threads(None) if args.threads == 1 else contextlib.nullcontext():
            qv, qv_out = _time_product(args.batch, n_items, d, args.seconds, rng)
        for neg in ("all", 50):
            model = SoftmaxDNN(negatives=neg, dim=d, hidden=(64,), batch_size=args.batch)
            with blas_threads(None):  # as in fit(): one BLAS thread except the full softmax products
                sec, phases, _ = _time_steps(model, X, codes, args.batch, args.seconds, rng)
            results[(n_items, neg)] = sec
            share = " ".join(f"{phases.get(p, 0.0) / sec:>8.0%} " for p in PHASES)
            ratio = f"{sec / qv:>8.2f} {sec / qv_out:>7.2f}" if neg == "all" else f"{'':>16}"
            print(f"{n_items:>8} {neg!s:>9} {sec * 1e3:>9.2f} {args.batch / sec:>11,.0f} {qv * 1e3:>9.2f} "
                  f"{qv_out * 1e3:>7.2f} {ratio}  {share}")
    print()
    sizes = sorted({k[0] for k in results})
    for a, b in zip(sizes, sizes[1:], strict=False):
        print(f"{a} -> {b} items ({b / a:.0f}x): full step x{results[(b, 'all')] / results[(a, 'all')]:.1f}, "
              f"sampled-50 step x{results[(b, 50)] / results[(a, 50)]:.2f}")
    big = sizes[-1]
    print(f"sampled-50 vs full at {big} items: {results[(big, 'all')] / results[(big, 50)]:.1f}x faster "
          "(target >= 20x)")


if __name__ == "__main__":
    main()
