"""Where a WALS CG half-iteration spends its time, on one thread (CPU time, best of three).

Runs ``kernels.solve_rows_cg`` directly on bench_wals.py's training matrix (``make_data``: grouped
synthetic interactions, default 100k users x 20k items, 80% of each user's interactions) for each half (users given items, items given users) with 0, 1 and
3 CG steps: the 0-step run is the gather of each block's rows into its L2 buffer, the residual pass
and X @ G; the difference between 3 and 1 steps, halved, is one CG step. Prints ns per interaction
and the sparse passes' GFLOP/s (4 d flops per interaction per step), beside scipy's R @ Y and the
dense X @ G on the same thread.

    .venv/bin/python benchmarks/profile_wals_cg.py [--users 100000] [--items 20000] [--factors 64]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install
os.environ["NUMBA_NUM_THREADS"] = "1"

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mfvsdnn.models.wals import kernels  # noqa: E402
from mfvsdnn.models.wals.model import _cg_blocks, _structure, gram  # noqa: E402

from bench_wals import add_data_arguments, best_seconds, make_data  # noqa: E402  (the benchmark's data and timing rule)


def best_cpu(fn) -> float:
    return best_seconds(fn, clock=time.process_time)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    args = ap.parse_args()
    R, _ = make_data(args.users, args.items, args.mean_interactions, seed=0)
    d = args.factors
    rng = np.random.default_rng(0)
    U = (rng.standard_normal((R.shape[0], d)) * 0.1).astype(np.float32)
    V = (rng.standard_normal((R.shape[1], d)) * 0.1).astype(np.float32)
    print(f"{R.shape[0]:,} users x {R.shape[1]:,} items, {R.nnz:,} interactions, d = {d}; one thread, CPU time; "
          f"load average {os.getloadavg()[0]:.1f}")
    with threadpool_limits(1, "blas"):
        for name, M, X, Y in (("users", R, U, V), ("items", R.T.tocsr(), V, U)):
            ptr, idx = _structure(M)
            bounds, parts = _cg_blocks(ptr, d, 1)
            G = (0.1 * gram(Y) + np.eye(d)).astype(np.float32)
            def run(steps, ptr=ptr, idx=idx, X=X, Y=Y, G=G, bounds=bounds, parts=parts):
                kernels.solve_rows_cg(ptr, idx, Y, X.copy(), G, 0.9, steps, bounds, parts)

            half = {steps: best_cpu(lambda steps=steps: run(steps)) for steps in (0, 1, 3)}
            step = (half[3] - half[1]) / 2
            spmm = best_cpu(lambda M=M, Y=Y: M @ Y)
            dense = best_cpu(lambda X=X, G=G: X @ G)
            print(f"{name} half ({M.shape[0]:,} rows): 0 / 1 / 3 CG steps {half[0] * 1e3:.0f} / {half[1] * 1e3:.0f} / "
                  f"{half[3] * 1e3:.0f} ms; one CG step {step * 1e3:.0f} ms = {step * 1e9 / M.nnz:.2f} ns per "
                  f"interaction ({4 * d * M.nnz / step / 1e9:.1f} GFLOP/s); scipy R @ Y {spmm * 1e3:.0f} ms; "
                  f"X @ G {dense * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
