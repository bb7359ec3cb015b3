"""WALS: weighted alternating least squares for binary implicit feedback, with an unobserved weight w0.

Objective (observed set Omega, every stored entry of the training matrix is a positive):

    f(U, V) = sum_{(i,j) in Omega} (1 - u_i.v_j)^2 + w0 * sum_{(i,j) not in Omega} (u_i.v_j)^2
              + reg * (||U||^2 + ||V||^2)

Each iteration solves every item row against fixed U, then every user row against fixed V:

    (w0 V^T V + (1 - w0) sum_{j in Omega_i} v_j v_j^T + reg I) u_i = sum_{j in Omega_i} v_j

by ``cg_steps`` conjugate-gradient steps warm-started from the previous iterate (``solver="cg"``) or
exactly by Cholesky (``solver="cholesky"``); see :mod:`mfvsdnn.models.wals.kernels`. Items are solved
first, so the final user factors are the row solves against the final item factors: folding a
training user's history in again reproduces its trained vector (exactly with Cholesky).

The objective is reported after every iteration through the Gram identity
``sum_all (u.v)^2 = <U^T U, V^T V>``, so only the nnz observed dot products are needed.

Cold queries (see :meth:`WALS.query_vectors`): with history, fold-in by the exact Cholesky row solve
against the fixed item factors, with ``fold_in_prior`` > 0 pulled towards the query's feature mean
(MAP fold-in, :mod:`.foldin`); with features only, the mean trained vector of the training users
sharing the largest subset of the query's known features that has at least ``min_support`` such
users (ties: more supporting users, then the subset first in column order); with nothing, the mean
over all training users.

Equivalences (binary data): ``implicit``'s AlternatingLeastSquares with ``alpha = 1/w0`` and
``regularization = reg/w0`` (its confidence is ``alpha * r``), and Spark ALS (``implicitPrefs``)
with ``alpha = 1/w0 - 1``, ``regParam = reg/w0`` (Spark additionally scales regParam per row).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from ...core.errors import ModelError
from ...data.split import Split, TrainSet
from ..base import Capabilities, ProgressFn, RecommenderMixin, no_progress
from ..memory import validation_bytes
from ..params import (
    MAX_CG_STEPS,
    MAX_DIM,
    MAX_FOLD_IN_PRIOR,
    MAX_INIT_SCALE,
    MAX_ITERATIONS,
    MAX_REG,
    MAX_THREADS,
    as_choice,
    as_float,
    as_int,
)
from . import foldin, kernels

SOLVERS = ("cg", "cholesky")
MAX_SUBSET_FEATURES = 10  # beyond this many features, back off by dropping features from the last


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[int]:
    """Run numba parallel kernels with ``n`` threads (0 = all available); restores the old setting."""
    avail = numba.config.NUMBA_NUM_THREADS
    want = avail if n <= 0 else min(int(n), avail)
    old = numba.get_num_threads()
    numba.set_num_threads(want)
    try:
        yield want
    finally:
        numba.set_num_threads(old)


def _structure(m: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) of a CSR matrix's positives (explicit zeros dropped)."""
    m = sp.csr_matrix(m)
    if m.nnz and not np.all(m.data != 0):
        m = m.copy()
        m.eliminate_zeros()
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return m.indptr.astype(np.int64, copy=False), m.indices.astype(np.int32, copy=False)


# Y^T Y accumulated in float64 over row blocks (no full float64 copy of Y):  (m, d) -> (d, d)
def gram(Y: np.ndarray, block: int = 16384) -> np.ndarray:
    out = np.zeros((Y.shape[1], Y.shape[1]))
    for start in range(0, Y.shape[0], block):
        Yb = Y[start:start + block].astype(np.float64)
        out += Yb.T @ Yb
    return out


# G = w0 * Y^T Y + reg * I     Y (m, d) float32  ->  (d, d) float64
def gram_term(Y: np.ndarray, w0: float, reg: float) -> np.ndarray:
    return w0 * gram(Y) + reg * np.eye(Y.shape[1])


# f = sum_Omega [(1 - s)^2 - w0 s^2] + w0 <U^T U, V^T V> + reg (tr U^T U + tr V^T V),  s = u_i . v_j
# gram_U = U^T U and gram_V = V^T V (d, d) float64 may be passed when known (training has them).
def objective(indptr: np.ndarray, indices: np.ndarray, U: np.ndarray, V: np.ndarray, w0: float,
              reg: float, gram_U: np.ndarray | None = None, gram_V: np.ndarray | None = None) -> float:
    gram_U = gram(U) if gram_U is None else gram_U
    gram_V = gram(V) if gram_V is None else gram_V
    return (float(kernels.observed_loss(indptr, indices, U, V, float(w0))) + w0 * float(np.sum(gram_U * gram_V))
            + reg * float(np.trace(gram_U) + np.trace(gram_V)))


def _cg_blocks(indptr: np.ndarray, d: int, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """The CG kernel's row blocks (fixed by the data) and their split over ``n_threads`` threads."""
    bounds = kernels.row_blocks(indptr, d)
    return bounds, kernels.block_parts(indptr, bounds, d, n_threads)


_BLAS: ThreadpoolController | None = None


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS on one thread: the CG kernel calls it from every numba thread on small blocks, where
    BLAS's own threads would only contend with numba's for the same cores."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


class WALS(RecommenderMixin):
    """Weighted ALS matrix factorization (binary implicit feedback, unobserved weight ``w0``).

    Parameters
    ----------
    factors : embedding dimension d (default 32).
    w0 : weight of every unobserved (user, item) pair, in [0, 1) (default 0.1; 0 shows folding).
    reg : L2 weight on U and V (default 1.0; ``implicit``'s regularization 10 at w0 = 0.1).
    iterations : alternating iterations (default 15).
    solver : "cg" (conjugate gradient, warm-started; default) or "cholesky" (exact).
    cg_steps : CG steps per row per half-iteration (default 3).
    num_threads : threads for the numba kernels, 0 = all (default 0). Results do not depend on it.
    min_support : fewest training users a feature subset needs in the cold-start heuristic (default 5).
    init_scale : standard deviation of the random normal initial factors (default 0.01).
    fold_in_prior : lam of the MAP fold-in of cold queries with history, in [0, 1e12] (default 0 =
        the plain fold-in; see :meth:`fold_in_map`). Not used by training.

    Every value is checked here (ranges in :mod:`.base`: factors <= MAX_DIM, reg finite in (0,
    MAX_REG], ...); a bad one is a ModelError naming the CLI option.
    """

    kind: ClassVar[str] = "wals"
    family: ClassVar[str] = "mf"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=True,
                                                        uses_features=True, embeds_cold_users=True)

    def __init__(self, factors: int = 32, w0: float = 0.1, reg: float = 1.0, iterations: int = 15,
                 solver: str = "cg", cg_steps: int = 3, num_threads: int = 0, min_support: int = 5,
                 init_scale: float = 0.01, fold_in_prior: float = 0.0) -> None:
        factors = as_int("--factors", factors, 1, MAX_DIM)
        w0 = as_float("--w0", w0, 0.0, 1.0, hi_open=True)
        reg = as_float("--reg", reg, 0.0, MAX_REG, lo_open=True)  # > 0 keeps every row solve well posed
        iterations = as_int("--iterations", iterations, 1, MAX_ITERATIONS)
        solver = as_choice("--solver", solver, SOLVERS)
        cg_steps = as_int("--cg-steps", cg_steps, 1, MAX_CG_STEPS)
        num_threads = as_int("--threads", num_threads, 0, MAX_THREADS)  # 0 = all cores
        min_support = as_int("--min-support", min_support, 1)
        init_scale = as_float("init_scale", init_scale, 0.0, MAX_INIT_SCALE, lo_open=True)
        fold_in_prior = as_float("fold_in_prior", fold_in_prior, 0.0, MAX_FOLD_IN_PRIOR)
        self.factors, self.w0, self.reg, self.iterations = factors, w0, reg, iterations
        self.solver, self.cg_steps, self.num_threads = solver, cg_steps, num_threads
        self.min_support, self.init_scale = min_support, init_scale
        self.fold_in_prior = fold_in_prior
        self.train_seconds_: float = 0.0
        self.history_: list[dict[str, float]] = []
        self._G_items: np.ndarray | None = None

    # ------------------------------------------------------------------ parameters and state

    def get_params(self) -> dict[str, Any]:
        return {"factors": self.factors, "w0": self.w0, "reg": self.reg, "iterations": self.iterations,
                "solver": self.solver, "cg_steps": self.cg_steps, "num_threads": self.num_threads,
                "min_support": self.min_support, "init_scale": self.init_scale,
                "fold_in_prior": self.fold_in_prior}

    def with_fold_in_prior(self, lam: float) -> WALS:
        """This model with another ``fold_in_prior``: a shallow copy sharing the fitted factors and
        feature codes (no refit, no copy of U or V), e.g. to compare plain and MAP fold-in from one fit."""
        lam = as_float("fold_in_prior", lam, 0.0, MAX_FOLD_IN_PRIOR)
        twin = copy.copy(self)
        twin.fold_in_prior = lam
        twin.history_ = list(self.history_)
        return twin

    memory_hint: ClassVar[str] = "lower --factors"

    def estimate_bytes(self, n_users: int, n_items: int, nnz: int, cardinalities: dict[str, int]) -> int:
        """Peak bytes ``fit`` allocates: the float32 factors (twice: the scaled random start is a
        copy), both CSR structures (users x items and its transpose), the d x d Gram terms and each
        thread's row-solve buffers (for CG at most ``kernels.BLOCK_BYTES`` of gathered rows), the stored feature codes, and the validation recall computed
        after training."""
        d = self.factors
        factors = 2 * 4 * (n_users + n_items) * d
        structure = 16 * nnz + 16 * (n_users + n_items + 2)
        # per thread: the Cholesky buffers, or the CG block's four (rows, d) arrays and its gather buffer
        per_thread = max(8 * (d * d + 3 * d), 16 * kernels.CHUNK * d + min(kernels.BLOCK_BYTES, 4 * d * nnz))
        grams = 6 * 8 * d * d + numba.config.NUMBA_NUM_THREADS * per_thread
        return (factors + structure + grams + 4 * n_users * len(cardinalities)
                + validation_bytes(n_users, n_items, d))

    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays: user_factors (n_users, d), item_factors (n_items, d), warm_users (n_users,)
        bool, and the training users' feature codes (n_users, F) with names and cardinalities."""
        return {
            "user_factors": self.user_factors_, "item_factors": self.item_factors_,
            "warm_users": self.warm_users_,
            "feature_names": np.asarray(self.feature_names_, dtype=str).reshape(-1),
            "feature_codes": self.feature_codes_, "feature_cardinalities": self.feature_cardinalities_,
        }

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> WALS:
        """Rebuild a fitted model from ``state()`` arrays, checking every shape and code first.

        ``info`` may carry the run's ``n_users``, ``n_items`` and ``feature_cardinalities``
        (name -> number of labels), which the arrays must match.
        """
        model = cls(**params)
        need = ("user_factors", "item_factors", "warm_users", "feature_names", "feature_codes",
                "feature_cardinalities")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ModelError(f"WALS state lacks the arrays {missing}; the model file is foreign or truncated")
        extra = sorted(set(arrays) - set(need))
        if extra:
            raise ModelError(f"WALS state holds unexpected arrays {extra}; the model file is foreign")
        U, V, warm = arrays["user_factors"], arrays["item_factors"], arrays["warm_users"]
        names_a, codes, cards = arrays["feature_names"], arrays["feature_codes"], arrays["feature_cardinalities"]
        d = model.factors
        if U.dtype.kind != "f" or V.dtype.kind != "f" or U.ndim != 2 or V.ndim != 2 \
                or U.shape[1] != d or V.shape[1] != d:
            raise ModelError(f"WALS factors have shapes {U.shape} and {V.shape} ({U.dtype}), which do not match "
                             f"factors={d}")
        n_users = info.get("n_users", U.shape[0])
        n_items = info.get("n_items", V.shape[0])
        if U.shape[0] != n_users or V.shape[0] != n_items:
            raise ModelError(f"WALS factors cover {U.shape[0]:,} users and {V.shape[0]:,} items, the run "
                             f"{n_users:,} and {n_items:,}")
        if warm.dtype.kind not in "bui" or warm.shape != (n_users,):
            raise ModelError(f"WALS warm_users must be {n_users:,} flags, got shape {warm.shape}")
        if names_a.dtype.kind != "U" or names_a.ndim != 1:
            raise ModelError("WALS feature_names must be a list of strings")
        names = [str(x) for x in names_a]
        if codes.dtype.kind not in "iu" or codes.shape != (n_users, len(names)) \
                or cards.dtype.kind not in "iu" or cards.shape != (len(names),) or (cards < 1).any():
            raise ModelError(f"WALS feature codes {codes.shape} / cardinalities {cards.shape} do not match "
                             f"{n_users:,} users and the features {names}")
        if codes.size and ((codes < -1) | (codes >= cards[None, :])).any():
            raise ModelError("WALS feature codes lie outside their features' label counts")
        expected = info.get("feature_cardinalities")
        if expected is not None and {n: int(c) for n, c in zip(names, cards, strict=True)} != dict(expected):
            raise ModelError(f"WALS features {dict(zip(names, cards.tolist(), strict=True))} (name: labels) do "
                             f"not match the run's feature labels {dict(expected)}")
        model._set_state(U, V, warm.astype(bool), names, codes, cards)
        model.train_seconds_ = float(info.get("train_seconds", 0.0))
        model.history_ = list(info.get("history", []))
        return model

    @classmethod
    def from_factors(cls, params: dict[str, Any], user_factors: np.ndarray, item_factors: np.ndarray,
                     train: TrainSet, info: dict[str, Any] | None = None) -> WALS:
        """A fitted model from factors learned elsewhere (e.g. Spark), sharing ``fit``'s last step.

        Parameters
        ----------
        params : WALS hyper-parameters (recorded with the run; ``factors`` must match d).
        user_factors : (n_users, d) indexed like ``train.matrix`` rows (rows of cold users: zeros).
        item_factors : (n_items, d).
        info : optional ``train_seconds`` and ``history`` (list of per-iteration dicts).
        """
        model = cls(**params)
        info = info or {}
        model._finish(np.asarray(user_factors), np.asarray(item_factors), train,
                      list(info.get("history", [])), float(info.get("train_seconds", 0.0)))
        return model

    def _finish(self, U: np.ndarray, V: np.ndarray, train: TrainSet, history: list[dict[str, float]],
                train_seconds: float) -> None:
        """The end of fit: set the learned state from factors and the training set."""
        n_users = train.matrix.shape[0]
        warm = np.diff(train.matrix.indptr) > 0
        names = sorted(train.features)
        codes = np.stack([np.asarray(train.features[f], dtype=np.int32) for f in names], axis=1) if names \
            else np.zeros((n_users, 0), dtype=np.int32)
        cards = np.array([int(train.cardinalities.get(f, int(codes[:, k].max(initial=-1)) + 1))
                          for k, f in enumerate(names)], dtype=np.int64)
        self._set_state(U, V, warm, names, codes, cards)
        self.history_ = history
        self.train_seconds_ = train_seconds

    def _set_state(self, U: np.ndarray, V: np.ndarray, warm: np.ndarray, names: list[str],
                   codes: np.ndarray, cards: np.ndarray) -> None:
        d = self.factors
        if U.ndim != 2 or V.ndim != 2 or U.shape[1] != d or V.shape[1] != d:
            raise ModelError(f"factor shapes {U.shape} and {V.shape} do not match factors={d}")
        if warm.shape != (U.shape[0],) or codes.shape != (U.shape[0], len(names)) or cards.shape != (len(names),):
            raise ModelError("WALS state arrays have inconsistent shapes (users / features)")
        if not (np.isfinite(U).all() and np.isfinite(V).all()):
            raise ModelError("WALS factors contain NaN or infinity")
        self.user_factors_ = np.ascontiguousarray(U, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(V, dtype=np.float32)
        self.warm_users_ = np.asarray(warm, dtype=bool)
        self.feature_names_ = list(names)
        self.feature_codes_ = np.ascontiguousarray(codes, dtype=np.int32)
        self.feature_cardinalities_ = np.asarray(cards, dtype=np.int64)
        self._G_items = None

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32."""
        return self.item_factors_

    # ------------------------------------------------------------------ training

    def _half(self, indptr: np.ndarray, indices: np.ndarray, Y: np.ndarray, X: np.ndarray, gram_Y: np.ndarray,
              blocks: tuple[np.ndarray, np.ndarray]) -> None:
        """Solve every row of X (in place) against fixed Y, whose Gram matrix Y^T Y is ``gram_Y`` (d, d);
        ``blocks`` = (bounds, parts) of the CG kernel (unused by Cholesky)."""
        G = self.w0 * gram_Y + self.reg * np.eye(Y.shape[1])
        s = 1.0 - self.w0
        if self.solver == "cg":
            kernels.solve_rows_cg(indptr, indices, Y, X, np.ascontiguousarray(G, dtype=np.float32), s,
                                  self.cg_steps, *blocks)
        else:
            kernels.solve_rows_cholesky(indptr, indices, Y, G, s, X, kernels.CHUNK)

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress) -> WALS:
        """Alternate item and user row solves for ``iterations`` iterations.

        ``history_`` gets one dict per iteration: iteration (1-based), objective (after it), seconds
        (wall time of its two half-solves, objective excluded). ``progress`` sees the objective.
        """
        train, rng = self._fit_inputs(train, rng)
        t_start = time.perf_counter()
        R = sp.csr_matrix(train.matrix)
        n_users, n_items = R.shape
        if n_users == 0 or n_items == 0 or R.nnz == 0:
            raise ModelError("the training matrix has no interactions; nothing to learn")
        u_ptr, u_idx = _structure(R)
        i_ptr, i_idx = _structure(R.T.tocsr())
        d = self.factors
        U = rng.standard_normal((n_users, d), dtype=np.float32) * np.float32(self.init_scale)
        V = rng.standard_normal((n_items, d), dtype=np.float32) * np.float32(self.init_scale)
        history: list[dict[str, float]] = []
        # Each Gram matrix is computed once per iteration and serves twice: U^T U for the item half
        # of the next iteration and the objective, V^T V for the user half and the objective.
        gram_U = gram(U)
        with numba_threads(self.num_threads) as n_threads, _one_blas_thread():
            item_blocks = _cg_blocks(i_ptr, d, n_threads)
            user_blocks = _cg_blocks(u_ptr, d, n_threads)
            for it in range(1, self.iterations + 1):
                t0 = time.perf_counter()
                self._half(i_ptr, i_idx, U, V, gram_U, item_blocks)  # items given users
                gram_V = gram(V)
                self._half(u_ptr, u_idx, V, U, gram_V, user_blocks)  # users given items
                gram_U = gram(U)
                secs = time.perf_counter() - t0
                f = objective(u_ptr, u_idx, U, V, self.w0, self.reg, gram_U, gram_V)
                if not np.isfinite(f):
                    raise ModelError(f"training diverged at iteration {it} (objective is {f}); "
                                     "raise --reg or use --solver cholesky")
                history.append({"iteration": it, "objective": f, "seconds": secs})
                progress(it, self.iterations, {"objective": f})
        self._finish(U, V, train, history, time.perf_counter() - t_start)
        self.remember_training(train)
        return self

    # ------------------------------------------------------------------ queries

    def fold_in(self, histories: sp.csr_matrix) -> np.ndarray:
        """Exact row solves of the queries' histories against the fixed item factors.

        histories : csr (q, n_items).  Returns (q, d) float32 (zeros for empty rows).
        """
        if self._G_items is None:
            self._G_items = gram_term(self.item_factors_, self.w0, self.reg)
        ptr, idx = _structure(histories)
        out = np.zeros((histories.shape[0], self.factors), dtype=np.float32)
        if histories.shape[0] <= kernels.CHUNK:  # a request: one serial block, no thread start-up
            kernels.solve_rows_cholesky_serial(ptr, idx, self.item_factors_, self._G_items, 1.0 - self.w0, out,
                                               kernels.CHUNK)
            return out
        with numba_threads(self.num_threads):
            kernels.solve_rows_cholesky(ptr, idx, self.item_factors_, self._G_items, 1.0 - self.w0, out,
                                        kernels.CHUNK)
        return out

    def fold_in_map(self, histories: sp.csr_matrix, prior_means: np.ndarray, lam: float | None = None) -> np.ndarray:
        """MAP fold-in: row solves with the prior ``lam * ||u - prior_mean||^2`` (equation in :mod:`.foldin`).

        histories : csr (q, n_items).  prior_means : (q, d), each query's prior mean u_bar.
        lam : the prior's weight (default ``fold_in_prior``); 0 is exactly :meth:`fold_in`.
        Returns (q, d) float32.
        """
        lam = self.fold_in_prior if lam is None else as_float("fold_in_prior", lam, 0.0, MAX_FOLD_IN_PRIOR)
        prior_means = np.asarray(prior_means)
        if prior_means.shape != (histories.shape[0], self.factors):
            raise ModelError(f"prior means have shape {prior_means.shape}, expected "
                             f"({histories.shape[0]}, {self.factors})")
        if lam == 0.0:
            return self.fold_in(histories)
        if self._G_items is None:
            self._G_items = gram_term(self.item_factors_, self.w0, self.reg)
        G = self._G_items + lam * np.eye(self.factors)
        b0 = lam * prior_means.astype(np.float64)  # (q, d): the prior's share of the right-hand side
        ptr, idx = _structure(histories)
        out = np.zeros((histories.shape[0], self.factors), dtype=np.float32)
        if histories.shape[0] <= kernels.CHUNK:
            foldin.solve_rows_cholesky_prior_serial(ptr, idx, self.item_factors_, G, 1.0 - self.w0, b0, out,
                                                    kernels.CHUNK)
            return out
        with numba_threads(self.num_threads):
            foldin.solve_rows_cholesky_prior(ptr, idx, self.item_factors_, G, 1.0 - self.w0, b0, out,
                                             kernels.CHUNK)
        return out

    def _query_codes(self, features: dict[str, np.ndarray] | None, q: int) -> np.ndarray:
        """(q, F) int codes in the model's feature order; -1 where unknown or absent."""
        codes = np.full((q, len(self.feature_names_)), -1, dtype=np.int64)
        for k, name in enumerate(self.feature_names_):
            if features is not None and name in features:
                c = np.asarray(features[name], dtype=np.int64).reshape(-1)
                if c.shape[0] != q:
                    raise ModelError(f"feature {name!r} has {c.shape[0]} values for {q} queries")
                c = np.where((c >= 0) & (c < self.feature_cardinalities_[k]), c, -1)
                codes[:, k] = c
        return codes

    def _subsets(self) -> list[list[tuple[int, ...]]]:
        """Feature subsets to try, grouped by size, largest first (the back-off order)."""
        F = len(self.feature_names_)
        if F <= MAX_SUBSET_FEATURES:
            return [list(itertools.combinations(range(F), size)) for size in range(F, 0, -1)]
        return [[tuple(range(size))] for size in range(F, 0, -1)]

    def feature_backoff(self, features: dict[str, np.ndarray] | None, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The feature heuristic for cold queries without history.

        For each query, over the features it knows (code >= 0): try subsets from the largest size
        down; at a size, among the subsets that at least ``min_support`` training users share with
        the query, take the one with the most such users (ties: the first in column order); the query
        vector is the mean of those users' trained vectors. When no subset qualifies: the mean of all
        training users' vectors.

        Returns
        -------
        vectors (q, d) float32; used (q, F) bool, the features of the chosen subset (all False = the
        global mean); support (q,) int, the number of training users averaged.
        """
        warm = self.warm_users_
        Uw = self.user_factors_[warm].astype(np.float64)
        n_w = Uw.shape[0]
        global_mean = Uw.mean(axis=0) if n_w else np.zeros(self.factors)
        Q = self._query_codes(features, q)
        out = np.tile(global_mean, (q, 1))
        used = np.zeros(Q.shape, dtype=bool)
        support = np.full(q, n_w, dtype=np.int64)
        resolved = np.zeros(q, dtype=bool)
        if q == 0 or n_w == 0:
            return out.astype(np.float32), used, support
        T = self.feature_codes_[warm].astype(np.int64)
        known = Q >= 0
        for level in self._subsets():
            best = np.zeros(q, dtype=np.int64)
            best_vec = np.zeros((q, self.factors))
            best_combo = np.full(q, -1, dtype=np.int64)
            for ci, combo in enumerate(level):
                cols = list(combo)
                elig = ~resolved & known[:, cols].all(axis=1)
                if not elig.any():
                    continue
                qi = np.flatnonzero(elig)
                # dense ids of the value combinations, train rows then query rows, factorised jointly
                both = np.concatenate([T[:, cols], Q[qi][:, cols]], axis=0)
                _, ids = np.unique(both, axis=0, return_inverse=True)
                ids = ids.reshape(-1)
                n_ids = int(ids.max()) + 1
                tr, qq = ids[:n_w], ids[n_w:]
                counts = np.bincount(tr, minlength=n_ids)
                sup = counts[qq]
                better = (sup >= self.min_support) & (sup > best[qi])
                if not better.any():
                    continue
                member = sp.csr_matrix((np.ones(n_w), (tr, np.arange(n_w))), shape=(n_ids, n_w))
                sums = member @ Uw
                sel = qi[better]
                best[sel] = sup[better]
                best_vec[sel] = sums[qq[better]] / sup[better][:, None]
                best_combo[sel] = ci
            hit = best > 0
            if hit.any():
                out[hit] = best_vec[hit]
                support[hit] = best[hit]
                for ci, combo in enumerate(level):
                    rows = np.flatnonzero(hit & (best_combo == ci))
                    used[np.ix_(rows, list(combo))] = True
                resolved |= hit
        return out.astype(np.float32), used, support

    def query_vectors(self, histories: sp.csr_matrix | None, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None) -> np.ndarray:
        """Query embeddings (q, d) float32 (``groups``, the query-time user groups, is not used).

        Warm training users (``users`` given, with training interactions): their trained vectors.
        Other queries with a non-empty history row: fold-in (exact row solve against fixed V); with
        ``fold_in_prior`` > 0 the MAP fold-in whose prior mean is the feature heuristic's vector
        (:meth:`fold_in_map`).
        Queries with an empty history: the feature heuristic (:meth:`feature_backoff`), which is the
        global mean of the training users' vectors when no feature is known.
        """
        n_items = self.item_factors_.shape[0]
        if histories is None:
            if users is None:
                raise ModelError("query_vectors needs histories or users")
            histories = sp.csr_matrix((len(users), n_items), dtype=np.float32)
        histories = sp.csr_matrix(histories)
        if histories.shape[1] != n_items:
            raise ModelError(f"histories have {histories.shape[1]} item columns, the model {n_items} items")
        q = histories.shape[0]
        out = np.empty((q, self.factors), dtype=np.float32)
        done = np.zeros(q, dtype=bool)
        if users is not None:
            users = np.asarray(users, dtype=np.int64).reshape(-1)
            if users.shape[0] != q:
                raise ModelError(f"{users.shape[0]} users for {q} query rows")
            if users.size and (users.min() < 0 or users.max() >= self.user_factors_.shape[0]):
                raise ModelError("a user index is outside the training users")
            done = self.warm_users_[users].copy()
            out[done] = self.user_factors_[users[done]]
        has_hist = (np.diff(histories.indptr) > 0) & ~done
        if has_hist.any():
            rows = np.flatnonzero(has_hist)
            if self.fold_in_prior > 0.0:
                out[rows] = self.fold_in_map(histories[rows], self.feature_backoff(_rows_of(features, rows),
                                                                                   len(rows))[0])
            else:
                out[rows] = self.fold_in(histories[rows])
            done |= has_hist
        if not done.all():
            rows = np.flatnonzero(~done)
            out[rows] = self.feature_backoff(_rows_of(features, rows), len(rows))[0]
        return out


def _rows_of(features: dict[str, np.ndarray] | None, rows: np.ndarray) -> dict[str, np.ndarray] | None:
    return None if features is None else {k: np.asarray(v).reshape(-1)[rows] for k, v in features.items()}
