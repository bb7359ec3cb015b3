"""Approximate nearest-neighbour serving: HNSW against exact brute force on 1M items at d = 64.

The item vectors are drawn like a trained model's: WALS is fitted on the shipped sample at
``--dim`` factors and ``--items`` vectors are drawn from the Gaussian with its item factors' mean
and covariance (so the catalogue keeps the factors' scale, correlations and popular direction; tiling
the ~2k factors with small noise instead makes every top-20 a set of near-copies of one item, ties
that no index can order). The queries are the sample's warm users' WALS vectors.

Measured in the same run, on the same queries, one query at a time (what a request costs):

- exact: ``models.index.ExactIndex`` (score every item with one product against the item vectors
  transposed once, + the numba top-k; the same lists as ``core.topk.top_k``), p50/p99;
- HNSW (``models.index.HNSWIndex``, inner product via the exact L2 reduction): build seconds and
  bytes, then for each efSearch of ``--ef-search`` its recall@k against the exact top-k and p50/p99.

Prints the smallest efSearch reaching recall@20 >= 0.95 of exact and its latency ratio to exact
(target <= 1/20). Building the index on 1M x 64 takes a few minutes on 2 cores.

    .venv/bin/python benchmarks/bench_ann.py [--items 1000000] [--dim 64] [--queries 500]
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn.core.seeding import generator  # noqa: E402
from mfvsdnn.core.topk import warm_up  # noqa: E402
from mfvsdnn.data import ColumnSpec, read_interactions  # noqa: E402
from mfvsdnn.data.split import SplitConfig, make_split  # noqa: E402
from mfvsdnn.experiment import runner  # noqa: E402
from mfvsdnn.experiment.spec import ModelSpec  # noqa: E402
from mfvsdnn.models.index import ExactIndex, HNSWIndex, overlap_recall  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "data", "sample.csv")


def trained_factors(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(item factors, warm user factors) of WALS fitted on the shipped sample."""
    ds = read_interactions(SAMPLE, ColumnSpec())
    split = make_split(ds, SplitConfig(seed=seed))
    model = runner.fit_model(ModelSpec("wals", {"factors": dim}), split, seed).model
    users = split.warm_users
    queries = model.query_vectors(split.known()[users], None, users=users)
    return np.asarray(model.item_vectors, np.float32), np.asarray(queries, np.float32)


def draw_like(items: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows from the Gaussian with the trained item vectors' mean and covariance."""
    live = items[np.any(items != 0, axis=1)]  # items WALS never saw have zero factors
    mean = live.mean(axis=0)
    chol = np.linalg.cholesky(np.cov(live.T) + 1e-6 * np.eye(live.shape[1]))
    out = np.empty((n, items.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = mean + rng.standard_normal((stop - start, live.shape[1])) @ chol.T
    return out


def single_ms(search, queries: np.ndarray) -> np.ndarray:
    t = []
    for r in range(len(queries)):
        t0 = time.perf_counter()
        search(queries[r:r + 1])
        t.append(time.perf_counter() - t0)
    return np.asarray(t) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--ef-search", default="64,128,256,512")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    k = args.k
    rng = generator(args.seed, "bench", "ann")
    t = time.perf_counter()
    trained, users = trained_factors(args.dim, args.seed)
    items = draw_like(trained, args.items, rng)
    queries = users[np.sort(rng.choice(len(users), min(args.queries, len(users)), replace=False))]
    print(f"{args.items:,} items x {args.dim} (drawn like WALS's factors of the sample), "
          f"{len(queries):,} queries, k = {k}; data {time.perf_counter() - t:.1f} s")

    warm_up()
    exact_index = ExactIndex().build(items)
    exact = exact_index.search(queries, k)[0]
    exact_ms = single_ms(lambda q: exact_index.search(q, k), queries)
    exact_index = None  # frees its transposed copy of the vectors before the HNSW build
    print(f"exact brute force: p50 {np.median(exact_ms):.2f} ms, p99 {np.percentile(exact_ms, 99):.2f} ms "
          f"per single query")

    t = time.perf_counter()
    index = HNSWIndex().build(items)
    build = time.perf_counter() - t
    print(f"HNSW build (M=32, efConstruction=80): {build:.1f} s, index {index.nbytes() / 2**20:.0f} MiB "
          f"(vectors {items.nbytes / 2**20:.0f} MiB)")
    best = None
    for ef in (int(x) for x in args.ef_search.split(",")):
        index.set_search(ef)
        recall = overlap_recall(index.search(queries, k)[0], exact)
        ms = single_ms(lambda q: index.search(q, k), queries)
        ratio = np.median(ms) / np.median(exact_ms)
        print(f"  efSearch {ef:4d}: recall@{k} {recall:.4f} of exact, p50 {np.median(ms):.3f} ms, "
              f"p99 {np.percentile(ms, 99):.3f} ms, p50 = {ratio:.4f} x exact")
        if best is None and recall >= 0.95:
            best = (ef, recall, ratio)
    if best is None:
        print("no efSearch reached recall 0.95 of exact: FAIL")
        sys.exit(1)
    ef, recall, ratio = best
    ok = ratio <= 1 / 20
    print(f"smallest efSearch with recall@{k} >= 0.95: {ef} (recall {recall:.4f}) at {ratio:.4f} x exact "
          f"(1/{1 / ratio:.1f}) latency per single query: {'PASS' if ok else 'FAIL'} (target <= 1/20)")


if __name__ == "__main__":
    main()
