"""Full-ranking evaluation speed and memory: 100k users x 20k items at d = 64 (defaults).

Three timings on the same random factors, in the same run:

1. bare   : the matrix products alone, ``U_chunk @ Vᵀ`` for every user (the floor: any exact
            full-ranking evaluation has to compute them);
2. ours   : ``evaluate.top_k`` (products + exclusion of training items + top-max(k) with the numba
            kernel) followed by every metric at k = 10, 20, 50 (``evaluate.metric_arrays``);
3. implicit: ``implicit.evaluation.ranking_metrics_at_k`` (K = 50) on an implicit ALS model holding
            the same factors.

Prints the ratios ours / implicit (target <= 1) and ours / bare (target <= 2), checks that both
evaluators agree (implicit's "precision" is hits / min(K, |test|), our recall@50), and reports the
peak memory of our evaluation (tracemalloc) against the score chunk and against the dense
users x items float32 matrix it never builds.

    .venv/bin/python benchmarks/bench_eval.py [--users 100000] [--items 20000] [--dim 64]
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn.evaluation import evaluator  # noqa: E402
from mfvsdnn.core import topk  # noqa: E402
from mfvsdnn.evaluation import metrics as M  # noqa: E402


def random_interactions(rng: np.random.Generator, n_users: int, n_items: int, per_user: int) -> sp.csr_matrix:
    """csr (n_users, n_items) with about ``per_user`` distinct items per user, Zipf-ish popularity."""
    cols = (rng.zipf(1.2, n_users * per_user) - 1) % n_items
    rows = np.repeat(np.arange(n_users), per_user)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--train-per-user", type=int, default=20)
    ap.add_argument("--test-per-user", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs of each timing")
    ap.add_argument("--no-implicit", action="store_true")
    args = ap.parse_args()
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
    chunk = topk.auto_chunk_size(n_items)
    pct = M.popularity_percentiles(np.bincount(train.indices, minlength=n_items))
    groups = rng.integers(0, 4, n_items)
    ugroups = rng.integers(0, 4, n_users)
    print(f"{n_users:,} users x {n_items:,} items, d = {d}; train nnz {train.nnz:,}, test nnz {test.nnz:,}; "
          f"chunk {chunk} queries ({chunk * n_items * 4 / 2**20:.0f} MiB of scores); "
          f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}, cores {os.cpu_count()}")
    topk.warm_up()

    def bare() -> None:
        Vt = np.ascontiguousarray(V.T)
        buf = np.empty((chunk, n_items), np.float32)
        for s in range(0, n_users, chunk):
            e = min(n_users, s + chunk)
            np.matmul(U[s:e], Vt, out=buf[: e - s])

    K = max(ks)
    tested = np.diff(test.indptr) > 0

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

    def best(fn) -> tuple[float, object]:
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    t_bare, _ = best(bare)
    print(f"bare matrix products          {t_bare:8.2f} s")
    t_ours, res = best(ours)
    print(f"ours: top-k + all metrics     {t_ours:8.2f} s   ({t_ours / t_bare:.2f}x bare; target <= 2x)")
    # memory of one more run of ours (tracemalloc sees numpy's allocations)
    tracemalloc.start()
    ours()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dense = n_users * n_items * 4
    out_bytes = n_users * max(ks) * (8 + 4)
    print(f"ours peak memory              {peak / 2**20:8.0f} MiB  (score chunk {chunk * n_items * 4 / 2**20:.0f} MiB + "
          f"top-k output {out_bytes / 2**20:.0f} MiB; the dense users x items scores would be {dense / 2**30:.1f} GiB)")
    if not args.no_implicit:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.evaluation import ranking_metrics_at_k

        model = AlternatingLeastSquares(factors=d)
        model.user_factors = U
        model.item_factors = V
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself and asks for a single-threaded BLAS: give it its best setting
        with threadpool_limits(1, "blas"):
            t_imp, imp = best(lambda: ranking_metrics_at_k(model, train, test, K=max(ks), show_progress=False,
                                                           num_threads=0))
        print(f"implicit ranking_metrics_at_k {t_imp:8.2f} s   (ours / implicit = {t_ours / t_imp:.2f}; target <= 1)")
        print(f"agreement at K={K}: implicit precision (= sum hits / sum min(K, |test|) over users with a test "
              f"item) {imp['precision']:.5f} vs ours {res['micro_recall']:.5f}; implicit ndcg {imp['ndcg']:.5f} vs "
              f"ours {res['ndcg_tested']:.5f}")
    print(f"ours computes at k = {ks}: recall, precision, NDCG, hit rate, popularity, leakage, coverage "
          f"(recall@20 = {res['recall@20']:.5f})")


if __name__ == "__main__":
    main()
