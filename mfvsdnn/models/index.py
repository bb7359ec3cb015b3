"""Item-vector indexes for serving: exact brute force, HNSW and IVF, behind one interface.

Both model families score an item by the dot product of a query vector and the item's vector, so
every index ranks by inner product, never by plain L2 distance (whose ranking differs from the dot
product's unless every vector has the same norm): both are faiss ``METRIC_INNER_PRODUCT`` indexes.
(The exact reduction of inner-product to L2 search, one extra coordinate sqrt(max_norm^2 - |v|^2),
was measured and dropped: on vectors drawn like WALS factors it put every item on one sphere and
cut HNSW's recall@20 at 50k items from 0.95 to 0.59 at efSearch 128.) Every index returns the true
dot products of its candidates, recomputed from the item vectors, best first.

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
from ..core.topk import empty_top, exclusion_parts, top_k_with_scores

INDEX_KINDS = ("exact", "hnsw", "ivf")
#: HNSW: neighbours per node (faiss's M) and the build-time beam (efConstruction)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
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


def _filter(idx: np.ndarray, scores: np.ndarray, exclude: sp.csr_matrix | None, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The first k entries of each row that are valid (>= 0) and not excluded; -1 / -inf padding."""
    q = idx.shape[0]
    out, out_s = empty_top(q, k)
    ex_ptr, ex_ind = exclusion_parts(exclude, q, exclude.shape[1] if exclude is not None else 0)
    for r in range(q):
        row, row_s = idx[r], scores[r]
        keep = row >= 0
        if ex_ptr[r + 1] > ex_ptr[r]:
            keep &= ~np.isin(row, ex_ind[ex_ptr[r]:ex_ptr[r + 1]])
        row, row_s = row[keep][:k], row_s[keep][:k]
        out[r, :len(row)] = row
        out_s[r, :len(row)] = row_s
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

    def __init__(self, search_param: int | None = None) -> None:
        super().__init__()
        require_faiss(self.kind)
        self.index: Any = None
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
        self.index = self._make(faiss, vectors)
        self.set_search(self._search_param)
        return self

    @classmethod
    def from_faiss(cls, index: Any, item_vectors: np.ndarray, search_param: int | None = None) -> FaissIndex:
        """Wrap an index read back with ``faiss.read_index`` (checked by the caller against the vectors)."""
        self = cls(search_param)
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.index = index
        self.set_search(search_param)
        return self

    def nbytes(self) -> int:
        """Bytes of the serialized index (what ``faiss.write_index`` stores)."""
        faiss = require_faiss(self.kind)
        return int(faiss.serialize_index(self.index).nbytes)

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        q = queries.shape[0]
        if q == 0 or k == 0:
            return empty_top(q, k)
        known = np.diff(exclude.indptr) if exclude is not None else np.zeros(q, dtype=np.int64)
        # each query fetches k + its own known items (rounded up to a power of two, so a batch makes few
        # faiss calls): a user with a long history must not widen every other user's search
        fetch = np.minimum(self.n_items, 1 << np.ceil(np.log2(k + known)).astype(np.int64))
        out, out_s = empty_top(q, k)
        for width in np.unique(fetch):
            rows = np.flatnonzero(fetch == width)
            sub = queries[rows]
            idx = self.index.search(sub, int(width))[1].astype(np.int64)
            # the true dot products of the candidates (-inf for the -1 padding), best first
            scores = np.einsum("qkd,qd->qk", self.item_vectors[np.maximum(idx, 0)], sub).astype(np.float32)
            scores[idx < 0] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")
            idx, scores = np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)
            out[rows], out_s[rows] = _filter(idx, scores, None if exclude is None else exclude[rows], k)
        return out, out_s


class HNSWIndex(FaissIndex):
    """Hierarchical navigable small-world graph (faiss ``IndexHNSWFlat``, inner product); tuned by efSearch."""

    kind = "hnsw"
    param_name = "ef_search"

    def __init__(self, search_param: int | None = None, m: int = HNSW_M,
                 ef_construction: int = HNSW_EF_CONSTRUCTION) -> None:
        # the construction settings only matter to build(): an index read back keeps the graph it was built with
        if not (isinstance(m, (int, np.integer)) and 2 <= m <= MAX_HNSW_M):
            raise ModelError(f"HNSW M must be an integer in [2, {MAX_HNSW_M}], got {m!r}")
        if not (isinstance(ef_construction, (int, np.integer)) and 1 <= ef_construction <= MAX_EF_CONSTRUCTION):
            raise ModelError(f"HNSW efConstruction must be an integer in [1, {MAX_EF_CONSTRUCTION:,}], "
                             f"got {ef_construction!r}")
        self.m, self.ef_construction = int(m), int(ef_construction)
        super().__init__(search_param)

    def _make(self, faiss: Any, item_vectors: np.ndarray) -> Any:
        index = faiss.IndexHNSWFlat(item_vectors.shape[1], self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.add(item_vectors)
        return index

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
