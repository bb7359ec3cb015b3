"""The softmax DNN's losses, each a pure function: forward and backward side by side, returning the
loss and its gradients with respect to psi (B, d) and V (n_items, d) or the candidates' rows."""

from __future__ import annotations

import numpy as np

from . import kernels


def full_softmax_loss(psi: np.ndarray, V: np.ndarray, t: np.ndarray,
                      max_chunk_elems: int = 1 << 25) -> tuple[float, np.ndarray, np.ndarray]:
    """Full softmax cross-entropy.

    L = (1/B) sum_b [ logsumexp_j(psi_b . V_j) - psi_b . V_{t_b} ]         psi (B, d), V (n, d), t (B,)
    G = (softmax(Z) - onehot(t)) / B   (B, n);   dpsi = G V (B, d);   dV = G^T psi (n, d) (dense)

    The batch is processed in row chunks of at most ``max_chunk_elems`` logits (bounded memory: one
    reused buffer); softmax and its gradient are one fused in-place kernel over each chunk.
    """
    B, n = psi.shape[0], V.shape[0]
    rows = max(1, min(B, max_chunk_elems // max(n, 1)))
    buf = np.empty((rows, n), dtype=np.result_type(psi, V))
    dpsi = np.empty_like(psi)
    dV = np.empty_like(V)
    tmp = np.empty_like(V) if rows < B else None
    total = 0.0
    for s in range(0, B, rows):
        e = min(B, s + rows)
        Z = buf[:e - s]
        np.matmul(psi[s:e], V.T, out=Z)
        losses = kernels.softmax_xent_inplace(Z, t[s:e], 1.0 / B)  # Z <- G
        total += float(losses.sum())
        np.matmul(Z, V, out=dpsi[s:e])
        if s == 0:
            np.matmul(Z.T, psi[s:e], out=dV)
        else:
            np.matmul(Z.T, psi[s:e], out=tmp)
            dV += tmp
    return total / B, dpsi, dV


def sampled_softmax_loss(psi: np.ndarray, V: np.ndarray, t: np.ndarray, cand: np.ndarray,
                         logq_t: np.ndarray, logq_c: np.ndarray, mask: np.ndarray | None = None
                         ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Sampled softmax over the positive and candidates shared by the batch, with logQ correction.

    s_b  = psi_b . V_{t_b} - logQ(t_b)                                    (B,)
    z_bk = psi_b . V_{C_k} - logQ(C_k), or -inf where C_k == t_b (accidental hit) or ~mask_bk   (B, N)
    L    = (1/B) sum_b [ logsumexp(s_b, z_b.) - s_b ]
    P    = softmax over [s_b, z_b.];  ds_b = (P_b0 - 1)/B;  dz_bk = P_bk / B
    dpsi = ds * V_t + dz V_C  (B, d);   dV_t = ds * psi (B, d) rows t;   dV_C = dz^T psi (N, d) rows C

    Returns (loss, dpsi, dVt, dVc) with dVt (B, d) for rows ``t`` and dVc (N, d) for rows ``cand``.
    """
    Vt, Vc = V[t], V[cand]
    s = np.einsum("bd,bd->b", psi, Vt) - logq_t.astype(psi.dtype)
    z = psi @ Vc.T - logq_c.astype(psi.dtype)[None, :]
    dead = cand[None, :] == t[:, None]
    if mask is not None:
        dead |= ~mask
    z[dead] = -np.inf
    m = np.maximum(s, z.max(axis=1))
    es = np.exp(s - m)
    ez = np.exp(z - m[:, None])
    tot = es + ez.sum(axis=1)
    B = psi.shape[0]
    loss = float(np.mean(np.log(tot) + m - s))
    ds = (es / tot - 1.0) / B
    dz = ez / tot[:, None] / B
    dpsi = ds[:, None] * Vt + dz @ Vc
    return loss, dpsi, ds[:, None] * psi, dz.T @ psi


def positives_only_loss(psi: np.ndarray, V: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Logistic loss on positive pairs only (no negatives at all).

    s_b = psi_b . V_{t_b};   L = (1/B) sum_b softplus(-s_b)
    ds_b = -sigmoid(-s_b) / B;   dpsi = ds * V_t (B, d);   dV_t = ds * psi (B, d) rows t
    """
    Vt = V[t]
    s = np.einsum("bd,bd->b", psi, Vt)
    B = psi.shape[0]
    loss = float(np.mean(np.logaddexp(0.0, -s)))
    ds = -0.5 * (1.0 - np.tanh(0.5 * s)) / B  # -sigmoid(-s)/B, stable
    return loss, ds[:, None] * Vt, ds[:, None] * psi


def gravity_loss(psi: np.ndarray, V: np.ndarray, g: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Gravity: g * mean_b psi_b^T (V^T V / n) psi_b, through the (d, d) Gram matrix C = V^T V.

    L = (g / (B n)) sum_b psi_b^T C psi_b
    dpsi = (2 g / (B n)) psi C (B, d);   dV = (2 g / (B n)) V (psi^T psi) (n, d) (dense)
    """
    B, n = psi.shape[0], V.shape[0]
    C = V.T @ V
    c = g / (B * n)
    loss = float(c * np.einsum("bd,de,be->", psi, C, psi))
    return loss, (2 * c) * (psi @ C), (2 * c) * (V @ (psi.T @ psi))
