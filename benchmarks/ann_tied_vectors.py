"""HNSW on heavily tied item vectors: the popularity baselines, with identical vectors indexed once or not.

The most-popular baseline's item vector is one coordinate (the training count over the largest), so
thousands of items share a vector; group-popularity's adds one coordinate per group. Each model is
fitted on the sample, MovieLens 100K, Last.fm 2K and the restaurant log (the last three read only
when their files are present, else skipped), every warm user searches with their known items
excluded, as ``compare --index`` does, and the index's own recall@20 of exact (and the end-to-end
recall@20 of the held-out items, exact's beside it) is printed for two
graphs (the default: Moebius, M = 16, efConstruction = 400, 8-bit vectors; the old inner-product
graph, M = 32, efConstruction = 80), each built over the distinct vectors (the default) and over
every vector. WALS is the contrast: its vectors repeat only where items are all zero.

    .venv/bin/python benchmarks/ann_tied_vectors.py
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import bench_ann  # noqa: E402  (benchmarks/: the data sets)
from mfvsdnn.data import ColumnSpec, read_interactions  # noqa: E402
from mfvsdnn.data.split import SplitConfig, make_split  # noqa: E402
from mfvsdnn.evaluation import metrics  # noqa: E402
from mfvsdnn.evaluation.populations import populations  # noqa: E402
from mfvsdnn.experiment import runner  # noqa: E402
from mfvsdnn.experiment.spec import ModelSpec  # noqa: E402
from mfvsdnn.models.distinct import distinct_rows  # noqa: E402
from mfvsdnn.models.index import ExactIndex, HNSWIndex, overlap_recall, require_faiss  # noqa: E402

# bench_ann's data sets, the sample and the restaurant log with their groups (group-popularity needs them)
SOURCES = {**bench_ann.SOURCES,
           "sample": (bench_ann.SOURCES["sample"][0],
                      ColumnSpec(user_group_col="user_group", item_group_col="item_group")),
           "restaurants": ("/work/data/restaurants.csv", ColumnSpec(weight_col="rating", min_weight=1,
                                                                    user_group_col="user_group",
                                                                    item_group_col="item_group"))}
MODELS = ("popularity", "group-popularity", "wals")
GRAPHS = (("mobius", 16, 400, "sq8"), ("inner-product", 32, 80, "flat"))
K = 20


def main() -> None:
    faiss = require_faiss()
    warnings.simplefilter("ignore", UserWarning)  # zero-norm items: counted in the output instead
    for source, (path, columns) in SOURCES.items():
        if not os.path.exists(path):
            print(f"{source}: {path} not found, skipped")
            continue
        split = make_split(read_interactions(path, columns), SplitConfig(seed=0))
        warm = next(p for p in populations(split) if p.name == "warm")
        exclude = sp.csr_matrix(warm.exclude)
        def recall(top: np.ndarray, targets=warm.targets) -> float:
            hits = metrics.hits_matrix(top, targets)
            return float(np.nanmean(metrics.recall_at_k(hits, metrics.n_targets(targets), K)))

        for kind in MODELS:
            model = runner.fit_model(ModelSpec(kind, {}), split, 0).model
            items = np.ascontiguousarray(model.item_vectors, dtype=np.float32)
            queries = np.ascontiguousarray(model.query_vectors(warm.histories, warm.features, users=warm.model_users,
                                                               groups=warm.query_groups), dtype=np.float32)
            exact = ExactIndex().build(items).search(queries, K, exclude)[0]
            groups = distinct_rows(items)
            cells = []
            for graph, m, efc, storage in GRAPHS:
                for grouped in (True, False):
                    index = HNSWIndex(m=m, ef_construction=efc, graph=graph, storage=storage,
                                      group_identical=grouped).build(items)
                    faiss.cvar.hnsw_stats.reset()
                    found = index.search(queries, K, exclude)[0]
                    cells.append(f"{graph} {m}/{efc} {'distinct' if grouped else 'every vector'}: "
                                 f"{overlap_recall(found, exact):.3f} of exact, end to end {recall(found):.4f} "
                                 f"({faiss.cvar.hnsw_stats.ndis / len(queries):.0f} distances)")
            print(f"{source} {kind} ({len(items):,} items, d = {items.shape[1]}, "
                  f"{len(items) if groups is None else groups.n_groups:,} distinct vectors, "
                  f"{int((~items.any(axis=1)).sum()):,} zero; {len(queries):,} queries), exact's recall@{K} "
                  f"{recall(exact):.4f}; at efSearch 128:\n    " + "\n    ".join(cells), flush=True)


if __name__ == "__main__":
    main()
