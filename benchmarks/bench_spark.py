"""Local numba WALS against Spark MLlib implicit ALS (``--engine spark``) on one synthetic log and split.

The log is generated directly with numpy (MovieLens-20M shape by default: 20M interactions, 138k users,
27k items; grouped users and items with Zipf popularity inside each group), then split by the shared
deterministic split. Both engines train with the same WALS parameters (Spark through the documented
mapping: alpha = 1/w0 - 1, regParam = reg (users + items) / (2 w0 nnz)); recall@20 is measured by the
same evaluator on the same warm test users.

Reported per engine: seconds per iteration (local: median of the per-iteration times; Spark: the
marginal time (T(maxIter=N) - T(maxIter=1)) / (N - 1), which leaves out Spark's block building),
total fit seconds, peak resident memory of this process plus its children (the JVM), and recall@20.

    .venv/bin/python benchmarks/bench_spark.py                           # 20M interactions
    .venv/bin/python benchmarks/bench_spark.py --interactions 2000000    # a quick look
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import json
import threading
import time

import numpy as np
import psutil
import scipy.sparse as sp

from mfvsdnn.engines.spark import mapping, session, train as spark_train
from mfvsdnn.data import Dataset
from mfvsdnn.evaluation.evaluator import evaluate_population, item_popularity
from mfvsdnn.evaluation.populations import populations
from mfvsdnn.core.topk import warm_up
from mfvsdnn.models.wals import WALS
from mfvsdnn.data.split import SplitConfig, make_split


class PeakRSS:
    """Peak resident memory (bytes) of this process and all its children, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for c in me.children(recursive=True):
            try:
                total += c.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.2)

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def synthetic(n_inter: int, n_users: int, n_items: int, groups: int, cross: float, seed: int) -> Dataset:
    """A grouped log with about ``n_inter`` unique positives, generated in O(n_inter) with numpy."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, groups, n_users)
    item_group = rng.integers(0, groups, n_items)
    members = [np.flatnonzero(item_group == k) for k in range(groups)]
    cdfs = [np.cumsum(1.0 / np.arange(1, len(m) + 1)) for m in members]

    def draw(mean: float) -> np.ndarray:  # unique keys user * n_items + item
        counts = np.minimum(np.maximum(3, rng.geometric(1.0 / mean, n_users)), n_items // (2 * groups))
        rows = np.repeat(np.arange(n_users), counts)
        # own group with prob 1 - cross, else a random group; inside it, Zipf(1) popularity
        g = np.where(rng.random(len(rows)) < cross, rng.integers(0, groups, len(rows)), user_group[rows])
        cols = np.empty(len(rows), dtype=np.int64)
        for k in range(groups):
            sel = np.flatnonzero(g == k)
            cols[sel] = members[k][np.searchsorted(cdfs[k] / cdfs[k][-1], rng.random(len(sel)))]
        return np.unique(rows * n_items + cols)

    mean = n_inter / n_users
    key = draw(mean)
    for _ in range(4):  # duplicates of popular items collapse: draw again with a larger mean
        if len(key) >= 0.97 * n_inter:
            break
        mean *= n_inter / len(key)
        key = draw(mean)
    r, c = (key // n_items).astype(np.int32), (key % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_users), out=indptr[1:])
    matrix = sp.csr_matrix((np.ones(len(key), np.float32), c, indptr), shape=(n_users, n_items))
    names = [f"g{k}" for k in range(groups)]
    return Dataset(matrix=matrix, user_ids=np.array([f"u{i:07d}" for i in range(n_users)], dtype=object),
                   item_ids=np.array([f"i{i:07d}" for i in range(n_items)], dtype=object),
                   item_groups=item_group.astype(np.int32), user_groups=user_group.astype(np.int32),
                   group_names=names, source="<bench_spark>", file_hash=f"bench:{n_inter}:{seed}")


def recall20(model, split, max_users: int, seed: int) -> float:
    pop = populations(split)[0]
    if len(pop.users) > max_users:  # a seeded sample of warm test users, the same for both engines
        keep = np.sort(np.random.default_rng(seed).choice(len(pop.users), max_users, replace=False))
        pop.users, pop.model_users = pop.users[keep], pop.model_users[keep]
        pop.histories, pop.exclude, pop.targets = pop.histories[keep], pop.exclude[keep], pop.targets[keep]
        pop.user_group = pop.user_group[keep] if pop.user_group is not None else None
        pop.features = None
    ev = evaluate_population(model, pop, (20,), item_popularity(split), split.dataset.item_groups)
    return float(np.nanmean(ev.per_user["recall", 20]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=138_000)
    ap.add_argument("--items", type=int, default=27_000)
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--w0", type=float, default=0.1)
    ap.add_argument("--reg", type=float, default=1.0)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--eval-users", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-spark-baseline", action="store_true",
                    help="do not fit maxIter=1 (then Spark's per-iteration time is total / iterations)")
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    # scale users and items with the log when a smaller size is asked for (same mean per user)
    frac = min(1.0, a.interactions / 20_000_000)
    n_users, n_items = max(1000, int(a.users * frac)), max(500, int(a.items * frac ** 0.5))

    t0 = time.perf_counter()
    ds = synthetic(a.interactions, n_users, n_items, a.groups, 0.05, a.seed)
    split = make_split(ds, SplitConfig(seed=a.seed))
    train = split.train_set()
    print(f"data: {ds.n_users:,} users, {ds.n_items:,} items, {ds.nnz:,} interactions "
          f"({train.matrix.nnz:,} in training), generated and split in {time.perf_counter() - t0:.1f} s", flush=True)
    params = {"factors": a.factors, "w0": a.w0, "reg": a.reg, "iterations": a.iterations}
    out: dict = {"data": {"users": ds.n_users, "items": ds.n_items, "interactions": ds.nnz,
                          "train_interactions": int(train.matrix.nnz)}, "params": params, "master": a.master}

    warm_up()
    WALS(factors=4, iterations=1).fit(split.train_set(), np.random.default_rng(0))  # numba compile/cache load
    with PeakRSS() as mem:
        base = mem.peak
        local = WALS(**params).fit(train, np.random.default_rng(a.seed))
    secs = [h["seconds"] for h in local.history_]
    out["local"] = {"seconds_per_iteration": float(np.median(secs)), "fit_seconds": local.train_seconds_,
                    "peak_rss_bytes": mem.peak, "peak_rss_above_start_bytes": mem.peak - base,
                    "recall@20": recall20(local, split, a.eval_users, a.seed)}
    print("local:", json.dumps(out["local"]), flush=True)

    conf = {"spark.driver.memory": a.driver_memory}
    with PeakRSS() as mem:
        base = mem.peak
        with session.spark_session(a.master, conf) as spark:
            ap_ = mapping.als_params(params, a.seed, train.matrix)
            timings: dict = {}
            U, V, t_n = spark_train.fit_als(spark, train.matrix, ap_, timings)
            t_1 = None
            if not a.skip_spark_baseline and a.iterations > 1:
                _, _, t_1 = spark_train.fit_als(spark, train.matrix, {**ap_, "maxIter": 1})
    per_it = (t_n - t_1) / (a.iterations - 1) if t_1 is not None else t_n / a.iterations
    model = WALS.from_factors(params, U, V, train, {"train_seconds": t_n})
    out["spark"] = {"seconds_per_iteration": per_it, "fit_seconds": t_n, "fit_seconds_maxIter1": t_1,
                    **timings, "peak_rss_bytes_incl_jvm": mem.peak, "peak_rss_above_start_bytes": mem.peak - base,
                    "als_params": ap_, "recall@20": recall20(model, split, a.eval_users, a.seed)}
    print("spark:", json.dumps(out["spark"]), flush=True)
    lo, sk = out["local"], out["spark"]
    out["ratios"] = {"spark_over_local_seconds_per_iteration": sk["seconds_per_iteration"] / lo["seconds_per_iteration"],
                     "spark_over_local_peak_rss": sk["peak_rss_bytes_incl_jvm"] / lo["peak_rss_bytes"],
                     "recall@20_spark_minus_local": sk["recall@20"] - lo["recall@20"]}
    print(f"\n{'':28}{'local numba':>14}{'Spark ' + a.master:>18}")
    print(f"{'seconds / iteration':28}{lo['seconds_per_iteration']:>14.2f}{sk['seconds_per_iteration']:>18.2f}")
    print(f"{'fit seconds':28}{lo['fit_seconds']:>14.1f}{sk['fit_seconds']:>18.1f}")
    print(f"{'peak RSS (GiB, incl. JVM)':28}{lo['peak_rss_bytes'] / 2**30:>14.2f}{sk['peak_rss_bytes_incl_jvm'] / 2**30:>18.2f}")
    print(f"{'recall@20 (warm test)':28}{lo['recall@20']:>14.4f}{sk['recall@20']:>18.4f}")
    print(f"Spark / local time per iteration: {out['ratios']['spark_over_local_seconds_per_iteration']:.1f}x; "
          f"memory: {out['ratios']['spark_over_local_peak_rss']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=float)


if __name__ == "__main__":
    main()
