"""Softmax DNN retriever in numpy with hand-written gradients.

Query tower (one training example = a (user, target item) pair):

    bag   = (sum_{j in H_u} E_j  -  E_t) / (|H_u| - 1)        mean input-embedding of the history minus
                                                             the target (a sum minus the target: the
                                                             bag is never rebuilt without it)
          = e_empty                                          if that history is empty (or dropped)
    x0    = [bag, F_1[c_1], ..., F_m[c_m]]                    one embedding per categorical user feature;
                                                             code -1 (unknown) -> a learned extra row
    h_l   = relu(h_{l-1} W_l + b_l)                           hidden layers (``hidden``; may be none)
    psi   = h_L W_o + b_o                                     (B, dim)
    logit_j = psi . V_j                                       V: output item embeddings (n_items, dim)

``E`` is the input item embedding table (dim columns), or ``V`` itself with ``tie_embeddings``.
``e_empty`` is a learned vector: a fraction ``history_dropout`` of training examples has its whole
history dropped (the bag becomes e_empty), so the r = 0 path used for cold users with features only
is actually trained; likewise a fraction ``feature_dropout`` of feature codes is replaced by the
"unknown" row so that row is learned too.

Losses (``negatives``): ``"all"`` full softmax cross-entropy; ``N > 0`` sampled softmax over the
positive and N negatives shared by the mini-batch (see :mod:`.sampling`; ``in-batch`` uses the batch's
targets instead, ``mixed`` both), never counting one of the user's training positives as a negative
(``mask_positives``); ``0`` positives only
(logistic loss on positive pairs; folds groups together). ``gravity`` adds
g * mean_b psi_b^T (V^T V / n) psi_b. Every loss below is a pure function: forward and backward side by
side, returning the loss and the gradients with respect to psi and V.

Hashing trick (:mod:`.hashing`): with ``item_buckets`` B > 0 the input table ``E`` has B rows and
item i's input embedding is sum_h E[h_h(i)] over ``item_hashes`` seeded hashes of its raw id; with
``hash_output`` the output table too (V_i = sum_h O[h'_h(i)], O with B rows). ``feature_buckets`` F > 0
hashes the labels of every user feature with more than F values into F rows (plus the unknown row).
The row maps are arrays of the model (saved with it), drawn from a key taken from the fit's rng.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ...core.errors import ModelError
from ...data.split import Split, TrainSet
from ..base import Capabilities, ProgressFn, RecommenderMixin, no_progress
from ..memory import validation_bytes
from ..params import (
    MAX_BATCH,
    MAX_BUCKETS,
    MAX_DIM,
    MAX_EPOCHS,
    MAX_HARD_POOL,
    MAX_HASHES,
    MAX_INIT_SCALE,
    MAX_LAYERS,
    MAX_LR,
    MAX_NEGATIVES,
    MAX_STEPS,
    MAX_WIDTH,
    as_choice,
    as_float,
    as_int,
)
from .batch import Batch, Sample, make_batch
from .full_softmax import STORED_BYTES, FullSoftmaxWork, tile_rows
from .hashing import collisions, compose, hash_rows
from .optim import make_optimizer
from .sampling import MIX_SAMPLERS, SAMPLERS, make_sampler, positive_hits
from .threads import blas_threads
from .tower import LossConfig, loss_and_grads, tower_forward

# ------------------------------------------------------------------------------------------------
# the model


OPTIMIZERS = ("adam", "adagrad")
# the fit's step bookkeeping, saved with the run as one integer each (attribute name + "_")
TRAINING_COUNTS = ("best_step", "steps", "min_steps", "steps_per_epoch", "effective_epochs", "stopped_early")


def parse_negatives(value: Any) -> str | int:
    """'all' | int in [0, MAX_NEGATIVES] (also from a string such as '50'); anything else is a ModelError."""
    need = f"'all', 0 (positives only) or a positive integer up to {MAX_NEGATIVES:,}"
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "all":
            return "all"
        try:
            value = int(v)
        except ValueError:
            raise ModelError(f"--negatives must be {need}; got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= MAX_NEGATIVES:
        raise ModelError(f"--negatives must be {need}; got {value!r}")
    return int(value)


def parse_min_steps(value: Any) -> str | int:
    """'auto' | int in [0, MAX_STEPS] (also from a string such as '2000'); anything else is a ModelError."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise ModelError(f"min_steps must be 'auto' or an integer in [0, {MAX_STEPS:,}]; got {value!r}") from None
    return as_int("min_steps", value, 0, MAX_STEPS)


# The automatic step budget: at least this many optimiser steps, and enough for every item's output row to
# be updated about this many times (a batch of B examples updates B target rows).
AUTO_MIN_STEPS = 1000
AUTO_UPDATES_PER_ITEM = 50


def auto_min_steps(n_items: int, batch_size: int, steps_per_epoch: int) -> int:
    """The step budget ``min_steps="auto"`` resolves to: max(1000, ceil(50 n_items / batch_size)), capped
    so that the epochs it needs (ceil(S / steps_per_epoch)) stay <= MAX_EPOCHS."""
    budget = max(AUTO_MIN_STEPS, math.ceil(AUTO_UPDATES_PER_ITEM * n_items / batch_size))
    return min(budget, MAX_EPOCHS * max(steps_per_epoch, 1))


def parse_hidden(value: Any) -> tuple[int, ...]:
    """Layer widths from a tuple/list of ints or a comma-separated string ('' = no hidden layer)."""
    need = f"comma-separated integers in [1, {MAX_WIDTH}] (at most {MAX_LAYERS} layers; '' for none)"
    if isinstance(value, str):
        try:
            value = [int(x) for x in value.split(",") if x.strip()]
        except ValueError:
            raise ModelError(f"--hidden expects {need}; got {value!r}") from None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = [value]  # one layer given as a number (e.g. --softmax-param hidden=64)
    try:
        widths = list(value)
    except TypeError:
        raise ModelError(f"--hidden expects {need}; got {value!r}") from None
    if len(widths) > MAX_LAYERS:
        raise ModelError(f"--hidden expects {need}; got {len(widths)} layers")
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 1 <= w <= MAX_WIDTH]
    if bad:
        raise ModelError(f"--hidden widths must be integers in [1, {MAX_WIDTH}]; got {widths}")
    return tuple(int(w) for w in widths)


class SoftmaxDNN(RecommenderMixin):
    """Softmax DNN retriever: query tower over history + user features, dot product with item embeddings.

    Parameters
    ----------
    dim : output embedding size d (psi and V).
    hidden : ReLU hidden layer widths; () for none (a linear tower).
    feature_dim : embedding size of each categorical user feature.
    negatives : "all" (full softmax), N > 0 (sampled softmax with N negatives shared by the batch),
        or 0 (positives only, logistic loss; folds groups).
    sampler : "uniform" | "popularity" (with logQ correction) | "hard" | "in-batch" (the batch's other
        targets, logQ-corrected) | "mixed" (in-batch plus N from the ``mix_sampler`` pool); see ``sampling``.
    mix_sampler : the pool of ``mixed``: "uniform" | "popularity".
    mask_positives : never use one of the example user's training positives as a negative (else only
        the example's own target is masked).
    item_buckets : hashing trick, rows of the input item table (0 = one row per item).
    item_hashes : hash functions per item (its embedding is the sum of its rows).
    hash_output : hash the output item table into ``item_buckets`` rows too.
    feature_buckets : rows of each user feature table with more values than this (0 = no hashing).
    hard_pool : uniform pool size per batch from which the hard sampler picks each example's N
        (>= negatives with the hard sampler; a pool larger than the catalogue is the catalogue).
    gravity : weight g of the gravity term g * mean_b psi_b^T (V^T V / n) psi_b.
    epochs, batch_size, lr, optimizer ("adam" | "adagrad"), l2 : training.
    patience : stop after this many epochs without a better validation recall@20 (0 = never stop
        early); the best epoch's parameters are kept. Counted in steps under the step budget (below).
    min_steps : the step budget S: "auto" (default) = max(1000, ceil(50 * n_items / batch_size)), so
        every item's output row gets on the order of 50 updates, capped so the epochs it needs stay
        <= MAX_EPOCHS; an integer >= 0 is used as is; 0 = no budget (``epochs`` and ``patience`` in
        epochs, as they read). With S > 0 small data is not compared undertrained:

        - effective epochs = max(epochs, ceil(S / steps_per_epoch)), steps_per_epoch =
          ceil(training pairs / batch_size);
        - patience_steps = patience * max(steps_per_epoch, ceil(S / epochs)) (the patience of the epochs
          asked for, stretched over the budget);
        - validation still runs once per epoch, and early stopping fires only once at least S steps
          have run and at least patience_steps steps have passed since the best validation.

        The fit records ``steps_`` (optimiser steps run), ``min_steps_`` (S), ``steps_per_epoch_``,
        ``effective_epochs_``, ``stopped_early_``, ``best_step_`` and ``best_epoch_``; each ``history_``
        row has the cumulative ``step``.
    tie_embeddings : use V as the input item embeddings too.
    history_dropout : fraction of training examples whose history is dropped (trains the empty-
        history path used for cold users with features only).
    feature_dropout : fraction of feature codes replaced by "unknown" in training (trains that row).
    init_scale : standard deviation of the initial embeddings.

    Every value is checked here (ranges in :mod:`.base`); a bad one is a ModelError naming the CLI
    option. ``fit`` stops with a ModelError when the loss or the parameters become inf/nan.
    """

    kind: ClassVar[str] = "softmax"
    family: ClassVar[str] = "dnn"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=False,
                                                        uses_features=True, embeds_cold_users=True)

    def __init__(self, dim: int = 32, hidden: Sequence[int] | str = (64,), feature_dim: int = 8,
                 negatives: str | int = 50, sampler: str = "uniform", hard_pool: int = 500,
                 gravity: float = 0.0, epochs: int = 30, batch_size: int = 256, lr: float = 0.002,
                 optimizer: str = "adam", l2: float = 0.0, patience: int = 3, tie_embeddings: bool = False,
                 history_dropout: float = 0.1, feature_dropout: float = 0.05, init_scale: float = 0.1,
                 mix_sampler: str = "uniform", mask_positives: bool = True, item_buckets: int = 0,
                 item_hashes: int = 2, hash_output: bool = False, feature_buckets: int = 0,
                 min_steps: int | str = "auto") -> None:
        self.dim = as_int("--dim", dim, 1, MAX_DIM)
        self.hidden = parse_hidden(hidden)
        self.feature_dim = as_int("--feature-dim", feature_dim, 1, MAX_DIM)
        self.negatives = parse_negatives(negatives)
        self.sampler = as_choice("--sampler", sampler, SAMPLERS)
        self.hard_pool = as_int("--hard-pool", hard_pool, 1, MAX_HARD_POOL)
        self.gravity = as_float("--gravity", gravity, 0.0)
        self.epochs = as_int("--epochs", epochs, 1, MAX_EPOCHS)
        self.batch_size = as_int("--batch-size", batch_size, 1, MAX_BATCH)
        self.lr = as_float("--lr", lr, 0.0, MAX_LR, lo_open=True)
        self.optimizer = as_choice("--optimizer", optimizer, OPTIMIZERS)
        self.l2 = as_float("--l2", l2, 0.0)
        self.patience = as_int("--patience", patience, 0, MAX_EPOCHS)
        if not isinstance(tie_embeddings, bool | np.bool_):
            raise ModelError(f"tie_embeddings must be true or false, got {tie_embeddings!r}")
        self.tie_embeddings = bool(tie_embeddings)
        self.history_dropout = as_float("--history-dropout", history_dropout, 0.0, 1.0, hi_open=True)
        self.feature_dropout = as_float("feature_dropout", feature_dropout, 0.0, 1.0, hi_open=True)
        self.init_scale = as_float("init_scale", init_scale, 0.0, MAX_INIT_SCALE, lo_open=True)
        self.mix_sampler = as_choice("--mix-sampler", mix_sampler, MIX_SAMPLERS)
        for name, flag in (("mask_positives", mask_positives), ("--hash-output", hash_output)):
            if not isinstance(flag, bool | np.bool_):
                raise ModelError(f"{name} must be true or false, got {flag!r}")
        self.mask_positives = bool(mask_positives)
        self.item_buckets = as_int("--item-buckets", item_buckets, 0, MAX_BUCKETS)
        self.item_hashes = as_int("--item-hashes", item_hashes, 1, MAX_HASHES)
        self.hash_output = bool(hash_output)
        self.feature_buckets = as_int("--feature-buckets", feature_buckets, 0, MAX_BUCKETS)
        self.min_steps = parse_min_steps(min_steps)
        self._validate()
        self.hash_rows_: dict[str, np.ndarray] = {}
        self.n_items_ = 0
        self.masked_ = [0, 0]  # (other positives among the candidates, candidate slots) of the last fit
        self.params_: dict[str, np.ndarray] = {}
        self.feature_names_: tuple[str, ...] = ()
        self.history_: list[dict[str, float]] = []
        self.train_seconds_ = 0.0
        self.best_epoch_ = 0
        self.best_step_ = 0
        self.steps_ = 0
        self.min_steps_ = 0
        self.steps_per_epoch_ = 0
        self.effective_epochs_ = 0
        self.stopped_early_ = False
        self.notes_: list[str] = []

    def _validate(self) -> None:
        """Checks between parameters (each one alone is checked as it is converted)."""
        hard = self.sampler == "hard" and isinstance(self.negatives, int) and self.negatives > 0
        if hard and self.hard_pool < self.negatives:
            raise ModelError(f"--hard-pool ({self.hard_pool}) must be >= --negatives ({self.negatives}) with "
                             "--sampler hard: each example picks its negatives from the pool")
        if self.hash_output and not self.item_buckets:
            raise ModelError("--hash-output needs --item-buckets > 0 (the number of output rows)")
        if self.item_buckets and self.tie_embeddings:
            raise ModelError("--item-buckets cannot be combined with --tie-embeddings (the tied table is the "
                             "output table, one row per item); use --hash-output to hash both tables")

    def get_params(self) -> dict[str, Any]:
        return {
            "dim": self.dim, "hidden": list(self.hidden), "feature_dim": self.feature_dim,
            "negatives": self.negatives, "sampler": self.sampler, "hard_pool": self.hard_pool,
            "gravity": self.gravity, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "optimizer": self.optimizer, "l2": self.l2, "patience": self.patience,
            "tie_embeddings": self.tie_embeddings, "history_dropout": self.history_dropout,
            "feature_dropout": self.feature_dropout, "init_scale": self.init_scale,
            "mix_sampler": self.mix_sampler, "mask_positives": self.mask_positives,
            "item_buckets": self.item_buckets, "item_hashes": self.item_hashes, "hash_output": self.hash_output,
            "feature_buckets": self.feature_buckets, "min_steps": self.min_steps,
        }

    memory_hint: ClassVar[str] = "lower --dim, --hidden, --batch-size, --negatives or --hard-pool"

    def _pool(self, n_items: int) -> int:
        """Candidates drawn per mini-batch by the hard sampler: --hard-pool, at most the catalogue."""
        return min(self.hard_pool, n_items)

    def _n_draw(self, n_items: int) -> int:
        """Items the sampler draws per mini-batch (in-batch draws none: it reuses the batch's targets)."""
        return {"hard": self._pool(n_items), "in-batch": 0}.get(self.sampler, self.negatives)

    def _n_candidates(self, n_items: int) -> int:
        """Columns of the (B, N) sampled logits."""
        in_batch = self.batch_size if self.sampler in ("in-batch", "mixed") else 0
        return in_batch + self._n_draw(n_items)

    def _feature_rows(self, cardinality: int) -> int:
        """Rows of a feature's table, unknown row excluded: its values, or --feature-buckets when fewer."""
        return self.feature_buckets if 0 < self.feature_buckets < cardinality else cardinality

    def init_hashing(self, item_labels: Any, feature_labels: dict[str, Any], key: int) -> None:
        """The row maps of the hashed tables from raw item ids and feature value labels (index -> label)."""
        self.hash_rows_ = {}
        if self.item_buckets:
            self.hash_rows_["item_hash_in"] = hash_rows(item_labels, self.item_buckets, self.item_hashes, key,
                                                        "item_in")
            if self.hash_output:
                self.hash_rows_["item_hash_out"] = hash_rows(item_labels, self.item_buckets, self.item_hashes,
                                                             key, "item_out")
        for f, labels in feature_labels.items():
            if self._feature_rows(len(labels)) < len(labels):
                self.hash_rows_[f"feat_hash__{f}"] = hash_rows(labels, self.feature_buckets, 1, key, f"f:{f}")

    def estimate_bytes(self, n_users: int, n_items: int, nnz: int, cardinalities: dict[str, int]) -> int:
        """Peak bytes ``fit`` allocates.

        Parameters (float32) four times over: the parameters, Adam's two moments (Adagrad: one
        accumulator) and the copy of the best epoch; the training pairs and their shuffle (int64);
        and one mini-batch's work arrays: tower activations, then the loss's (full softmax: a
        logits block of at most 2^25 values plus dense (n_items, d) gradients; sampled: (B, N)
        logits and their softmax; hard: the (B, pool) scores and the float64 Gumbel draw); and the
        validation recall of each epoch (queries embedded 8192 at a time, then scored).
        """
        d, B = self.dim, self.batch_size
        width = d + self.feature_dim * len(cardinalities)
        in_rows = self.item_buckets or n_items
        out_rows = self.item_buckets if self.hash_output else n_items
        n_params = out_rows * d + (0 if self.tie_embeddings else in_rows * d) + d
        n_params += sum((self._feature_rows(c) + 1) * self.feature_dim for c in cardinalities.values())
        for h in self.hidden:
            n_params += width * h + h
            width = h
        n_params += width * d + d
        copies = 4 if self.optimizer == "adam" else 3
        params = 4 * n_params * copies
        pairs = 3 * 8 * nnz + 8 * (n_users + 1) + 8 * n_users * len(cardinalities)
        hashes = self.item_hashes * (int(bool(self.item_buckets)) + int(self.hash_output))
        pairs += 4 * n_items * hashes + 4 * sum(cardinalities.values())  # the hash row maps (int32)
        tower = 4 * 3 * B * (d + self.feature_dim * len(cardinalities) + sum(self.hidden))
        if self.negatives == "all":  # all the logits (when small) or per thread a tile and two (B, d); dV twice
            threads = os.cpu_count() or 1
            stored = 4 * B * n_items if 4 * B * n_items <= STORED_BYTES else 0
            logits = max(stored, threads * 4 * B * tile_rows(B, 4))
            loss = logits + threads * 2 * 4 * B * d + 2 * 4 * n_items * d
        elif self.negatives == 0:
            loss = 4 * 4 * B * d
        else:
            n = self._n_candidates(n_items)
            loss = 8 * 4 * B * n + 4 * n * d + B * n  # the logits' work arrays, V rows, the positives mask
            if self.sampler == "hard":
                loss += 5 * 8 * B * n  # Gumbel noise and its logs in float64, the argpartition
        gravity = 2 * 4 * n_items * d if self.gravity else 0
        if self.hash_output:  # the item embeddings composed from their rows (all of them when dense)
            gravity += 2 * 4 * d * (n_items if self.gravity or self.negatives == "all" else B + n_items // 8)
        embed = 4 * 8192 * (2 * d + self.feature_dim * len(cardinalities) + 2 * sum(self.hidden))
        valid = embed + validation_bytes(n_users, n_items, d)
        return params + pairs + tower + loss + gravity + valid

    # -- parameters ------------------------------------------------------------------------------

    def _loss_config(self) -> LossConfig:
        return LossConfig(negatives=self.negatives, gravity=self.gravity, l2=self.l2, tied=self.tie_embeddings,
                          n_layers=len(self.hidden), feature_names=self.feature_names_,
                          rows_in=self.hash_rows_.get("item_hash_in"), rows_out=self.hash_rows_.get("item_hash_out"))

    def init_params(self, n_items: int, cardinalities: dict[str, int], rng: np.random.Generator,
                    dtype: Any = np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters: embeddings N(0, init_scale^2); layers He-initialised; biases 0. Hashed
        tables (row maps from :meth:`init_hashing`) have their bucket count of rows."""
        self.feature_names_ = tuple(sorted(cardinalities))
        self.n_items_ = n_items
        s, d = self.init_scale, self.dim
        hashed = self.hash_rows_
        out_rows = self.item_buckets if "item_hash_out" in hashed else n_items
        P: dict[str, np.ndarray] = {"item_out": rng.normal(0, s, (out_rows, d))}
        if not self.tie_embeddings:
            P["item_in"] = rng.normal(0, s, (self.item_buckets if "item_hash_in" in hashed else n_items, d))
        P["empty"] = rng.normal(0, s, d)
        for f in self.feature_names_:
            rows = self.feature_buckets if f"feat_hash__{f}" in hashed else cardinalities[f]
            P[f"feat__{f}"] = rng.normal(0, s, (rows + 1, self.feature_dim))  # last row: unknown
        width = d + self.feature_dim * len(self.feature_names_)
        for layer, h in enumerate(self.hidden):
            P[f"W{layer}"] = rng.normal(0, np.sqrt(2.0 / width), (width, h))
            P[f"b{layer}"] = np.zeros(h)
            width = h
        P["W_out"] = rng.normal(0, np.sqrt(1.0 / width), (width, d))
        P["b_out"] = np.zeros(d)
        self.params_ = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in P.items()}
        return self.params_

    def _codes(self, features: dict[str, np.ndarray] | None, q: int) -> list[np.ndarray]:
        """Feature codes mapped into each table (-1, missing or out of range -> the unknown row; a
        hashed feature's codes -> their hashed rows)."""
        out = []
        for f in self.feature_names_:
            unknown = self.params_[f"feat__{f}"].shape[0] - 1
            rows = self.hash_rows_.get(f"feat_hash__{f}")
            n_codes = unknown if rows is None else len(rows)
            c = None if features is None else features.get(f)
            if c is None:
                out.append(np.full(q, unknown, dtype=np.int64))
            else:
                c = np.asarray(c, dtype=np.int64)
                ok = (c >= 0) & (c < n_codes)
                mapped = c if rows is None else rows[np.where(ok, c, 0), 0]
                out.append(np.where(ok, mapped, unknown))
        return out

    # -- training --------------------------------------------------------------------------------

    def fit(self, train: TrainSet | Split, rng: np.random.Generator | None = None,
            progress: ProgressFn = no_progress, validate: Callable[[SoftmaxDNN], float] | None = None) -> SoftmaxDNN:
        """Train on (user, target) pairs of ``train.matrix``; early stopping on validation recall@20."""
        train, rng = self._fit_inputs(train, rng)
        t_start = time.perf_counter()
        X = train.matrix.tocsr()
        n_users, n_items = X.shape
        indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
        if X.nnz == 0:
            raise ModelError("no training interactions to fit the softmax DNN on")
        cards = {f: int(train.cardinalities.get(f, int(c.max(initial=-1)) + 1)) for f, c in train.features.items()}
        self.notes_ = []
        if self.item_buckets or self.feature_buckets:
            key = int(rng.integers(0, 2**63))
            item_labels = train.item_ids if train.item_ids is not None else [str(i) for i in range(n_items)]
            labels = {f: (list(train.feature_values[f]) if f in train.feature_values else [str(v) for v in range(c)])
                      for f, c in cards.items()}
            self.init_hashing(item_labels, labels, key)
            self._note_collisions(n_items)
        else:
            self.hash_rows_ = {}
        self.init_params(n_items, cards, rng)
        P = self.params_
        codes = self._codes(train.features, n_users)
        pair_users = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
        pair_items = indices
        counts = np.bincount(indices, minlength=n_items)
        sampler = make_sampler(self.sampler, counts, self.mix_sampler) \
            if isinstance(self.negatives, int) and self.negatives > 0 else None
        n_draw = self._n_draw(n_items) if sampler else 0
        self.masked_ = [0, 0]
        if sampler is not None and self.sampler == "hard" and self.hard_pool > n_items:
            self.notes_.append(f"--hard-pool {self.hard_pool:,} exceeds the catalogue ({n_items:,} items): "
                               "every batch's pool is the whole catalogue")
        hard_n = self.negatives if sampler is not None and self.sampler == "hard" else 0
        opt = make_optimizer(self.optimizer, self.lr)
        cfg = self._loss_config()
        if self.negatives == "all":  # the full softmax's buffers, reused by every step of this fit
            cfg.full_work = FullSoftmaxWork()
        validate = validate if train.valid is not None and train.valid.nnz > 0 else None
        with blas_threads(None):  # one BLAS thread: gravity threads its big product, the full softmax its item tiles
            self._epochs(P, opt, cfg, indptr, indices, codes, pair_users, pair_items, rng, sampler,
                         n_draw, hard_n, progress, validate)
        self.train_seconds_ = time.perf_counter() - t_start
        self.remember_training(train)
        return self

    def _note_collisions(self, n_items: int) -> None:
        for name, rows in self.hash_rows_.items():
            shared = collisions(rows)
            if shared:
                what = "items" if name.startswith("item") else f"{name[len('feat_hash__'):]} values"
                self.notes_.append(f"hashing ({name}): {len(rows):,} {what} map to {len(rows) - shared:,} distinct "
                                   "sets of rows (the others share all their rows with another)")

    def _epochs(self, P: dict[str, np.ndarray], opt: Any, cfg: LossConfig, indptr: np.ndarray,
                indices: np.ndarray, codes: list[np.ndarray], pair_users: np.ndarray, pair_items: np.ndarray,
                rng: np.random.Generator, sampler: Any, n_draw: int, hard_n: int, progress: ProgressFn,
                validate: Callable[[SoftmaxDNN], float] | None) -> None:
        """The epoch loop with early stopping under the step budget; leaves the best epoch's parameters
        in ``params_``.

        ``validate(model) -> recall`` scores the model on validation after each epoch (the experiment
        runner passes the evaluator's validation recall@20); without it the best epoch is the one with
        the lowest training loss. The budget rule is the class docstring's (``min_steps``).
        """
        n_pairs = len(pair_users)
        per_epoch = math.ceil(n_pairs / self.batch_size)
        budget = auto_min_steps(self.n_items_, self.batch_size, per_epoch) if self.min_steps == "auto" \
            else int(self.min_steps)
        n_epochs = max(self.epochs, math.ceil(budget / per_epoch))
        patience_steps = self.patience * max(per_epoch, math.ceil(budget / self.epochs))
        self.min_steps_, self.steps_per_epoch_, self.effective_epochs_ = budget, per_epoch, n_epochs
        self.stopped_early_ = False
        best_score, best_params, best_epoch, best_step = -np.inf, None, 0, 0
        self.history_ = []
        step = 0
        for epoch in range(1, n_epochs + 1):
            t0 = time.perf_counter()
            perm = rng.permutation(n_pairs)
            total, seen = 0.0, 0
            for s in range(0, n_pairs, self.batch_size):
                idx = perm[s:s + self.batch_size]
                loss = self._train_step(P, opt, cfg, indptr, indices, codes, pair_users[idx], pair_items[idx],
                                        rng, sampler, n_draw, hard_n, epoch=epoch)
                total += loss * len(idx)
                seen += len(idx)
                step += 1
            bad_params = [k for k, v in P.items() if not np.isfinite(v).all()]
            if bad_params:
                raise ModelError(f"training diverged at epoch {epoch} (parameters {', '.join(bad_params)} are "
                                 "inf/nan); lower --lr")
            rec = float(validate(self)) if validate is not None else float("nan")
            row = {"epoch": epoch, "step": step, "loss": total / max(seen, 1), "valid_recall@20": rec,
                   "seconds": time.perf_counter() - t0}
            self.history_.append(row)
            progress(epoch, n_epochs, {"loss": row["loss"], "valid recall@20": rec})
            score = rec if validate is not None else -row["loss"]
            if score > best_score:
                best_score, best_params, best_epoch, best_step = score, copy.deepcopy(P), epoch, step
            elif self.patience and step >= budget and step - best_step >= patience_steps:
                self.stopped_early_ = epoch < n_epochs
                break
        self.params_ = best_params if best_params is not None else P
        self.best_epoch_, self.best_step_, self.steps_ = best_epoch, best_step, step

    def _train_step(self, P: dict[str, np.ndarray], opt: Any, cfg: LossConfig, indptr: np.ndarray,
                    indices: np.ndarray, codes: list[np.ndarray], users: np.ndarray, targets: np.ndarray,
                    rng: np.random.Generator, sampler: Any, n_draw: int, hard_n: int,
                    timings: dict[str, float] | None = None, epoch: int = 0) -> float:
        """One optimiser step on the examples (users, targets). Returns the batch loss.

        A non-finite loss stops training (ModelError) before the optimiser sees its gradients."""
        tick = time.perf_counter()
        B = len(users)
        drop = rng.random(B) < self.history_dropout if self.history_dropout else None
        batch = make_batch(indptr, indices, users, targets, codes, P["item_out"].dtype, drop)
        if self.feature_dropout and batch.codes:
            for j, f in enumerate(self.feature_names_):
                unk = P[f"feat__{f}"].shape[0] - 1
                batch.codes[j] = np.where(rng.random(B) < self.feature_dropout, unk, batch.codes[j])
        sample = None
        if sampler is not None:
            cand, logq_c, logq_t = sampler.propose(rng, targets, n_draw)
            hits = None
            if self.mask_positives:  # without the mask only accidental hits (the target itself) are masked
                hits = positive_hits(indptr, indices, users, cand, self.n_items_)
                self.masked_[0] += int(hits.sum()) - int((cand[None, :] == targets[:, None]).sum())
                self.masked_[1] += hits.size
            sample = Sample(cand, logq_c, logq_t, exclude=hits)
        if timings is not None:
            timings["batch"] = timings.get("batch", 0.0) + time.perf_counter() - tick
        try:
            loss, grads = loss_and_grads(P, batch, cfg, sample, rng, hard_n, timings)
        except ZeroDivisionError:  # the fastmath kernels divide by zero only on inf/nan inputs
            loss, grads = float("nan"), {}
        if not np.isfinite(loss):
            raise ModelError(f"training diverged at epoch {epoch} (loss is {loss}); lower --lr")
        tick = time.perf_counter()
        try:
            opt.step(P, grads)
        except ZeroDivisionError:
            raise ModelError(f"training diverged at epoch {epoch} (gradients are inf/nan); lower --lr") from None
        if timings is not None:
            timings["optimizer"] = timings.get("optimizer", 0.0) + time.perf_counter() - tick
        return loss

    # -- serving ---------------------------------------------------------------------------------

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None, groups: np.ndarray | None = None,
                      chunk_size: int = 8192) -> np.ndarray:
        """Embed queries from their history and features (``users`` and ``groups`` are ignored: the DNN
        has no per-user state and no group input). An empty history uses the learned empty-history vector.

        Parameters
        ----------
        histories : csr (q, n_items); nonzero = item in the history.
        features : name -> (q,) int codes, -1 unknown; missing names or None -> unknown.

        Returns
        -------
        (q, dim) float32.
        """
        if not self.params_:
            raise ModelError("the softmax model is not fitted")
        H = sp.csr_matrix(histories)
        q = H.shape[0]
        n_items = self.n_items_
        if H.shape[1] != n_items:
            raise ModelError(f"histories have {H.shape[1]} item columns, the model {n_items}")
        codes = self._codes(features, q)
        cfg = self._loss_config()
        E = self.params_["item_out"] if self.tie_embeddings else self.params_["item_in"]
        out = np.empty((q, self.dim), dtype=np.float32)
        for s in range(0, q, chunk_size):
            e = min(q, s + chunk_size)
            h = H[s:e]
            h.sum_duplicates()
            n = np.diff(h.indptr)
            ex = np.repeat(np.arange(e - s, dtype=np.int64), n)
            w = np.repeat(1.0 / np.maximum(n, 1), n).astype(E.dtype)
            batch = Batch(targets=np.zeros(e - s, dtype=np.int64), bag_idx=h.indices.astype(np.int64), bag_ex=ex,
                          bag_w=w, empty=n == 0, codes=[c[s:e] for c in codes])
            psi, _, _ = tower_forward(self.params_, batch, cfg)
            out[s:e] = psi
        return out

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32 output item embeddings V (composed from their rows when hashed)."""
        rows = self.hash_rows_.get("item_hash_out")
        V = self.params_["item_out"] if rows is None else compose(self.params_["item_out"], rows)
        return np.asarray(V, dtype=np.float32)

    # -- persistence -----------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        out = dict(self.params_)
        out.update(self.hash_rows_)
        out["best_epoch"] = np.array(self.best_epoch_)
        for name in TRAINING_COUNTS:
            out[name] = np.array(int(getattr(self, f"{name}_")))
        return out

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> SoftmaxDNN:
        """Rebuild a trained model from ``state()`` arrays, checking every shape against the params.

        ``info`` may carry the run's ``n_items`` and ``feature_cardinalities`` (name -> number of
        labels), which the arrays must match.
        """
        m = cls(**params)
        arrays = dict(arrays)
        best = arrays.pop("best_epoch", np.array(0))
        if best.dtype.kind not in "iu" or best.shape != ():
            raise ModelError("softmax state: best_epoch must be one integer")
        m.best_epoch_ = int(best)
        for name in TRAINING_COUNTS:  # runs saved before the step budget have none: 0 (unknown)
            count = arrays.pop(name, np.array(0))
            if count.dtype.kind not in "iub" or count.shape != () or int(count) < 0:
                raise ModelError(f"softmax state: {name} must be one integer >= 0")
            setattr(m, f"{name}_", bool(count) if name == "stopped_early" else int(count))
        hashed = {k: arrays.pop(k) for k in list(arrays) if k.startswith(("item_hash_", "feat_hash__"))}
        needed = ["item_out", "empty", "W_out", "b_out"] + ([] if m.tie_embeddings else ["item_in"])
        needed += [f"{w}{i}" for i in range(len(m.hidden)) for w in ("W", "b")]
        missing = [k for k in needed if k not in arrays]
        want_hash = (["item_hash_in"] if m.item_buckets else []) + (["item_hash_out"] if m.hash_output else [])
        missing += [k for k in want_hash if k not in hashed]
        if missing:
            raise ModelError(f"softmax model state lacks arrays {missing}")
        feats = sorted(k[len("feat__"):] for k in arrays if k.startswith("feat__"))
        extra = sorted(set(arrays) - set(needed) - {f"feat__{f}" for f in feats})
        extra += sorted(k for k in hashed if k.startswith("item_hash_") and k not in want_hash)
        extra += sorted(k for k in hashed if k.startswith("feat_hash__") and k[len("feat_hash__"):] not in feats)
        if extra:
            why = " (tie_embeddings is true but the state has separate input embeddings)" if "item_in" in extra else ""
            raise ModelError(f"softmax state holds arrays {extra} that params do not use{why}")
        default_n = hashed["item_hash_in"].shape[0] if "item_hash_in" in hashed else arrays["item_out"].shape[0]
        n_items = info.get("n_items", default_n)
        cards = info.get("feature_cardinalities")
        if cards is not None and sorted(cards) != feats:
            raise ModelError(f"softmax feature tables {feats} do not match the run's features {sorted(cards)}")
        d, fd = m.dim, m.feature_dim
        nb = m.item_buckets
        shapes = {"item_out": (nb if m.hash_output else n_items, d), "item_in": (nb or n_items, d), "empty": (d,),
                  "W_out": None, "b_out": (d,)}
        for f in feats:
            n_values = cards[f] if cards is not None else None
            if f"feat_hash__{f}" in hashed:
                n_values = hashed[f"feat_hash__{f}"].shape[0] if n_values is None else n_values
                shapes[f"feat__{f}"] = (m.feature_buckets + 1, fd)
                shapes[f"feat_hash__{f}"] = (n_values, 1)
            else:
                shapes[f"feat__{f}"] = (n_values + 1, fd) if n_values is not None else (arrays[f"feat__{f}"].shape[0], fd)
        shapes["item_hash_in"] = shapes["item_hash_out"] = (n_items, m.item_hashes)
        width = d + fd * len(feats)
        for i, h in enumerate(m.hidden):
            shapes[f"W{i}"], shapes[f"b{i}"] = (width, h), (h,)
            width = h
        shapes["W_out"] = (width, d)
        for k, v in arrays.items():
            want = shapes[k]
            if v.dtype.kind != "f" or v.shape != want:
                raise ModelError(f"softmax state: {k} has shape {v.shape} ({v.dtype}), params (dim={d}, "
                                 f"hidden={list(m.hidden)}, feature_dim={fd}) need {want}")
            if not np.isfinite(v).all():
                raise ModelError(f"softmax state: {k} contains NaN or infinity")
        for k, v in hashed.items():
            rows = m.feature_buckets if k.startswith("feat_hash__") else nb
            if v.dtype.kind not in "iu" or v.shape != shapes[k] or (v.size and not 0 <= v.min() <= v.max() < rows):
                raise ModelError(f"softmax state: hash rows {k} have shape {v.shape} ({v.dtype}); params need "
                                 f"{shapes[k]} integers in [0, {rows})")
            if m.feature_buckets and k.startswith("feat_hash__") and m._feature_rows(v.shape[0]) == v.shape[0]:
                raise ModelError(f"softmax state: {k} hashes a feature that feature_buckets={m.feature_buckets} "
                                 "leaves unhashed")
        m.hash_rows_ = {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in hashed.items()}
        m.n_items_ = int(n_items)
        m.params_ = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        m.feature_names_ = tuple(feats)
        m.train_seconds_ = float(info.get("train_seconds", 0.0))
        m.history_ = list(info.get("history", []))
        return m
