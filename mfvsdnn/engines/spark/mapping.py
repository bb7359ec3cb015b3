"""Our WALS parameters in Spark MLlib's implicit ALS terms (pure; imports nothing from pyspark).

Spark MLlib's implicit ALS (``pyspark.ml.recommendation.ALS(implicitPrefs=True)``) minimises, over ALL
(user, item) pairs (unobserved ones have p = 0, r = 0),

    sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + regParam (sum_u n_u ||x_u||^2 + sum_i n_i ||y_i||^2)

with confidence c = 1 + alpha r and n_u, n_i the number of positives of the row (ALS-WR scaling; in
``computeFactors`` of Spark's ALS.scala the solve uses ``numExplicits * regParam`` in implicit mode
too, and ``tests/test_spark.py`` checks it on the installed Spark). Our objective

    sum_Omega (1 - u.v)^2 + w0 sum_{not Omega} (u.v)^2 + reg (||U||^2 + ||V||^2)

divided by w0 has confidence 1/w0 on observed pairs and 1 on unobserved ones, so

    alpha = 1/w0 - 1                      (exact; w0 = 0 and w0 > 1 cannot be expressed)
    reg/w0 = regParam * n_u               (per row: no single regParam matches every row)

Row by row, Spark solves (V^T V + alpha sum_Omega v v^T + regParam n_u I) x = (1 + alpha) sum_Omega v,
which is our row solve with reg replaced by w0 * regParam * n_u. The default mapping
:func:`spark_reg_param` picks regParam = reg (n_users + n_items) / (2 w0 nnz), so the mean effective
regularisation over the trained user and item rows equals ``reg``; rows with more positives than the
mean are regularised more than locally, rows with fewer less. ``model.json`` records the mapping and
the spread of the effective per-row reg (:func:`lambda_relation`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ...core.errors import ModelError


def spark_alpha(w0: float) -> float:
    """Spark's ``alpha`` for our unobserved weight: confidence 1 + alpha = 1/w0 on observed pairs.

    Refuses w0 <= 0 (alpha would be infinite: Spark always weights unobserved pairs by 1, so an
    objective that ignores them cannot be written with a finite alpha) and w0 > 1 (alpha < 0, which
    Spark rejects: observed pairs would weigh less than unobserved ones).
    """
    w0 = float(w0)
    if not np.isfinite(w0) or w0 <= 0.0:
        raise ModelError(
            f"--w0 {w0:g} cannot run on --engine spark: Spark's implicit ALS weights every unobserved pair "
            "by 1 and observed pairs by 1 + alpha, so matching our w0 needs alpha = 1/w0 - 1, which is "
            "infinite at w0 = 0. Use --engine local for w0 = 0 (the folding demonstration) or a w0 > 0")
    if w0 > 1.0:
        raise ModelError(
            f"--w0 {w0:g} cannot run on --engine spark: alpha = 1/w0 - 1 = {1.0 / w0 - 1.0:g} would be "
            "negative (observed pairs weighted below unobserved ones), which Spark's ALS rejects; "
            "use 0 < w0 <= 1")
    return 1.0 / w0 - 1.0


# regParam = reg (n_users + n_items) / (2 w0 nnz)  =  reg / (w0 * mean positives per trained row)
def spark_reg_param(reg: float, w0: float, n_user_rows: int, n_item_rows: int, nnz: int) -> float:
    """Spark's ``regParam`` so that the mean effective per-row reg over trained rows equals ``reg``.

    Spark regularises a row with n positives by regParam * n (in Spark's units, i.e. ours / w0), so
    the effective reg of that row in our objective is w0 * regParam * n. Averaging over the
    ``n_user_rows`` users and ``n_item_rows`` items with positives (their counts sum to 2 nnz) and
    setting the mean to ``reg`` gives the formula above.
    """
    spark_alpha(w0)
    if nnz <= 0 or n_user_rows + n_item_rows <= 0:
        raise ModelError("the training matrix has no interactions; nothing to learn")
    if not reg > 0:
        raise ModelError(f"--reg must be > 0, got {reg!r}")
    return float(reg) * (n_user_rows + n_item_rows) / (2.0 * float(w0) * nnz)


def effective_reg(reg_param: float, w0: float, counts: np.ndarray) -> np.ndarray:
    """Effective reg of each row in our objective's units: w0 * regParam * n (n = the row's positives)."""
    return float(w0) * float(reg_param) * np.asarray(counts, dtype=np.float64)


def als_params(params: dict[str, Any], seed: int, train: sp.csr_matrix, reg_param: float | None = None) -> dict:
    """Keyword arguments of ``pyspark.ml.recommendation.ALS`` for WALS ``params`` on ``train``.

    Parameters
    ----------
    params : WALS hyper-parameters (``factors``, ``w0``, ``reg``, ``iterations``).
    seed : our seed (Spark's initialisation is its own: the factors differ from the local ones).
    train : csr (n_users, n_items), the training positives.
    reg_param : explicit ``regParam`` (overrides :func:`spark_reg_param`).
    """
    train = sp.csr_matrix(train)
    n_u = int(np.count_nonzero(np.diff(train.indptr)))
    n_i = int(np.count_nonzero(np.bincount(train.indices, minlength=train.shape[1])))
    alpha = spark_alpha(params["w0"])
    rp = spark_reg_param(params["reg"], params["w0"], n_u, n_i, int(train.nnz)) if reg_param is None \
        else float(reg_param)
    if not rp > 0:
        raise ModelError(f"--spark-reg-param must be > 0, got {reg_param!r}")
    return {"implicitPrefs": True, "alpha": alpha, "rank": int(params["factors"]),
            "maxIter": int(params["iterations"]), "regParam": rp, "seed": int(seed), "nonnegative": False}


def lambda_relation(params: dict[str, Any], spark_params: dict, train: sp.csr_matrix,
                    reg_param_given: bool) -> dict:
    """What model.json records about the regularisation: the formula and the effective per-row spread."""
    train = sp.csr_matrix(train)
    nu = np.diff(train.indptr)
    ni = np.bincount(train.indices, minlength=train.shape[1])
    nu, ni = nu[nu > 0], ni[ni > 0]
    w0, rp = float(params["w0"]), float(spark_params["regParam"])

    def spread(c: np.ndarray) -> dict:
        e = effective_reg(rp, w0, c)
        return {"min": float(e.min()), "median": float(np.median(e)), "mean": float(e.mean()),
                "max": float(e.max())} if len(e) else {}

    return {
        "exact": False,
        "alpha": "alpha = 1/w0 - 1 (exact for binary data)",
        "regParam": ("given by --spark-reg-param" if reg_param_given else
                     "regParam = reg * (n_users + n_items) / (2 * w0 * nnz): the mean effective per-row reg "
                     "over trained rows equals reg"),
        "effective_reg": "Spark regularises each row by regParam * n (n = its positives, ALS-WR); in our "
                         "objective that is reg_row = w0 * regParam * n, not one constant reg",
        "reg": float(params["reg"]), "w0": w0, "regParam_value": rp,
        "effective_reg_users": spread(nu), "effective_reg_items": spread(ni),
    }
