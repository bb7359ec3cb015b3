"""WALS fit speed, memory and recall against ``implicit``'s AlternatingLeastSquares (CG), same run.

Data: grouped synthetic interactions (default 100k users x 20k items, ~3M interactions), 20% of each
user's interactions held out at random (seeded) for recall@20. Both models: the same objective
(``implicit`` with ``alpha = 1/w0``, ``regularization = reg/w0``; its confidence is ``alpha * r`` and
its system ``Y^T Y + reg I + Y^T (C - I) Y``, i.e. ours divided by w0), conjugate gradient with the
same steps, the same iterations and threads; BLAS limited to 1 thread (threadpoolctl), as implicit
recommends. Both are warmed up on a tiny matrix first; numba's compile time (with an empty cache) is
reported separately. Peak memory: tracemalloc's peak of numpy/scipy allocations during a separate
2-iteration fit of each, and the highest RSS above the pre-fit baseline (sampled every 2 ms) in the timed fit.

    .venv/bin/python benchmarks/bench_wals.py [--users 100000] [--items 20000] [--factors 64] [--threads 2]

Targets (issue 3): ours <= 0.8x implicit's time per iteration; recall@20 within 0.01; peak memory
<= 2x (matrix + factors).
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys
import tempfile
import threading
import time
import tracemalloc

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="bench-wals-numba-"))  # measure real compile
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mfvsdnn.evaluation import metrics  # noqa: E402
from mfvsdnn.core.topk import top_k  # noqa: E402
from mfvsdnn.models.wals import WALS, objective  # noqa: E402
from mfvsdnn.data.split import TrainSet  # noqa: E402
from mfvsdnn.data.synthetic import SyntheticConfig, generate  # noqa: E402


class CpuClock:
    """Process CPU time (all threads) between successive ``tick`` calls, the first from creation."""

    def __init__(self) -> None:
        self.last, self.deltas = time.process_time(), []

    def tick(self) -> None:
        now = time.process_time()
        self.deltas.append(now - self.last)
        self.last = now


class PeakRSS:
    """Highest resident set size above the level at entry, sampled in a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.proc, self.interval, self.peak = psutil.Process(), interval, 0

    def __enter__(self) -> PeakRSS:
        self.base = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss - self.base)


def make_data(users: int, items: int, mean: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    df = generate(SyntheticConfig(users=users, items=items, mean_interactions=mean, seed=seed))
    u, _ = pd.factorize(df["user_id"])
    i, _ = pd.factorize(df["item_id"])
    n_u, n_i = int(u.max()) + 1, int(i.max()) + 1
    del df
    rng = np.random.default_rng(seed)
    test = rng.random(len(u)) < 0.2
    def mat(mask):  # noqa: E306
        return sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (u[mask], i[mask])), shape=(n_u, n_i))
    return mat(~test), mat(test)


def imp_model(cls, kw: dict, cg_steps: int):
    """implicit's ALS; cg_steps is an attribute there, not a constructor keyword."""
    m = cls(**kw)
    m.cg_steps = cg_steps
    return m


def recall20(U: np.ndarray, V: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix, users: np.ndarray) -> float:
    tk = top_k(np.ascontiguousarray(U[users], dtype=np.float32), np.ascontiguousarray(V, dtype=np.float32),
               train[users], 20)
    t = test[users]
    return float(metrics.recall_at_k(metrics.hits_matrix(tk, t), np.diff(t.indptr), 20).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--mean-interactions", type=float, default=34.0)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--w0", type=float, default=0.1)
    ap.add_argument("--reg", type=float, default=1.0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--eval-users", type=int, default=20_000)
    args = ap.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares

    t0 = time.perf_counter()
    train, test = make_data(args.users, args.items, args.mean_interactions, seed=0)
    n_u, n_i = train.shape
    print(f"data: {n_u:,} users x {n_i:,} items, {train.nnz:,} train + {test.nnz:,} test interactions "
          f"({time.perf_counter() - t0:.1f} s to generate)")
    d, w0, reg = args.factors, args.w0, args.reg
    params = {"factors": d, "w0": w0, "reg": reg, "iterations": args.iterations, "solver": "cg",
              "cg_steps": args.cg_steps, "num_threads": args.threads}
    imp_kw = {"factors": d, "regularization": reg / w0, "alpha": 1.0 / w0, "iterations": args.iterations,
              "use_cg": True, "num_threads": args.threads,
              "calculate_training_loss": False, "random_state": 0, "dtype": np.float32}
    print(f"ours: WALS{params}\nimplicit: AlternatingLeastSquares({imp_kw}) with cg_steps={args.cg_steps}")

    with threadpool_limits(1, "blas"):
        # warm-up (and numba compile with an empty cache, reported separately)
        tiny = sp.random(300, 100, density=0.05, format="csr", dtype=np.float32, random_state=1)
        tiny.data[:] = 1
        tiny_set = TrainSet(tiny, np.flatnonzero(np.diff(tiny.indptr)))
        t = time.perf_counter()
        WALS(**{**params, "iterations": 1}).fit(tiny_set, np.random.default_rng(0))
        WALS(**{**params, "iterations": 1, "solver": "cholesky"}).fit(tiny_set, np.random.default_rng(0))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        WALS(**{**params, "iterations": 1}).fit(tiny_set, np.random.default_rng(0))
        warm_tiny = time.perf_counter() - t
        imp_model(AlternatingLeastSquares, {**imp_kw, "iterations": 1}, args.cg_steps).fit(tiny, show_progress=False)
        print(f"numba compile (empty cache, CG + Cholesky kernels): {compile_s - warm_tiny:.2f} s")

        ts = TrainSet(train, np.flatnonzero(np.diff(train.indptr)))
        ours = WALS(**params)
        ours_cpu = CpuClock()
        with PeakRSS() as mem_ours:
            t = time.perf_counter()
            ours.fit(ts, np.random.default_rng(0), lambda done, total, m: ours_cpu.tick())
            ours_wall = time.perf_counter() - t
        ours_iter = np.array([h["seconds"] for h in ours.history_])
        # our progress ticks come after the objective: subtract its (separately measured) CPU time
        ptr, idx = train.indptr.astype(np.int64), train.indices
        t = time.process_time()
        for _ in range(3):
            objective(ptr, idx, ours.user_factors_, ours.item_factors_, w0, reg)
        obj_cpu = (time.process_time() - t) / 3
        ours_cpu_iter = np.array(ours_cpu.deltas) - obj_cpu

        imp_iter: list[float] = []
        imp_cpu = CpuClock()
        imp = imp_model(AlternatingLeastSquares, imp_kw, args.cg_steps)
        with PeakRSS() as mem_imp:
            t = time.perf_counter()
            imp.fit(train, show_progress=False,
                    callback=lambda it, secs, loss: (imp_iter.append(secs), imp_cpu.tick()))
            imp_wall = time.perf_counter() - t
        imp_cpu_iter = np.array(imp_cpu.deltas)

        # memory, in separate 2-iteration fits so tracing does not disturb the timings above:
        # tracemalloc peak (numpy/scipy allocations, both libraries' factor and transpose arrays)
        def traced_peak(fit) -> int:
            tracemalloc.start()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            fit()
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            return peak

        tm_ours = traced_peak(lambda: WALS(**{**params, "iterations": 2}).fit(ts, np.random.default_rng(0)))
        tm_imp = traced_peak(lambda: imp_model(AlternatingLeastSquares, {**imp_kw, "iterations": 2},
                                               args.cg_steps).fit(train, show_progress=False))

    U_imp, V_imp = np.asarray(imp.user_factors), np.asarray(imp.item_factors)
    f_ours = ours.history_[-1]["objective"]
    f_imp = objective(ptr, idx, U_imp, V_imp, w0, reg)
    rng = np.random.default_rng(1)
    eligible = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    users = np.sort(rng.choice(eligible, min(args.eval_users, len(eligible)), replace=False))
    r_ours = recall20(ours.user_factors_, ours.item_factors_, train, test, users)
    r_imp = recall20(U_imp, V_imp, train, test, users)
    size = (train.data.nbytes + train.indices.nbytes + train.indptr.nbytes) + (n_u + n_i) * d * 4

    per_ours, per_imp = float(np.mean(ours_iter)), float(np.mean(imp_iter))
    mib = 2.0 ** 20
    print()
    print(f"{'':28s}{'ours':>12s}{'implicit':>12s}")
    print(f"{'time per iteration (mean)':28s}{per_ours:11.3f}s{per_imp:11.3f}s")
    print(f"{'time per iteration (median)':28s}{np.median(ours_iter):11.3f}s{np.median(imp_iter):11.3f}s")
    print(f"{'CPU s per iteration (median)':28s}{np.median(ours_cpu_iter):11.3f}s{np.median(imp_cpu_iter):11.3f}s"
          "   (all threads; robust when other processes share the cores)")
    print(f"{'fit wall time':28s}{ours_wall:11.2f}s{imp_wall:11.2f}s   (ours includes the objective each iteration)")
    print(f"{'final objective (ours)':28s}{f_ours:12.5g}{f_imp:12.5g}")
    print(f"{f'recall@20 ({len(users):,} users)':28s}{r_ours:12.4f}{r_imp:12.4f}")
    print(f"{'peak traced allocations':28s}{tm_ours / mib:10.1f}Mi{tm_imp / mib:10.1f}Mi   (tracemalloc, during fit)")
    print(f"{'peak RSS above baseline':28s}{mem_ours.peak / mib:10.1f}Mi{mem_imp.peak / mib:10.1f}Mi"
          "   (RSS; freed pages from data generation are reused, so this can read low)")
    print(f"matrix + factors: {size / mib:.1f} MiB; peak traced / (matrix + factors): ours {tm_ours / size:.2f}x, "
          f"implicit {tm_imp / size:.2f}x")
    ratio = per_ours / per_imp
    cpu_ratio = float(np.median(ours_cpu_iter) / np.median(imp_cpu_iter))
    print(f"\nRATIO ours/implicit time per iteration (mean wall): {ratio:.3f}  "
          f"(target <= 0.8: {'met' if ratio <= 0.8 else 'MISSED'})")
    print(f"RATIO ours/implicit CPU time per iteration (median): {cpu_ratio:.3f}  "
          f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"recall@20 difference ours - implicit: {r_ours - r_imp:+.4f}  (target |diff| <= 0.01: "
          f"{'met' if abs(r_ours - r_imp) <= 0.01 else 'MISSED'})")
    peak = max(tm_ours, mem_ours.peak)
    print(f"peak memory target (<= 2x matrix + factors): {peak / size:.2f}x {'met' if peak <= 2 * size else 'MISSED'}")


if __name__ == "__main__":
    main()
