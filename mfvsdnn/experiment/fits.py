"""Growth exponents: a cost curve ``t = a * n^b`` fitted on log-log axes, with its R².

Used by ``scale`` (cost against synthetic corpus size) and ``growth`` (training cost on subsamples
of the user's own data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class GrowthFit:
    """``t = coef * n^exponent`` fitted on log-log axes."""

    exponent: float
    coef: float
    r2: float
    points: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


# log t = log a + b log n: ordinary least squares on (log n, log t), shapes (m,), (m,)
def fit_growth(sizes: np.ndarray, values: np.ndarray) -> GrowthFit:
    """Fit the growth exponent of a cost curve; non-positive or non-finite values are ignored.

    Parameters
    ----------
    sizes : (m,) corpus sizes.  values : (m,) measured costs.

    Returns
    -------
    GrowthFit; exponent nan when fewer than two usable points remain.
    """
    x, y = np.asarray(sizes, dtype=np.float64), np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return GrowthFit(float("nan"), float("nan"), float("nan"), int(ok.sum()))
    lx, ly = np.log(x[ok]), np.log(y[ok])
    b, la = np.polyfit(lx, ly, 1)
    resid = ly - (la + b * lx)
    ss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss if ss > 0 else 1.0
    return GrowthFit(float(b), float(math.exp(la)), r2, int(ok.sum()))
