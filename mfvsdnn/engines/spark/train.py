"""Training WALS as Spark MLlib implicit ALS, as the experiment runner's ``fit``.

:func:`fit_on_spark` returns a :class:`SparkFit`: a function with the runner's ``fit`` signature
``(spec, split, seed, progress, save_to) -> FittedModel`` that trains kind "wals" on Spark (the
parameter mapping of :mod:`.mapping`) and delegates every other kind to ``runner.fit_model`` (trained
here, on the driver). The Spark-trained model is the local WALS model built by
:meth:`mfvsdnn.models.wals.WALS.from_factors` from Spark's factors, so fold-in, the cold-start feature
heuristic, recommend and compare work on it unchanged; its run records ``engine: "spark"`` and a
``spark`` entry (master, ALS parameters, reader, the lambda relation, timings) in model.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...core.progress import ProgressFn, no_progress
from ...core.seeding import seed_sequence
from ...data.split import Split
from ...experiment.runner import FittedModel, fit_model, validation_recall
from ...experiment.spec import ModelSpec
from ...models.store import save_run
from ...models.wals import WALS, objective
from .mapping import als_params, lambda_relation, spark_alpha
from .session import SparkError, first_line, session_info, session_or

OBJECTIVE_NOTE = ("objective = our WALS objective at Spark's final factors (Spark reports none per iteration); "
                  "history seconds are fit_seconds / iterations")


def ratings_frame(spark: Any, train: sp.csr_matrix) -> Any:
    """The training positives as a Spark DataFrame (user int, item int, rating float = 1).

    Sent through the driver as one string of item indices per user (no Arrow needed), exploded in Spark.
    """
    from pyspark.sql import functions as sql

    m = sp.csr_matrix(train)
    ptr, idx = m.indptr, m.indices
    users = np.flatnonzero(np.diff(ptr) > 0)
    rows = [(int(u), ",".join(map(str, idx[ptr[u]:ptr[u + 1]].tolist()))) for u in users]
    # a local list (not an RDD): rows are unpickled in the JVM, so no Python worker has to start
    df = spark.createDataFrame(rows, "user int, items string", verifySchema=False)
    return df.select("user", sql.explode(sql.split("items", ",")).alias("item")) \
        .select("user", sql.col("item").cast("int").alias("item"), sql.lit(1.0).cast("float").alias("rating"))


def _factors(df: Any, n: int, d: int) -> np.ndarray:
    """Spark's (id, features) factor frame -> (n, d) float32; rows Spark never saw stay 0."""
    out = np.zeros((n, d), dtype=np.float32)
    for row in df.toLocalIterator():
        out[row[0]] = row[1]
    return out


def fit_als(spark: Any, train: sp.csr_matrix, params: dict,
            timings: dict | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit Spark's implicit ALS with ``params`` (:func:`als_params`) on ``train``.

    ``numBlocks`` in ``params`` sets numUserBlocks = numItemBlocks (default: the default parallelism,
    at least 2). ``timings`` (if given) receives the seconds spent moving data in and out of Spark.

    Returns (user factors (n_users, d), item factors (n_items, d), fit seconds). Users and items with
    no training positive get zero rows (so does the local WALS: their row solve has a zero right side).
    """
    from pyspark.ml.recommendation import ALS

    timings = timings if timings is not None else {}
    t_in = time.perf_counter()
    ratings = ratings_frame(spark, train).cache()
    ratings.count()  # materialise: the fit time below is ALS only
    params = dict(params)
    blocks = params.pop("numBlocks", None) or max(2, spark.sparkContext.defaultParallelism)
    als = ALS(userCol="user", itemCol="item", ratingCol="rating", coldStartStrategy="nan",
              numUserBlocks=blocks, numItemBlocks=blocks, **params)
    timings["transfer_in_seconds"] = time.perf_counter() - t_in
    t0 = time.perf_counter()
    try:
        model = als.fit(ratings)
        model.userFactors.count()  # force the last iteration
    except Exception as e:
        raise SparkError(f"Spark ALS failed: {first_line(e)}") from None
    secs = time.perf_counter() - t0
    n_users, n_items = train.shape
    d = int(params["rank"])
    t_out = time.perf_counter()
    U = _factors(model.userFactors, n_users, d)
    V = _factors(model.itemFactors, n_items, d)
    timings["transfer_out_seconds"] = time.perf_counter() - t_out
    timings["blocks"] = blocks
    ratings.unpersist()
    return U, V, secs


def als_seed(seed: int, repeat: int = 0) -> int:
    """Spark ALS's seed: the first word of the run's WALS fit stream (``core.seeding``; ``repeat`` = the
    model seed of ``--repeats``), so the seeding rule holds; Spark's own generator initialises the factors,
    which therefore differ from the local ones."""
    return int(seed_sequence(seed, "fit", "wals", repeat).generate_state(1, np.uint32)[0])


def check_models(specs: list[ModelSpec]) -> None:
    """Refuse, before Spark starts, WALS parameters that Spark's ALS cannot express (w0 outside (0, 1])."""
    for s in specs:
        if s.kind == "wals" and s.run_dir is None:
            spark_alpha(WALS(**s.params).get_params()["w0"])


def train_wals(spark: Any, params: dict[str, Any], split: Split, seed: int, reg_param: float | None = None,
               num_blocks: int | None = None, progress: ProgressFn = no_progress, repeat: int = 0
               ) -> tuple[WALS, dict]:
    """Fit WALS ``params`` on the split's training set with Spark ALS (``repeat``: the model seed).

    Returns (the WALS model built from Spark's factors, the ``spark`` entry of its model.json without
    the reader and configuration, which the caller knows).
    """
    t_start = time.perf_counter()
    wp = WALS(**params).get_params()  # our validation first (w0 in [0, 1), reg > 0, ...)
    spark_alpha(wp["w0"])
    train = split.train_set()
    ap = als_params(wp, als_seed(seed, repeat), train.matrix, reg_param)
    progress(0, 2, {})
    timings: dict = {}
    U, V, fit_secs = fit_als(spark, train.matrix, {**ap, "numBlocks": num_blocks}, timings)
    progress(1, 2, {})
    R = sp.csr_matrix(train.matrix)
    f = objective(R.indptr.astype(np.int64), R.indices.astype(np.int32), U, V, wp["w0"], wp["reg"])
    n_it = wp["iterations"]
    # Spark does not report per-iteration times: each entry carries the mean (fit seconds / iterations)
    history = [{"iteration": i, "seconds": fit_secs / n_it, "seconds_is_mean": 1.0} for i in range(1, n_it + 1)]
    history[-1]["objective"] = f
    model = WALS.from_factors(wp, U, V, train, {"train_seconds": fit_secs, "history": history})
    meta = {**session_info(spark), "als_params": ap,
            "lambda_relation": lambda_relation(wp, ap, train.matrix, reg_param is not None),
            "fit_seconds": fit_secs, **timings, "total_seconds": time.perf_counter() - t_start,
            "objective_note": OBJECTIVE_NOTE}
    progress(2, 2, {})
    return model, meta


@dataclass
class SparkFit:
    """The runner's ``fit`` for the Spark engine: kind "wals" on Spark ALS, every other kind locally.

    spark : an open SparkSession (left running), or None to start one per WALS fit from ``master`` and
        ``conf``. reader : the route that read the split ("pandas" or "spark"), recorded in model.json.
    reg_param : explicit Spark ``regParam`` instead of the mapping. num_blocks : ALS numUserBlocks =
        numItemBlocks (default: Spark's default parallelism, at least 2).
    meta : filled as models are fitted: model name -> the ``spark`` entry written to its model.json.
    """

    spark: Any = None
    master: str = "local[*]"
    conf: dict[str, str] | None = None
    reader: str = "pandas"
    reg_param: float | None = None
    num_blocks: int | None = None
    meta: dict[str, dict] = field(default_factory=dict)

    def __call__(self, spec: ModelSpec, split: Split, seed: int, progress: ProgressFn = no_progress,
                 save_to: Path | None = None, repeat: int = 0) -> FittedModel:
        # w0 = 0 (the folding contrast compare trains) has no Spark ALS equivalent (alpha would be
        # infinite): such a model is trained locally, and compare's notes list it as trained locally
        if spec.kind != "wals" or WALS(**spec.params).w0 == 0.0:
            return fit_model(spec, split, seed, progress, save_to, repeat=repeat)
        with session_or(self.spark, self.master, self.conf) as s:
            model, meta = train_wals(s, spec.params, split, seed, self.reg_param, self.num_blocks, progress,
                                     repeat=repeat)
        meta = {**meta, "reader": self.reader, "conf": dict(self.conf or {})}
        recall = validation_recall(model, split, seed)
        run_dir = None
        if save_to is not None:
            run_dir = save_run(save_to, model, split, seed,
                               extra={"valid_recall@20": recall, "engine": "spark", "spark": meta})
        self.meta[spec.label] = meta
        return FittedModel(spec.label, model, seed, run_dir, True, recall)


def fit_on_spark(spark: Any = None, *, master: str = "local[*]", conf: dict[str, str] | None = None,
                 reader: str = "pandas", reg_param: float | None = None, num_blocks: int | None = None) -> SparkFit:
    """A runner ``fit`` that trains WALS on Spark (see :class:`SparkFit`)."""
    return SparkFit(spark, master, conf, reader, reg_param, num_blocks)
