"""HNSW graphs on trained factors: recall@20 of exact and distance computations per query.

WALS (d = 64) is fitted on the sample, MovieLens 100K and Last.fm 2K (the last two read only when
their files are present, else skipped), and every warm user's query searches HNSW indexes of the live
item factors built three ways: the inner-product graph (M = 32, efConstruction = 80, float32
vectors), and the Moebius graph (M = 16, efConstruction = 400) with float32 and with 8-bit vectors
(the default). Distance computations are faiss's own count (``hnsw_stats.ndis``): what a search
costs, independent of the machine's load.

    .venv/bin/python benchmarks/ann_trained_factors.py
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads)

import numpy as np  # noqa: E402

import bench_ann  # noqa: E402  (benchmarks/: the data sets and the WALS fit)
from mfvsdnn.models.index import ExactIndex, HNSWIndex, overlap_recall, require_faiss  # noqa: E402

CONFIGS = [("inner-product", 32, 80, "flat"), ("mobius", 16, 400, "flat"), ("mobius", 16, 400, "sq8")]
EF_SEARCH = (32, 64, 128)


def main() -> None:
    faiss = require_faiss()
    warnings.simplefilter("ignore", UserWarning)  # zero-norm items: WALS's unseen items are dropped anyway
    for source in ("sample", "ml100k", "lastfm"):
        if not os.path.exists(bench_ann.SOURCES[source][0]):
            print(f"{source}: {bench_ann.SOURCES[source][0]} not found, skipped")
            continue
        items, queries = bench_ann.trained_factors(source, 64, 0)
        items = items.astype(np.float32)
        exact = ExactIndex().build(items).search(queries, 20)[0]
        for graph, m, efc, storage in CONFIGS:
            index = HNSWIndex(m=m, ef_construction=efc, graph=graph, storage=storage).build(items)
            cells = []
            for ef in EF_SEARCH:
                index.set_search(ef)
                faiss.cvar.hnsw_stats.reset()
                found = index.search(queries, 20)[0]
                cells.append(f"efSearch {ef}: {overlap_recall(found, exact):.4f} / "
                             f"{faiss.cvar.hnsw_stats.ndis / len(queries):.0f}")
            print(f"{source} ({len(items):,} items, {len(queries):,} queries), {graph} M={m} efC={efc} {storage}: "
                  "recall@20 / distances per query " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
