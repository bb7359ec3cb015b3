"""Loader speed and memory on a large CSV (default 5 million rows).

Each measurement runs in a fresh Python process that imports everything first, then loads the file:
the time of the load alone, and the growth of the process's peak resident memory (VmHWM, Linux)
during it. Peak RSS rather than tracemalloc, because Arrow allocates its buffers outside Python's
allocator. Compared
with a bare ``pandas.read_csv(path, dtype=str)`` of the same file, measured the same way in the same run.

    .venv/bin/python benchmarks/bench_load.py [--rows 5000000] [--users 200000] [--items 50000] [--repeat 3]
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

CHILD = r"""
import json, sys, time
import mfvsdnn
import pandas as pd
from mfvsdnn.data import read_interactions

def peak_kib():  # this process's own high-water mark (ru_maxrss would include the parent's, from fork)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

path, what = sys.argv[1], sys.argv[2]
before = peak_kib()
t0 = time.perf_counter()
if what == "bare":
    out = pd.read_csv(path, dtype=str)
    info = {"rows": len(out)}
else:
    ds = read_interactions(path)
    info = {"rows": ds.rows_read, "users": ds.n_users, "items": ds.n_items, "nnz": ds.nnz}
seconds = time.perf_counter() - t0
after = peak_kib()
print(json.dumps({"seconds": seconds, "peak_growth_kib": after - before, **info}))
"""


def measure(path: str, what: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, path, what], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest is reported")
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
        runs: dict[str, list[dict]] = {"bare": [], "ours": []}
        for _ in range(args.repeat):  # interleaved, so a change in the machine's load hits both
            for w in runs:
                runs[w].append(measure(path, w))
    best = {w: min(r, key=lambda x: x["seconds"]) for w, r in runs.items()}
    peak = {w: max(x["peak_growth_kib"] for x in r) / 1024 for w, r in runs.items()}
    ours, bare = best["ours"], best["bare"]
    parsed = (2 * 4 * args.rows) / 2**20
    print(f"file: {args.rows:,} rows, {size / 2**20:.0f} MiB; {ours['users']:,} users, {ours['items']:,} items, "
          f"{ours['nnz']:,} unique pairs")
    print(f"load time (best of {args.repeat}): ours {ours['seconds']:.2f} s, bare pandas.read_csv(dtype=str) "
          f"{bare['seconds']:.2f} s -> ratio {ours['seconds'] / bare['seconds']:.2f}x")
    ratio = peak["ours"] / peak["bare"] if peak["bare"] > 0 else float("nan")
    print(f"peak RSS growth: ours {peak['ours']:.0f} MiB, bare {peak['bare']:.0f} MiB -> ratio "
          f"{ratio:.2f}x; ours is {peak['ours'] / parsed:.1f}x the two int32 code arrays "
          f"({parsed:.0f} MiB)")


if __name__ == "__main__":
    main()
