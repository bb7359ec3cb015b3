"""The query tower end to end: forward to psi, the chosen loss, backward to every parameter, L2."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import ModelError
from . import kernels
from .batch import Batch, Sample, _Rows
from .full_softmax import FullSoftmaxWork, full_softmax_tiled
from .hashing import compose
from .layers import dense_backward, dense_forward, relu_backward, relu_forward
from .losses import gravity_loss, positives_only_loss, sampled_softmax_loss
from .optim import RowGrad
from .sampling import choose_hard
from .threads import blas_threads


@dataclass
class LossConfig:
    negatives: str | int  # "all" | N > 0 | 0
    gravity: float = 0.0
    l2: float = 0.0
    tied: bool = False
    n_layers: int = 1  # hidden layers
    feature_names: tuple[str, ...] = ()
    # hashing trick: (n_items, n_hashes) rows of each item in the input / output tables, or None
    rows_in: np.ndarray | None = None
    rows_out: np.ndarray | None = None
    full_work: FullSoftmaxWork | None = None  # the full softmax's reused buffers (one per fit)


def _bag_entries(batch: Batch, cfg: LossConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bag's (table row, example, weight) entries: one per hash function with hashed inputs."""
    if cfg.rows_in is None:
        return batch.bag_idx, batch.bag_ex, batch.bag_w
    n_hashes = cfg.rows_in.shape[1]
    return (cfg.rows_in[batch.bag_idx].reshape(-1), np.repeat(batch.bag_ex, n_hashes),
            np.repeat(batch.bag_w, n_hashes))


def tower_forward(P: dict[str, np.ndarray], batch: Batch, cfg: LossConfig) -> tuple[np.ndarray, list, list]:
    """psi (B, dim) and the caches (layer inputs Hs, pre-activations Zs) for the backward pass."""
    E = P["item_out"] if cfg.tied else P["item_in"]
    B = len(batch.targets)
    bag = np.zeros((B, E.shape[1]), dtype=E.dtype)
    idx, ex, w = _bag_entries(batch, cfg)
    kernels.gather_weighted(idx, ex, w.astype(E.dtype), E, bag)
    bag[batch.empty] = P["empty"]
    parts = [bag] + [P[f"feat__{f}"][c] for f, c in zip(cfg.feature_names, batch.codes, strict=True)]
    H = np.concatenate(parts, axis=1) if len(parts) > 1 else bag
    Hs, Zs = [H], []
    for layer in range(cfg.n_layers):
        Z = dense_forward(H, P[f"W{layer}"], P[f"b{layer}"])
        H = relu_forward(Z)
        Zs.append(Z)
        Hs.append(H)
    psi = dense_forward(H, P["W_out"], P["b_out"])
    return psi, Hs, Zs


def tower_backward(P: dict[str, np.ndarray], batch: Batch, cfg: LossConfig, dpsi: np.ndarray, Hs: list,
                   Zs: list, grads: dict, item_rows: _Rows) -> None:
    """Back-propagate dpsi through the tower into ``grads`` (dense) and ``item_rows`` (input bag)."""
    dH, grads["W_out"], grads["b_out"] = dense_backward(dpsi, Hs[-1], P["W_out"])
    for layer in reversed(range(cfg.n_layers)):
        dZ = relu_backward(dH, Zs[layer])
        dH, grads[f"W{layer}"], grads[f"b{layer}"] = dense_backward(dZ, Hs[layer], P[f"W{layer}"])
    E = P["item_out"] if cfg.tied else P["item_in"]
    de = E.shape[1]
    dbag = dH[:, :de]
    grads["empty"] = dbag[batch.empty].sum(axis=0)
    item_rows.add_weighted(*_bag_entries(batch, cfg), dbag)
    o = de
    B = len(batch.targets)
    for f, c in zip(cfg.feature_names, batch.codes, strict=True):
        fd = P[f"feat__{f}"].shape[1]
        r = _Rows()
        r.add_weighted(c.astype(np.int64), np.arange(B), np.ones(B, dtype=dH.dtype), dH[:, o:o + fd])
        grads[f"feat__{f}"] = r.merge(fd, dH.dtype)
        o += fd


def loss_and_grads(P: dict[str, np.ndarray], batch: Batch, cfg: LossConfig, sample: Sample | None = None,
                   rng: np.random.Generator | None = None, hard_n: int = 0,
                   timings: dict[str, float] | None = None) -> tuple[float, dict[str, np.ndarray | RowGrad]]:
    """Loss of one mini-batch and the gradient of every parameter.

    ``sample`` holds the negatives for ``negatives = N > 0``. For the hard sampler pass a Sample
    without mask plus ``rng`` and ``hard_n``: the mask is then chosen from the current pool scores
    among the candidates not excluded (a Sample with a mask makes the loss a fixed function of the
    params, as the gradient tests need). ``sample.exclude`` (the user's positives) is never a negative.
    With hashed outputs (``cfg.rows_out``) the loss sees V_i = sum_h O[rows_out[i, h]] for the items
    it needs and each item row's gradient goes to every one of its O rows.
    Gradients: dense arrays, or RowGrad for item tables (unless dense) and feature tables.
    The reported loss includes gravity and the L2 term.
    """
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        if timings is not None:
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - tick
            tick = now

    out_table = P["item_out"]
    t = batch.targets
    psi, Hs, Zs = tower_forward(P, batch, cfg)
    lap("tower")
    out_rows = _Rows()
    dV_dense = None
    dense = cfg.negatives == "all" or bool(cfg.gravity)
    cand = sample.cand if sample is not None and isinstance(cfg.negatives, int) and cfg.negatives > 0 else None
    items = None  # the items V holds (None: every item, in order)
    if cfg.rows_out is None:
        V = out_table
    elif dense:
        V = compose(out_table, cfg.rows_out)
    else:  # only the rows the loss touches, t and cand re-indexed into them
        items, inv = np.unique(t if cand is None else np.concatenate([t, cand]), return_inverse=True)
        V = compose(out_table, cfg.rows_out[items])
        t = inv[:len(t)]
        cand = None if cand is None else inv[len(batch.targets):]

    def add_out(rows: np.ndarray, vals: np.ndarray) -> None:
        if cfg.rows_out is None:
            out_rows.add(rows, vals)
            return
        ids = rows if items is None else items[rows]
        for h in range(cfg.rows_out.shape[1]):
            out_rows.add(cfg.rows_out[ids, h], vals)

    if cfg.negatives == "all":
        loss, dpsi, dV_dense = full_softmax_tiled(psi, V, t, cfg.full_work)
    elif cfg.negatives == 0:
        loss, dpsi, dVt = positives_only_loss(psi, V, t)
        add_out(t, dVt)
    else:
        if sample is None or cand is None:
            raise ModelError("sampled softmax needs a Sample of negatives")
        mask = sample.mask
        if mask is None and hard_n:
            scores = psi @ V[cand].T
            if sample.exclude is not None:
                scores[sample.exclude] = -np.inf  # a positive is never chosen as a hard negative
            mask = choose_hard(scores, hard_n, rng)
        if sample.exclude is not None:
            mask = ~sample.exclude if mask is None else mask & ~sample.exclude
        loss, dpsi, dVt, dVc = sampled_softmax_loss(psi, V, t, cand, sample.logq_t, sample.logq_c, mask)
        add_out(t, dVt)
        add_out(cand, dVc)
    if cfg.gravity:
        with blas_threads(V.shape[0] * V.shape[1] ** 2):
            lg, dpsi_g, dV_g = gravity_loss(psi, V, cfg.gravity)
        loss += lg
        dpsi = dpsi + dpsi_g
        dV_dense = dV_g if dV_dense is None else dV_dense + dV_g
    lap("loss")
    grads: dict[str, Any] = {}
    in_rows = out_rows if cfg.tied else _Rows()
    tower_backward(P, batch, cfg, dpsi, Hs, Zs, grads, in_rows)
    lap("tower")
    d = V.shape[1]
    if dV_dense is not None:
        if cfg.rows_out is not None:  # each item's gradient into every one of its rows of O
            dO = np.zeros_like(out_table)
            for h in range(cfg.rows_out.shape[1]):
                kernels.scatter_rows(cfg.rows_out[:, h], np.ascontiguousarray(dV_dense), dO)
            dV_dense = dO
        out_rows.into_dense(dV_dense)
        grads["item_out"] = dV_dense
    else:
        grads["item_out"] = out_rows.merge(d, V.dtype)
    if not cfg.tied:
        grads["item_in"] = in_rows.merge(P["item_in"].shape[1], V.dtype)
    lap("scatter")
    if cfg.l2:
        loss += _l2_term(P, grads, cfg.l2)
        lap("loss")
    return loss, grads


def _l2_term(P: dict[str, np.ndarray], grads: dict, l2: float) -> float:
    """(l2/2) * sum of squares of the weights in this step's gradient (embedding tables: the rows
    touched; biases excluded); adds l2 * theta to each gradient in place. Returns the term."""
    total = 0.0
    for name, g in grads.items():
        if name.startswith("b"):
            continue
        p = P[name]
        if isinstance(g, RowGrad):
            rows = p[g.rows]
            g.values += l2 * rows
            total += float(np.sum(rows * rows))
        else:
            g += l2 * p
            total += float(np.sum(p * p))
    return 0.5 * l2 * total
