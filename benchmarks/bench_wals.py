"""WALS fit speed, memory and recall against ``implicit``'s AlternatingLeastSquares (CG), same run.

Data: grouped synthetic interactions (default 100k users x 20k items, ~3M interactions), 20% of each
user's interactions held out at random (seeded) for recall@20. Both models: the same objective
(``implicit`` with ``alpha = 1/w0``, ``regularization = reg/w0``; its confidence is ``alpha * r`` and
its system ``Y^T Y + reg I + Y^T (C - I) Y``, i.e. ours divided by w0), conjugate gradient with the
same steps, the same iterations and threads; BLAS limited to 1 thread (threadpoolctl), as implicit
recommends. Both are warmed up on a tiny matrix first; numba's compile time (with an empty cache) is
reported separately. Peak memory: tracemalloc's peak of numpy/scipy allocations during a separate
2-iteration fit of each, and the highest RSS above the pre-fit baseline (sampled every 2 ms) in the timed fit.

Floors, measured in the same run with the same threads (BLAS given ``--threads`` threads for them):
the sgemm peak (best of three 2048^3 float32 products) and the bare products of one iteration's
arithmetic: per half-solve, ``cg_steps + 1`` dense products X (n, d) @ G (d, d) and twice as many
sparse products R @ Y (scipy, one thread, divided by the thread count: an ideal split), plus the two
Gram matrices. Useful flops per iteration: per half ``(cg_steps + 1) (2 n d^2 + 4 nnz d) + 2 n d^2``.
Every figure is printed as a ratio against its floor and, when ``implicit`` is installed, its peer;
without ``implicit`` its column is skipped and said so.

    .venv/bin/python benchmarks/bench_wals.py [--users 100000] [--items 20000] [--factors 64] [--threads 2]

Targets (issue 15): ours <= 0.35x implicit's time per iteration and >= 25% of the sgemm peak;
recall@20 within 0.01; peak memory <= 2x (matrix + factors).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="bench-wals-numba-"))  # measure real compile

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mfvsdnn.evaluation import metrics  # noqa: E402
from mfvsdnn.core.topk import top_k  # noqa: E402
from mfvsdnn.models.wals import WALS, objective  # noqa: E402
from mfvsdnn.data.split import TrainSet  # noqa: E402
from mfvsdnn.data.synthetic import SyntheticConfig, generate  # noqa: E402

import bench_summary  # noqa: E402  (benchmarks/: the README performance-table row)


class CpuClock:
    """Process CPU time (all threads) between successive ``tick`` calls, the first from creation."""

    def __init__(self) -> None:
        self.last, self.deltas = time.process_time(), []

    def tick(self) -> None:
        now = time.process_time()
        self.deltas.append(now - self.last)
        self.last = now


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; psutil is not needed)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest resident set size above the level at entry, sampled in a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak = interval, 0

    def __enter__(self) -> PeakRSS:
        self.base = rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


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


def iteration_flops(train: sp.csr_matrix, d: int, cg_steps: int) -> float:
    """Useful flops of one CG iteration (both halves): per half, cg_steps + 1 applications of A_i to a
    vector (2 d^2 for G.p, 4 d per entry for y.p and the axpy) over the non-empty rows, plus its Gram."""
    total = 0.0
    for m in (train, train.T.tocsr()):
        rows = int((np.diff(m.indptr) > 0).sum())
        total += (cg_steps + 1) * (2.0 * rows * d * d + 4.0 * m.nnz * d) + 2.0 * m.shape[0] * d * d
    return total


def best_seconds(fn, repeat: int = 3, clock=time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def floors(train: sp.csr_matrix, U: np.ndarray, V: np.ndarray, d: int, cg_steps: int, threads: int) -> dict:
    """sgemm peak (flop/s) and the bare products of one iteration, measured now (see the docstring)."""
    rng = np.random.default_rng(0)
    with threadpool_limits(threads, "blas"):
        A = rng.standard_normal((2048, 2048), dtype=np.float32)
        peak = 2.0 * 2048 ** 3 / best_seconds(lambda: A @ A)
    with threadpool_limits(1, "blas"):  # per CPU-second: what one busy core delivers, whatever the load
        peak_cpu = 2.0 * 2048 ** 3 / best_seconds(lambda: A @ A, clock=time.process_time)
    with threadpool_limits(threads, "blas"):
        G = np.eye(d, dtype=np.float32)
        dense = sum(best_seconds(lambda X=X: X @ G) for X in (U, V))
    RT = train.T.tocsr()
    sparse = (best_seconds(lambda: train @ V) + best_seconds(lambda: RT @ U)) / threads
    grams = best_seconds(lambda: (U.T @ U, V.T @ V))
    return {"peak": peak, "peak_cpu": peak_cpu, "dense": dense * (cg_steps + 1), "sparse": 2 * sparse * (cg_steps + 1),
            "gram": grams}


def add_data_arguments(ap: argparse.ArgumentParser) -> None:
    """The benchmark's data and model size (``profile_wals_cg.py`` takes the same, so it profiles this data)."""
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--mean-interactions", type=float, default=34.0)
    ap.add_argument("--factors", type=int, default=64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--w0", type=float, default=0.1)
    ap.add_argument("--reg", type=float, default=1.0)
    ap.add_argument("--cg-steps", type=int, default=3)
    ap.add_argument("--eval-users", type=int, default=20_000)
    bench_summary.add_argument(ap)
    args = ap.parse_args()
    started = time.perf_counter()

    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        AlternatingLeastSquares = None
        print("implicit is not installed: its column is skipped; figures are against the floors only")

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
    print(f"ours: WALS{params}")
    if AlternatingLeastSquares is not None:
        print(f"implicit: AlternatingLeastSquares({imp_kw}) with cg_steps={args.cg_steps}")
    load_start = os.getloadavg()[0]

    imp = None
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
        if AlternatingLeastSquares is not None:
            imp_model(AlternatingLeastSquares, {**imp_kw, "iterations": 1}, args.cg_steps).fit(tiny,
                                                                                              show_progress=False)
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
        if AlternatingLeastSquares is not None:
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
        if imp is not None:
            tm_imp = traced_peak(lambda: imp_model(AlternatingLeastSquares, {**imp_kw, "iterations": 2},
                                                   args.cg_steps).fit(train, show_progress=False))

    fl = floors(train, ours.user_factors_, ours.item_factors_, d, args.cg_steps, args.threads)
    f_ours = ours.history_[-1]["objective"]
    rng = np.random.default_rng(1)
    eligible = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    users = np.sort(rng.choice(eligible, min(args.eval_users, len(eligible)), replace=False))
    r_ours = recall20(ours.user_factors_, ours.item_factors_, train, test, users)
    size = (train.data.nbytes + train.indices.nbytes + train.indptr.nbytes) + (n_u + n_i) * d * 4
    if imp is not None:
        U_imp, V_imp = np.asarray(imp.user_factors), np.asarray(imp.item_factors)
        f_imp = objective(ptr, idx, U_imp, V_imp, w0, reg)
        r_imp = recall20(U_imp, V_imp, train, test, users)

    def col(ours_value: str, imp_value: str) -> str:
        return f"{ours_value:>12s}" + (f"{imp_value:>12s}" if imp is not None else "")

    per_ours = float(np.mean(ours_iter))
    mib = 2.0 ** 20
    print()
    print(f"{'':28s}" + col("ours", "implicit"))
    print(f"{'time per iteration (mean)':28s}" + col(f"{per_ours:.3f}s", f"{np.mean(imp_iter):.3f}s" if imp else ""))
    print(f"{'time per iteration (median)':28s}"
          + col(f"{np.median(ours_iter):.3f}s", f"{np.median(imp_iter):.3f}s" if imp else ""))
    print(f"{'CPU s per iteration (median)':28s}"
          + col(f"{np.median(ours_cpu_iter):.3f}s", f"{np.median(imp_cpu_iter):.3f}s" if imp else "")
          + "   (all threads; robust when other processes share the cores)")
    print(f"{'fit wall time':28s}" + col(f"{ours_wall:.2f}s", f"{imp_wall:.2f}s" if imp else "")
          + "   (ours includes the objective each iteration)")
    print(f"{'final objective (ours)':28s}" + col(f"{f_ours:.5g}", f"{f_imp:.5g}" if imp else ""))
    print(f"{f'recall@20 ({len(users):,} users)':28s}" + col(f"{r_ours:.4f}", f"{r_imp:.4f}" if imp else ""))
    print(f"{'peak traced allocations':28s}"
          + col(f"{tm_ours / mib:.1f}Mi", f"{tm_imp / mib:.1f}Mi" if imp else "") + "   (tracemalloc, during fit)")
    print(f"{'peak RSS above baseline':28s}"
          + col(f"{mem_ours.peak / mib:.1f}Mi", f"{mem_imp.peak / mib:.1f}Mi" if imp else "")
          + "   (RSS; freed pages from data generation are reused, so this can read low)")
    print(f"matrix + factors: {size / mib:.1f} MiB; peak traced / (matrix + factors): ours {tm_ours / size:.2f}x"
          + (f", implicit {tm_imp / size:.2f}x" if imp else ""))

    flops = iteration_flops(train, d, args.cg_steps)
    floor = fl["dense"] + fl["sparse"] + fl["gram"]
    cpu_iter = float(np.median(ours_cpu_iter))
    print(f"\nfloors, same run ({args.threads} threads): sgemm peak {fl['peak'] / 1e9:.1f} GFLOP/s wall, "
          f"{fl['peak_cpu'] / 1e9:.1f} GFLOP per CPU-second on one thread; bare products "
          f"of one iteration {floor:.3f} s (dense X@G {fl['dense']:.3f} s, sparse R@Y {fl['sparse']:.3f} s, "
          f"Gram {fl['gram']:.3f} s); useful work {flops / 1e9:.2f} GFLOP per iteration")
    print(f"RATIO ours / bare products, time per iteration (median wall): {np.median(ours_iter) / floor:.2f}")
    wall_frac = flops / float(np.median(ours_iter)) / fl["peak"]
    cpu_frac = flops / cpu_iter / fl["peak_cpu"]
    print(f"FRACTION of sgemm peak: {wall_frac:.1%} by wall time, {cpu_frac:.1%} by CPU time "
          f"(against the one-thread peak per CPU-second; target >= 25%: {'met' if max(wall_frac, cpu_frac) >= 0.25 else 'MISSED'})")
    if imp is not None:
        ratio = per_ours / float(np.mean(imp_iter))
        cpu_ratio = cpu_iter / float(np.median(imp_cpu_iter))
        print(f"RATIO ours/implicit time per iteration (mean wall): {ratio:.3f}  "
              f"(target <= 0.35: {'met' if ratio <= 0.35 else 'MISSED'})")
        print(f"RATIO ours/implicit CPU time per iteration (median): {cpu_ratio:.3f}")
        print(f"recall@20 difference ours - implicit: {r_ours - r_imp:+.4f}  (target |diff| <= 0.01: "
              f"{'met' if abs(r_ours - r_imp) <= 0.01 else 'MISSED'})")
    peak = max(tm_ours, mem_ours.peak)
    print(f"peak memory target (<= 2x matrix + factors): {peak / size:.2f}x {'met' if peak <= 2 * size else 'MISSED'}")
    print(f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} now, on {os.cpu_count()} cores")
    result = (f"{wall_frac:.1%} of the sgemm peak by wall time ({cpu_frac:.1%} by CPU time); "
              f"{np.median(ours_iter) / floor:.2f}x the bare products of an iteration")
    goal = ">= 25% of peak"
    met = max(wall_frac, cpu_frac) >= 0.25
    if imp is not None:
        result += (f"; {ratio:.2f}x implicit's time per iteration ({cpu_ratio:.2f}x its CPU time); "
                   f"recall@20 {r_ours:.4f} vs {r_imp:.4f}")
        goal += ", <= 0.35x implicit"
        met = met and ratio <= 0.35
    else:
        result += "; implicit not installed: not compared"
        met = False
    result += f"; peak memory {peak / size:.2f}x matrix + factors"
    goal += ", <= 2x memory"
    met = met and peak <= 2 * size
    bench_summary.write(args.summary, [{
        "what": f"WALS fit, {n_u // 1000}k users x {n_i // 1000}k items, {train.nnz / 1e6:.1f}M interactions, "
                f"d = {d}, {args.threads} threads",
        "result": result, "goal": goal, "met": met}], started)


if __name__ == "__main__":
    main()
