"""Loader memory and speed on a large CSV (default 5 million rows).

Prints the loader's peak memory (tracemalloc: numpy/pandas allocations) as a multiple of the memory of
the parsed columns (two int32 code arrays + the unique id strings), and the time against a bare
``pandas.read_csv`` of the same file measured in the same run.

    .venv/bin/python benchmarks/bench_load.py [--rows 5000000] [--users 200000] [--items 50000]
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn.data import read_interactions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.csv")
        u = rng.integers(0, args.users, args.rows)
        i = np.minimum(rng.zipf(1.3, args.rows), args.items) - 1
        pd.DataFrame({"user_id": np.char.add("u", u.astype(str)), "item_id": np.char.add("i", i.astype(str))}) \
            .to_csv(path, index=False)
        del u, i
        size = os.path.getsize(path)
        tracemalloc.start()
        t0 = time.perf_counter()
        bare = pd.read_csv(path, dtype=str)
        t_bare = time.perf_counter() - t0
        _, peak_bare = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del bare

        tracemalloc.start()
        t0 = time.perf_counter()
        ds = read_interactions(path)
        t_ours = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        parsed = 2 * 4 * args.rows + sum(len(x) + 49 for x in ds.user_ids) + sum(len(x) + 49 for x in ds.item_ids)
        print(f"file: {args.rows:,} rows, {size / 2**20:.0f} MiB; {ds.n_users:,} users, {ds.n_items:,} items, "
              f"{ds.nnz:,} unique pairs")
        print(f"load time: ours {t_ours:.2f} s, bare pandas.read_csv(dtype=str) {t_bare:.2f} s "
              f"-> ratio {t_ours / t_bare:.2f}x")
        print(f"peak traced memory {peak / 2**20:.0f} MiB = {peak / parsed:.1f}x the parsed columns "
              f"({parsed / 2**20:.0f} MiB: two int32 code arrays + unique id strings)")
        print(f"bare pandas.read_csv(dtype=str) peak {peak_bare / 2**20:.0f} MiB -> ours/bare {peak / peak_bare:.2f}x")


if __name__ == "__main__":
    main()
