"""Item-vector indexes for serving: exact brute force, HNSW and IVF, behind one interface.

Both model families score an item by the dot product of a query vector and the item's vector, so
every index ranks by inner product, never by plain L2 distance (whose ranking differs from the dot
product's unless every vector has the same norm): both are faiss ``METRIC_INNER_PRODUCT`` indexes.
(The exact reduction of inner-product to L2 search, one extra coordinate sqrt(max_norm^2 - |v|^2),
was measured and dropped: on vectors drawn like WALS factors it put every item on one sphere and
cut HNSW's recall@20 at 50k items from 0.95 to 0.59 at efSearch 128.) Every index returns the true
dot products of its candidates, recomputed from the item vectors, best first.

HNSW links its graph by default on the Moebius transform of the vectors, y = x / |x|^2, by L2
distance, and then searches that graph by inner product on the vectors themselves (Zhou, Tan and
Li, "Moebius transformation for fast inner product search on graph", NeurIPS 2019). A graph linked
by inner product sends most links to the few longest vectors and leaves the search few ways round
them; the transform maps the long vectors that inner-product search returns near the origin, where
the L2 graph links them densely to each other (measured: see the README's ANN section).

HNSW and IVF hold each distinct item vector once (``models/distinct.py``): a graph over piles of
identical points, such as the popularity baselines' tied counts, cannot be searched.

An index is built once from ``item_vectors`` (n_items, d) and searched with
``search(queries, k, exclude) -> (indices, scores)``: the ``core.topk.TopKBackend`` contract, so
``models.ranking.rank(..., backend=index.backend())`` and the evaluator use it unchanged. Known
items are excluded by searching ``k + the query's known items`` and filtering, so a query still gets
k eligible items whenever the index returns them (faiss's HNSW widens its beam to the items asked for).

HNSW and IVF need faiss-cpu, the optional extra ``mfvsdnn[ann]``; ``exact`` needs nothing (it is
``core.topk``). Stored with faiss's own writer (no pickle) beside a hash of the vectors it indexes
(see ``models/store.py``), so an index is never served for other vectors than its own.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import ModelError
from ..core.hugepages import advise_huge_pages
from ..core.topk import empty_top, excluded_pairs, top_k_with_scores
from .distinct import DistinctRows, distinct_rows, expand_best

INDEX_KINDS = ("exact", "hnsw", "ivf")
#: HNSW: neighbours per node (faiss's M) and the build-time beam (efConstruction)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 400
#: how the HNSW graph is linked: on the Moebius-transformed vectors by L2 distance, or by inner product
HNSW_GRAPHS = ("mobius", "inner-product")
#: how HNSW holds the vectors it searches: 8 bits per coordinate (faiss's scalar quantizer, per-dimension
#: range; a quarter of the bytes a search reads) or float32; candidates are rescored exactly either way
HNSW_STORAGES = ("sq8", "flat")
MAX_HNSW_M = 256
MAX_EF_CONSTRUCTION = 100_000
DEFAULT_EF_SEARCH = 128
#: IVF: lists = ~4 sqrt(n_items) (faiss's rule of thumb), probed lists by default
DEFAULT_NPROBE = 8
#: the speed/accuracy settings measured beside the default (a curve)
EF_SEARCH_CURVE = (32, 64, 128, 256)
NPROBE_CURVE = (1, 4, 8, 32)
ANN_EXTRA_MESSAGE = ("--index {kind} needs faiss-cpu, the optional extra mfvsdnn[ann]: "
                     "pip install 'mfvsdnn[ann]' (make install installs it)")


def require_faiss(kind: str = "hnsw") -> Any:
    """The faiss module, or a ModelError naming the extra that provides it."""
    try:
        import faiss
    except ImportError:
        raise ModelError(ANN_EXTRA_MESSAGE.format(kind=kind)) from None
    return faiss


def vectors_hash(item_vectors: np.ndarray) -> str:
    """SHA-256 of the float32 item vectors with their shape: what a stored index was built from."""
    v = np.ascontiguousarray(item_vectors, dtype=np.float32)
    h = hashlib.sha256(repr(v.shape).encode())
    h.update(v.tobytes())
    return h.hexdigest()


def zero_norm_count(item_vectors: np.ndarray) -> int:
    return int(np.count_nonzero(~np.any(np.asarray(item_vectors) != 0, axis=1)))


def _warn_zero_norm(item_vectors: np.ndarray) -> None:
    zeros = zero_norm_count(item_vectors)
    if zeros:
        # a zero vector scores 0 for every query: an ANN graph links it arbitrarily, so its place in a
        # list may differ from exact search among ties; worth knowing, not an error
        warnings.warn(f"{zeros:,} of {len(item_vectors):,} item vectors are all zero (score 0 for every query)",
                      stacklevel=3)


def mobius_transform(item_vectors: np.ndarray) -> np.ndarray:
    """y_i = x_i / |x_i|^2, (n, d) -> (n, d) float32: long vectors land near the origin, short ones far.

    An all-zero row (or one too short for float32) has no image: it scores 0 for every query, so it is
    put beyond every other image, at twice the largest image norm in a fixed pseudo-random direction
    per row (distinct points, so the graph does not link a pile of duplicates).
    """
    x = np.asarray(item_vectors, dtype=np.float64)
    sq = np.einsum("nd,nd->n", x, x)
    y = x / np.where(sq > 0, sq, 1.0)[:, None]
    bad = ~(sq > 0) | ~np.all(np.isfinite(y), axis=1) | (np.abs(y).max(axis=1, initial=0.0) > 1e30)
    if bad.any():
        radius = 2.0 * float(np.sqrt(np.einsum("nd,nd->n", y[~bad], y[~bad]).max(initial=1.0)))
        directions = np.random.default_rng(0).standard_normal((int(bad.sum()), x.shape[1]))
        y[bad] = radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return np.ascontiguousarray(y, dtype=np.float32)


def _best_eligible(idx: np.ndarray, queries: np.ndarray, item_vectors: np.ndarray,
                   exclude: sp.csr_matrix | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row's candidates ``idx`` (q, w) by their true dot products, padding (-1) and
    excluded items dropped: ((q, k) int64 indices, (q, k) float32 scores), -1 / -inf where fewer remain.

    scores[r, j] = item_vectors[idx[r, j]] . queries[r]: (q, w, d) @ (q, d, 1) -> (q, w)
    """
    q, width = idx.shape
    valid = idx >= 0
    safe = np.where(valid, idx, 0)  # padding read as item 0, then dropped
    scores = np.matmul(item_vectors[safe], queries[:, :, None])[:, :, 0]
    drop = ~valid
    if exclude is not None and exclude.nnz:
        drop |= excluded_pairs(np.arange(q)[:, None], safe, exclude, item_vectors.shape[0])
    scores[drop] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    at = (np.arange(q)[:, None], order)  # plain fancy indexing: take_along_axis costs more per call
    out, out_s = empty_top(q, k)
    kept = ~drop[at]
    out[:, :order.shape[1]] = np.where(kept, idx[at], -1)
    out_s[:, :order.shape[1]] = np.where(kept, scores[at], -np.inf)
    return out, out_s


class ExactIndex:
    """Brute force: every item scored, the reference the ANN indexes are measured against.

    Searches with ``core.topk.top_k_with_scores`` itself (so the same lists), which reads the item
    vectors' transpose in place: no per-call copy of the (d, n_items) matrix, which at a million items
    would dominate a single query.
    """

    kind = "exact"
    param_name = ""

    def __init__(self) -> None:
        self.item_vectors: np.ndarray | None = None

    def build(self, item_vectors: np.ndarray) -> ExactIndex:
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        return self

    @property
    def n_items(self) -> int:
        return 0 if self.item_vectors is None else int(self.item_vectors.shape[0])

    def nbytes(self) -> int:
        """Bytes exact search holds: the item vectors."""
        return 0 if self.item_vectors is None else int(self.item_vectors.nbytes)

    def set_search(self, value: int | None) -> None:
        """Exact search has no speed/accuracy knob."""

    @property
    def search_param(self) -> int | None:
        return None

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        return top_k_with_scores(queries, self.item_vectors, exclude, k)

    def backend(self):
        """A ``TopKBackend`` searching this index (the item vectors passed in must be the indexed ones)."""
        def search(queries: np.ndarray, items: np.ndarray, exclude: sp.csr_matrix | None, k: int):
            return self.search(queries, k, exclude)
        return search


class FaissIndex(ExactIndex):
    """An inner-product faiss index (HNSW or IVF); subclasses say how it is made and tuned."""

    kind = "faiss"
    param_name = ""

    def __init__(self, search_param: int | None = None, group_identical: bool = True) -> None:
        super().__init__()
        require_faiss(self.kind)
        self.index: Any = None
        # False: every vector indexed as it is, duplicates too (the A/B of benchmarks/ann_tied_vectors.py)
        self.group_identical = bool(group_identical)
        # identical item vectors are indexed once (see models/distinct.py); None: every vector distinct
        self.distinct: DistinctRows | None = None
        self.indexed_vectors: np.ndarray | None = None
        self._search_param = search_param
        self.set_search(search_param)  # resolves the default before the index exists

    def _make(self, faiss: Any, item_vectors: np.ndarray) -> Any:
        raise NotImplementedError

    def build(self, item_vectors: np.ndarray) -> FaissIndex:
        faiss = require_faiss(self.kind)
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ModelError(f"an index needs a non-empty (items, dim) matrix, got shape {vectors.shape}")
        _warn_zero_norm(vectors)
        self.item_vectors = vectors
        self._group()
        self.index = self._make(faiss, self.indexed_vectors)
        self.set_search(self._search_param)
        self._advise_huge_pages()
        return self

    def _advise_huge_pages(self) -> int:
        """Huge pages for the arrays a search reads at random (``core.hugepages``); bytes advised."""
        return 0

    @classmethod
    def from_faiss(cls, index: Any, item_vectors: np.ndarray, search_param: int | None = None,
                   group_identical: bool = True) -> FaissIndex:
        """Wrap an index read back with ``faiss.read_index`` (checked by the caller against the vectors:
        ``index.ntotal`` must be ``n_indexed``, which an index built without grouping fails on tied vectors)."""
        self = cls(search_param, group_identical=group_identical)
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self._group()  # the same groups the index was built on
        self.index = index
        self.set_search(search_param)
        self._advise_huge_pages()
        return self

    def _group(self) -> None:
        """Find the identical item vectors; the faiss index holds ``indexed_vectors``."""
        self.distinct = distinct_rows(self.item_vectors) if self.group_identical else None
        # kept, not gathered per search: the gather of every group's row costs more than a query
        self.indexed_vectors = (self.item_vectors if self.distinct is None
                                else np.ascontiguousarray(self.item_vectors[self.distinct.first]))
        if self.distinct is not None:  # per entry, and one more for faiss's padding (-1)
            self._entry_item = np.r_[self.distinct.first, -1]
            self._entry_is_group = np.r_[self.distinct.sizes > 1, False]

    @property
    def n_indexed(self) -> int:
        return self.n_items if self.distinct is None else self.distinct.n_groups

    def nbytes(self) -> int:
        """Bytes of the serialized index (what ``faiss.write_index`` stores) and, when identical
        vectors share an entry, of the item groups (recomputed from the vectors when read back)."""
        faiss = require_faiss(self.kind)
        groups = 0 if self.distinct is None else self.distinct.nbytes
        return int(faiss.serialize_index(self.index).nbytes) + groups

    def _best(self, found: np.ndarray, queries: np.ndarray, exclude: sp.csr_matrix | None, k: int
              ) -> tuple[np.ndarray, np.ndarray]:
        if self.distinct is None:
            return _best_eligible(found, queries, self.item_vectors, exclude, k)
        # entry -1 (padding) reads the appended last element of both: item -1, not a group
        if not self._entry_is_group[found].any():
            # only single-item entries (a trained model's search, away from its pile of all-zero items):
            # the plain filter, which costs less than the expansion
            return _best_eligible(self._entry_item[found], queries, self.item_vectors, exclude, k)
        return expand_best(found, queries, self.indexed_vectors, self.distinct, exclude, k)

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        q = queries.shape[0]
        if q == 0 or k == 0:
            return empty_top(q, k)
        known = np.diff(exclude.indptr) if exclude is not None else np.zeros(q, dtype=np.int64)
        # each query fetches k + its own known items (rounded up to a power of two, so a batch makes few
        # faiss calls): a user with a long history must not widen every other user's search. (Entries
        # of identical vectors hold one item or more each, so as many entries hold at least as many items.)
        fetch = np.minimum(self.n_indexed, 1 << np.ceil(np.log2(k + known)).astype(np.int64))
        widths = fetch if q == 1 else np.unique(fetch)
        if len(widths) == 1:  # one call for the whole batch (a single query always): no regrouping
            idx = self.index.search(queries, int(widths[0]))[1].astype(np.int64)
            return self._best(idx, queries, exclude, k)
        out, out_s = empty_top(q, k)
        for width in widths:
            rows = np.flatnonzero(fetch == width)
            sub = queries[rows]
            idx = self.index.search(sub, int(width))[1].astype(np.int64)
            out[rows], out_s[rows] = self._best(idx, sub, None if exclude is None else exclude[rows], k)
        return out, out_s


class HNSWIndex(FaissIndex):
    """Hierarchical navigable small-world graph searched by inner product; tuned by efSearch.

    ``m`` neighbours per node (2m on the bottom layer), build beam ``ef_construction``; ``graph``:
    "mobius" links it on ``mobius_transform(vectors)`` by L2 distance, "inner-product" by inner product;
    ``storage``: "sq8" (faiss ``IndexHNSWSQ``, 8 bits per coordinate) or "flat" (``IndexHNSWFlat``).
    """

    kind = "hnsw"
    param_name = "ef_search"

    def __init__(self, search_param: int | None = None, m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION, graph: str = "mobius", storage: str = "sq8",
                 group_identical: bool = True) -> None:
        # the construction settings only matter to build(): an index read back keeps the graph it was built with
        if graph not in HNSW_GRAPHS:
            raise ModelError(f"HNSW graph must be one of {', '.join(HNSW_GRAPHS)}, got {graph!r}")
        if storage not in HNSW_STORAGES:
            raise ModelError(f"HNSW storage must be one of {', '.join(HNSW_STORAGES)}, got {storage!r}")
        self.graph, self.storage = graph, storage
        if not (isinstance(m, (int, np.integer)) and 2 <= m <= MAX_HNSW_M):
            raise ModelError(f"HNSW M must be an integer in [2, {MAX_HNSW_M}], got {m!r}")
        if not (isinstance(ef_construction, (int, np.integer)) and 1 <= ef_construction <= MAX_EF_CONSTRUCTION):
            raise ModelError(f"HNSW efConstruction must be an integer in [1, {MAX_EF_CONSTRUCTION:,}], "
                             f"got {ef_construction!r}")
        self.m, self.ef_construction = int(m), int(ef_construction)
        super().__init__(search_param, group_identical)

    def _make(self, faiss: Any, item_vectors: np.ndarray) -> Any:
        # the graph is linked on full-precision vectors (transformed or not), then moved into the index
        # that searches it by inner product over the stored vectors
        d = item_vectors.shape[1]
        mobius = self.graph == "mobius"
        linked = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_L2 if mobius else faiss.METRIC_INNER_PRODUCT)
        linked.hnsw.efConstruction = self.ef_construction
        linked.add(mobius_transform(item_vectors) if mobius else item_vectors)
        if not mobius and self.storage == "flat":
            return linked
        if self.storage == "sq8":
            index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, self.m, faiss.METRIC_INNER_PRODUCT)
            index.storage.train(item_vectors)  # each coordinate's range
        else:
            index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
        index.storage.add(item_vectors)
        index.hnsw = linked.hnsw  # a copy of the graph
        del linked
        if hasattr(index.hnsw, "is_similarity"):
            index.hnsw.is_similarity = True  # a Moebius graph's copy still says L2 (smaller is better)
        index.ntotal = index.storage.ntotal
        index.is_trained = True
        return index

    def _advise_huge_pages(self) -> int:
        # a search hops between nodes: their neighbour lists and vectors are read at random (measured at
        # 1M items: efSearch 256 took 0.59 ms with 4 KiB pages, 0.50 ms with huge pages)
        faiss = require_faiss(self.kind)
        codes = getattr(faiss.downcast_index(self.index.storage), "codes", None)  # the vectors, as bytes
        links = self.index.hnsw.neighbors  # int32 node ids
        advised = advise_huge_pages(int(links.data()), links.size() * 4)
        return advised + (advise_huge_pages(int(codes.data()), codes.size()) if codes is not None else 0)

    def set_search(self, value: int | None) -> None:
        self._search_param = int(value or DEFAULT_EF_SEARCH)
        if self.index is not None:
            self.index.hnsw.efSearch = self._search_param

    @property
    def search_param(self) -> int | None:
        return self._search_param


def ivf_lists(n_items: int) -> int:
    """Inverted lists for ``n_items``: ~4 sqrt(n), at most n / 39 so k-means has 39 points per centroid."""
    return int(max(1, min(4 * np.sqrt(n_items), n_items // 39)))


class IVFIndex(FaissIndex):
    """Inverted file over k-means cells (faiss ``IndexIVFFlat``, inner product); tuned by nprobe."""

    kind = "ivf"
    param_name = "nprobe"

    def _make(self, faiss: Any, item_vectors: np.ndarray) -> Any:
        lists = ivf_lists(item_vectors.shape[0])
        quantizer = faiss.IndexFlatIP(item_vectors.shape[1])
        index = faiss.IndexIVFFlat(quantizer, item_vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # faiss's k-means seeds itself; fixed so a rebuild gives the same cells
        index.train(item_vectors)
        index.add(item_vectors)
        return index

    def set_search(self, value: int | None) -> None:
        self._search_param = int(value or DEFAULT_NPROBE)
        if self.index is not None:
            self.index.nprobe = min(self._search_param, self.index.nlist)

    @property
    def search_param(self) -> int | None:
        return self._search_param


INDEXES: dict[str, type[ExactIndex]] = {"exact": ExactIndex, "hnsw": HNSWIndex, "ivf": IVFIndex}


def check_kind(kind: str) -> str:
    if kind not in INDEXES:
        raise ModelError(f"--index must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    if kind != "exact":
        require_faiss(kind)
    return kind


def make_index(kind: str, search_param: int | None = None) -> ExactIndex:
    """An unbuilt index of ``kind`` ("exact", "hnsw", "ivf") with its search setting (None = default)."""
    check_kind(kind)
    return ExactIndex() if kind == "exact" else INDEXES[kind](search_param)


def build_index(kind: str, item_vectors: np.ndarray, search_param: int | None = None) -> ExactIndex:
    return make_index(kind, search_param).build(item_vectors)


def default_curve(kind: str) -> tuple[int, ...]:
    """The speed/accuracy settings measured for ``kind`` (efSearch for HNSW, nprobe for IVF)."""
    return {"hnsw": EF_SEARCH_CURVE, "ivf": NPROBE_CURVE}.get(kind, ())


def overlap_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """The index's own recall: share of the exact top-k (valid entries) that the index also returned."""
    total = hit = 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        total += len(e)
        hit += int(np.isin(e, a[a >= 0]).sum())
    return float(hit / total) if total else float("nan")
