"""Full-ranking evaluation speed and memory: 100k users x 20k items at d = 64 (defaults).

Timings on the same random factors, in the same run, interleaved (A B C ... A B C ..., medians):

1. floors : the matrix products alone, ``S = U Vᵀ`` for every user, two ways:
            blocks - one thread per core (``numba.get_num_threads()`` workers), each a one-thread BLAS
                     product of ``topk.block_rows`` users into its own preallocated buffer: the honest
                     floor of the fused design (it computes exactly these products);
            chunk  - the all-threads ``U_chunk @ Vᵀ`` into one preallocated 64 MiB buffer (the products
                     of the unfused design before);
2. ours   : ``topk.top_k`` (products fused with exclusion of training items + top-max(k)) followed by
            every metric at k = 10, 20, 50 (``evaluator.metric_arrays``); ratio to each floor, goal <= 1.3x;
3. where the time goes: top-k without exclusion, the exclusion (with - without), the metrics alone;
4. unfused: the previous path (all-threads chunk products, then the parallel selection kernel);
5. implicit: ``implicit.evaluation.ranking_metrics_at_k`` (K = 50) on an implicit ALS model holding
            the same factors (peer ratio);
6. sgemm peak: the best of 2048^3 float32 products (all threads; one per round, at least three),
            and the fraction of it the products and the whole evaluation reach (2 users items d flops).

Also checks that both evaluators agree (implicit's "precision" is hits / min(K, |test|), our recall@50)
and reports the peak memory of our evaluation (tracemalloc) against the dense users x items matrix it
never builds.

    .venv/bin/python benchmarks/bench_eval.py [--users 100000] [--items 20000] [--dim 64]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

# this checkout first, before anything imports mfvsdnn (the installed one may be another worktree)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mfvsdnn  # noqa: E402, F401  (before numpy: sets the thread-pool defaults, as the CLI does)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from mfvsdnn.core import topk  # noqa: E402
from mfvsdnn.evaluation import evaluator  # noqa: E402
from mfvsdnn.evaluation import metrics as M  # noqa: E402

import bench_summary  # noqa: E402  (benchmarks/: the README performance-table row)


def random_interactions(rng: np.random.Generator, n_users: int, n_items: int, per_user: int) -> sp.csr_matrix:
    """csr (n_users, n_items) with about ``per_user`` distinct items per user, Zipf-ish popularity."""
    cols = (rng.zipf(1.2, n_users * per_user) - 1) % n_items
    rows = np.repeat(np.arange(n_users), per_user)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def sgemm_product(n: int = 2048):
    """A timed n^3 float32 product on all BLAS threads (warmed once); calling it returns its flop/s."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)  # warm: thread pool up, pages touched
    return lambda: 2.0 * n ** 3 / timed(lambda: np.matmul(a, b, out=c))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--train-per-user", type=int, default=20)
    ap.add_argument("--test-per-user", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every timing (medians)")
    ap.add_argument("--no-implicit", action="store_true")
    bench_summary.add_argument(ap)
    args = ap.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    n_users, n_items, d = args.users, args.items, args.dim
    U = (rng.standard_normal((n_users, d)) / np.sqrt(d)).astype(np.float32)
    V = (rng.standard_normal((n_items, d)) / np.sqrt(d)).astype(np.float32)
    train = random_interactions(rng, n_users, n_items, args.train_per_user)
    test = random_interactions(rng, n_users, n_items, args.test_per_user)
    test = (test - test.multiply(train)).tocsr()  # held-out items are not training items
    test.eliminate_zeros()
    test.sort_indices()
    ks = (10, 20, 50)
    K = max(ks)
    chunk = topk.auto_chunk_size(n_items)
    rows = topk.block_rows(n_items)
    workers = topk.worker_count()
    pct = M.popularity_percentiles(np.bincount(train.indices, minlength=n_items))
    groups = rng.integers(0, 4, n_items)
    ugroups = rng.integers(0, 4, n_users)
    tested = np.diff(test.indptr) > 0
    flops = 2.0 * n_users * n_items * d
    print(f"{n_users:,} users x {n_items:,} items, d = {d}; train nnz {train.nnz:,}, test nnz {test.nnz:,}; "
          f"{workers} workers x blocks of {rows} users ({rows * n_items * 4 / 2**20:.1f} MiB of scores each); "
          f"unfused chunk {chunk} users ({chunk * n_items * 4 / 2**20:.0f} MiB); cores {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    topk.warm_up()
    Vt = V.T  # (d, n_items) view: BLAS reads it in place, as top_k does

    def floor_blocks() -> None:
        n_blocks = -(-n_users // rows)
        next_block = itertools.count()

        def work(buf: np.ndarray) -> None:
            while (b := next(next_block)) < n_blocks:
                s, e = b * rows, min(n_users, (b + 1) * rows)
                np.matmul(U[s:e], Vt, out=buf[: e - s])

        with topk.one_blas_thread(), ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(work, buf) for buf in buffers]:
                f.result()

    def floor_chunk() -> None:
        for s in range(0, n_users, chunk):
            e = min(n_users, s + chunk)
            np.matmul(U[s:e], Vt, out=chunk_buf[: e - s])

    def ours() -> dict:
        tk = topk.top_k(U, V, train, K)
        per, scal = evaluator.metric_arrays(tk, test, ks, pct, groups, ugroups)
        out = {f"{metric}@{k}" if k is not None else metric: float(np.nanmean(v[tested]))
               for (metric, k), v in per.items()}
        nt = np.diff(test.indptr)[tested]
        # implicit's micro recall: sum of hits / sum of min(K, |targets|), i.e. truncated recall weighted
        hits = per["recall_truncated", K][tested] * np.minimum(K, nt)
        out["micro_recall"] = float(hits.sum() / np.minimum(K, nt).sum())
        out["ndcg_tested"] = out[f"ndcg@{K}"]
        return out

    tk_fixed = topk.top_k(U, V, train, K)  # for timing the metrics alone

    def unfused() -> None:
        ex_ptr, ex_ind = topk.exclusion_parts(train, n_users, n_items)
        out, out_s = topk.empty_top(n_users, K)
        for s in range(0, n_users, chunk):
            e = min(n_users, s + chunk)
            scores = chunk_buf[: e - s]
            np.matmul(U[s:e], Vt, out=scores)
            topk.select_rows(scores, ex_ptr[s:e + 1], ex_ind, K, out[s:e], out_s[s:e])

    # preallocated and touched (np.zeros would map pages lazily and bill the first timing for them)
    buffers = [np.ones((rows, n_items), np.float32) for _ in range(workers)]
    chunk_buf = np.ones((chunk, n_items), np.float32)
    res: dict = {}
    runs = {
        "floor_blocks": floor_blocks,
        "floor_chunk": floor_chunk,
        "ours": lambda: res.update(ours()),
        "topk_no_exclusion": lambda: topk.top_k(U, V, None, K),
        "topk": lambda: topk.top_k(U, V, train, K),
        "metrics": lambda: evaluator.metric_arrays(tk_fixed, test, ks, pct, groups, ugroups),
        "unfused": unfused,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    loads, peaks = [], []
    sgemm = sgemm_product()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
        peaks.append(sgemm())  # one per round, beside the others under the same load
        loads.append(os.getloadavg()[0])
    while len(peaks) < 3:
        peaks.append(sgemm())
    t = {name: float(np.median(v)) for name, v in times.items()}
    peak = max(peaks)
    fb, fc, to = t["floor_blocks"], t["floor_chunk"], t["ours"]
    print(f"sgemm peak (best of {len(peaks)} x 2048^3, all threads, one per round) {peak / 1e9:6.1f} GFLOP/s")
    print(f"floor: products in one-thread blocks per core  {fb:8.2f} s   ({flops / fb / peak:.0%} of the sgemm peak)")
    print(f"floor: all-threads U_chunk @ V.T               {fc:8.2f} s   ({flops / fc / peak:.0%} of the sgemm peak)")
    print(f"ours: fused top-k + all metrics                {to:8.2f} s   ({to / fb:.2f}x the block floor, "
          f"{to / fc:.2f}x the chunk floor; goal <= 1.3x; {flops / to / peak:.0%} of the sgemm peak)")
    print(f"  where the time goes: products {fb:.2f} s (block floor), + selection "
          f"{t['topk_no_exclusion'] - fb:+.2f} s (top-k without exclusion {t['topk_no_exclusion']:.2f} s), "
          f"+ exclusion {t['topk'] - t['topk_no_exclusion']:+.2f} s (top-k {t['topk']:.2f} s), "
          f"+ metrics {t['metrics']:.2f} s")
    print(f"unfused (chunk products, then the parallel kernel) {t['unfused']:6.2f} s   "
          f"(fused top-k / unfused = {t['topk'] / t['unfused']:.2f}; {t['unfused'] / fc:.2f}x the chunk floor)")
    print(f"load average during the rounds: {', '.join(f'{x:.2f}' for x in loads)}; every time a median of "
          f"{args.repeats} interleaved rounds")
    # memory of one more run of ours (tracemalloc sees numpy's allocations, in every thread)
    tracemalloc.start()
    ours()
    _, peak_mem = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dense = n_users * n_items * 4
    out_bytes = n_users * K * (8 + 4)
    print(f"ours peak memory              {peak_mem / 2**20:8.0f} MiB  ({workers} score blocks of "
          f"{rows * n_items * 4 / 2**20:.1f} MiB + top-k output {out_bytes / 2**20:.0f} MiB; the dense "
          f"users x items scores would be {dense / 2**30:.1f} GiB)")
    if not args.no_implicit:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.evaluation import ranking_metrics_at_k
        from threadpoolctl import threadpool_limits

        model = AlternatingLeastSquares(factors=d)
        model.user_factors = U
        model.item_factors = V
        # implicit parallelises itself and asks for a single-threaded BLAS: give it its best setting;
        # interleaved with ours again so that both see the same load
        t_imp, t_ours2, imp = [], [], None
        for _ in range(2):
            with threadpool_limits(1, "blas"):
                t0 = time.perf_counter()
                imp = ranking_metrics_at_k(model, train, test, K=K, show_progress=False, num_threads=0)
                t_imp.append(time.perf_counter() - t0)
            t_ours2.append(timed(ours))
        ti, to2 = float(np.median(t_imp)), float(np.median(t_ours2))
        print(f"implicit ranking_metrics_at_k {ti:8.2f} s   (ours {to2:.2f} s beside it: ours / implicit = "
              f"{to2 / ti:.2f}; target <= 1)")
        print(f"agreement at K={K}: implicit precision (= sum hits / sum min(K, |test|) over users with a test "
              f"item) {imp['precision']:.5f} vs ours {res['micro_recall']:.5f}; implicit ndcg {imp['ndcg']:.5f} vs "
              f"ours {res['ndcg_tested']:.5f}")
    print(f"ours computes at k = {ks}: recall, precision, NDCG, hit rate, popularity, leakage, coverage "
          f"(recall@20 = {res['recall@20']:.5f})")
    result = (f"{to / fb:.2f}x the one-thread-per-core block products ({flops / fb / peak:.0%} of the sgemm peak), "
              f"{to / fc:.2f}x the all-threads chunk products, {flops / to / peak:.0%} of the sgemm peak; fused top-k "
              f"{t['topk'] / t['unfused']:.2f}x the unfused path")
    if not args.no_implicit:
        result += f"; {to2 / ti:.2f}x implicit's `ranking_metrics_at_k`"
    result += f"; peak {peak_mem / 2**20:.0f} MiB"
    bench_summary.write(args.summary, [{
        "what": f"full-ranking evaluation, {n_users // 1000}k users x {n_items // 1000}k items, d = {d}, every metric "
                f"at k = {', '.join(map(str, ks))}",
        "result": result, "goal": "<= 1.3x the products; no slower than implicit",
        "met": to / fb <= 1.3 and (args.no_implicit or to2 <= ti)}], started)


if __name__ == "__main__":
    main()
