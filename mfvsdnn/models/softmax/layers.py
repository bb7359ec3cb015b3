"""The tower's layers, forward and backward side by side: dense (H W + b) and ReLU."""

from __future__ import annotations

import numpy as np


# dense layer:  Z = H W + b          H (B, i), W (i, o), b (o,) -> Z (B, o)
def dense_forward(H: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return H @ W + b


# backward:     dH = dZ W^T (B, i);  dW = H^T dZ (i, o);  db = sum_b dZ (o,)
def dense_backward(dZ: np.ndarray, H: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return dZ @ W.T, H.T @ dZ, dZ.sum(axis=0)


# relu:         H = max(Z, 0);   backward dZ = dH * [Z > 0]
def relu_forward(Z: np.ndarray) -> np.ndarray:
    return np.maximum(Z, 0)


def relu_backward(dH: np.ndarray, Z: np.ndarray) -> np.ndarray:
    return dH * (Z > 0)
