"""``mfvsdnn scale``: training and serving cost against corpus size, with fitted growth exponents.

On grouped synthetic data of growing size (items from 1k to 100k by default, users and interactions
growing in proportion), it measures

- WALS: seconds per iteration (the median over ``wals_iterations`` iterations);
- softmax DNN, full softmax and sampled softmax (``negatives`` uniform negatives): seconds per epoch,
  measured on a seeded subsample of training users and scaled by examples-per-epoch / examples-timed
  (training cost is linear in the number of examples at a fixed catalogue; this keeps the full softmax
  at 100k items affordable). The subsample size is recorded with every point;
- the hashing point: the same sampled softmax with both item tables hashed into
  n_items / ``items_per_bucket`` rows (two hash functions): seconds per epoch and model bytes
  against the unhashed model's;
- serving: single-query latency p50 of each model (query embedding + scoring every item + top-k), and
  for WALS the precompute-and-store alternative: cache build time and bytes, and the lookup latency
  of one user's precomputed candidates;
- with ``--index hnsw`` (or ivf): the single-query search latency p50 of exact brute force and of
  the index over the same WALS item vectors and queries, the index's recall@20 against exact, and its
  build time and bytes (an approximate index should grow far below linearly).

Each curve's growth exponent b in ``t = a * n_items^b`` is fitted by least squares on log-log axes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import MfvsdnnError
from ..core.memory import check_memory
from ..core.progress import ProgressFn, no_progress
from ..core.seeding import generator
from ..data import ColumnSpec, dataset_from_frame
from ..data.split import SplitConfig, TrainSet, make_split
from ..data.synthetic import SyntheticConfig, generate
from ..evaluation.cost import model_bytes, serving_cost
from ..models import registry
from ..models.params import MAX_DIM, MAX_ITERATIONS, MAX_NEGATIVES, MAX_SEED, as_float, as_int
from . import runner
from .fits import fit_growth
from .growth import fixed_work
from .spec import ModelSpec

CURVES = {
    "wals_seconds_per_iteration": "WALS, seconds per iteration",
    "softmax_full_seconds_per_epoch": "softmax (full), seconds per epoch",
    "softmax_sampled_seconds_per_epoch": "softmax (sampled), seconds per epoch",
    "softmax_hashed_seconds_per_epoch": "softmax (sampled, item tables hashed), seconds per epoch",
    "wals_query_ms_p50": "WALS serving (score all + top-k), ms per query",
    "wals_cache_lookup_ms_p50": "WALS with candidate cache, ms per query",
    "softmax_query_ms_p50": "softmax serving (tower + score all + top-k), ms per query",
    "exact_search_ms_p50": "exact search (WALS vectors, score all + top-k), ms per query",
    "index_search_ms_p50": "approximate index search (WALS vectors), ms per query",
    "index_build_seconds": "approximate index build, seconds",
}


MIN_SIZE = 100                   # --sizes: smallest catalogue
MAX_SIZE = 10_000_000            # --sizes: largest catalogue
MAX_USERS_PER_ITEM = 1000.0
MAX_MEAN_INTERACTIONS = 100_000.0
MAX_EXAMPLES_TIMED = 100_000_000
MAX_LATENCY_QUERIES = 1_000_000


@dataclass(frozen=True)
class ScaleConfig:
    """What ``mfvsdnn scale`` measures; every field is recorded in scale.json."""

    sizes: tuple[int, ...] = (1000, 3000, 10000, 30000, 100000)
    users_per_item: float = 2.0
    mean_interactions: float = 20.0
    groups: int = 4
    factors: int = 32
    wals_iterations: int = 3
    negatives: int = 50
    items_per_bucket: int = 8
    examples_timed: int = 60_000
    full_flops_timed: float = 3e10
    latency_queries: int = 100
    seed: int = 0
    index: str = "exact"

    def __post_init__(self) -> None:
        """Check every setting before anything is generated (one message naming the option)."""
        sizes = tuple(as_int("--sizes values", s, MIN_SIZE, MAX_SIZE) for s in self.sizes)
        if len(set(sizes)) < 2:
            raise MfvsdnnError(f"--sizes needs at least two different catalogue sizes, got {list(self.sizes)}")
        object.__setattr__(self, "sizes", tuple(sorted(sizes)))
        checks = {
            "users_per_item": as_float("--users-per-item", self.users_per_item, 0.0, MAX_USERS_PER_ITEM,
                                       lo_open=True),
            "mean_interactions": as_float("--mean-interactions", self.mean_interactions, 3.0,
                                          MAX_MEAN_INTERACTIONS),
            "groups": as_int("groups", self.groups, 1, MIN_SIZE),
            "factors": as_int("--factors", self.factors, 1, MAX_DIM),
            "wals_iterations": as_int("wals_iterations", self.wals_iterations, 1, MAX_ITERATIONS),
            "negatives": as_int("--negatives", self.negatives, 1, MAX_NEGATIVES),
            "items_per_bucket": as_int("items_per_bucket", self.items_per_bucket, 1, MAX_SIZE),
            "examples_timed": as_int("--examples-timed", self.examples_timed, 1, MAX_EXAMPLES_TIMED),
            "full_flops_timed": as_float("full_flops_timed", self.full_flops_timed, 0.0, lo_open=True),
            "latency_queries": as_int("--latency-queries", self.latency_queries, 1, MAX_LATENCY_QUERIES),
            "seed": as_int("--seed", self.seed, 0, MAX_SEED),
        }
        for name, value in checks.items():
            object.__setattr__(self, name, value)
        from ..models.index import check_kind

        check_kind(self.index)

    def largest(self) -> tuple[int, int, int]:
        """(users, items, interactions) of the largest size (interactions: users x mean, an upper
        bound of what the generator draws)."""
        n_items = max(self.sizes)
        n_users = max(50, int(round(self.users_per_item * n_items)))
        return n_users, n_items, int(n_users * min(self.mean_interactions, n_items))

    def check_memory(self) -> None:
        """Refuse (ModelError) when the largest size's data and models would not fit in memory: the
        generated rows (200 bytes each while the frame exists; measured: 151 at 400k rows), WALS, and the DNN with the full
        softmax (its largest configuration)."""
        n_users, n_items, nnz = self.largest()
        wals = registry.get("wals")(factors=self.factors, iterations=self.wals_iterations)
        full = registry.get("softmax")(dim=self.factors, hidden=(64,), negatives="all", epochs=1, patience=0)
        need = 200 * nnz + max(wals.estimate_bytes(n_users, n_items, nnz, {}),
                               full.estimate_bytes(n_users, n_items, nnz, {}))
        check_memory(f"scale at {n_items:,} items ({n_users:,} users, up to {nnz:,} interactions)", need,
                     "lower the largest --sizes value, --users-per-item, --mean-interactions or --factors")

def _subsample(train: TrainSet, max_examples: int, rng: np.random.Generator) -> tuple[TrainSet, int]:
    """Seeded users whose training interactions total about ``max_examples``; no validation."""
    m = train.matrix
    users = rng.permutation(train.users)
    cum = np.cumsum(np.diff(m.indptr)[users])
    take = users[: max(1, int(np.searchsorted(cum, max_examples, side="right")))]
    mask = np.zeros(m.shape[0], dtype=np.float32)
    mask[take] = 1.0
    sub = sp.csr_matrix(sp.diags(mask) @ m)
    sub.eliminate_zeros()
    return TrainSet(matrix=sub, users=np.sort(take), features=train.features,
                    cardinalities=train.cardinalities, valid=None), int(sub.nnz)


def one_epoch_softmax(params: dict) -> Any:
    """An unfitted softmax DNN of ``params`` that trains exactly one epoch: no early stopping and no
    step budget (the default budget, ~50 updates per item, would run a 100k-item catalogue's timing fit
    for ~20k steps however small the subsample)."""
    return registry.get("softmax")(**fixed_work("softmax", params, 1)[0])


def _softmax_epoch_seconds(params: dict, train: TrainSet, budget: int, seed: int) -> tuple[float, int]:
    sub, n = _subsample(train, budget, generator(seed, "scale", "subsample"))
    model = one_epoch_softmax(params)
    model.fit(sub, generator(seed, "fit", "softmax", 0))
    secs = float(model.history_[-1]["seconds"])
    return secs * train.matrix.nnz / max(n, 1), n


def measure_size(n_items: int, cfg: ScaleConfig) -> dict:
    """Generate data for one catalogue size and measure every cost there."""
    n_users = max(50, int(round(cfg.users_per_item * n_items)))
    t0 = time.perf_counter()
    frame = generate(SyntheticConfig(users=n_users, items=n_items, groups=cfg.groups,
                                     mean_interactions=cfg.mean_interactions, seed=cfg.seed))
    ds = dataset_from_frame(frame, ColumnSpec(user_col="user_id", item_col="item_id", item_group_col="item_group",
                                              user_group_col="user_group"), name=f"synthetic-{n_items}")
    del frame
    split = make_split(ds, SplitConfig(seed=cfg.seed, cold_users=0.02, test_frac=0.1, valid_frac=0.0,
                                       revealed=(0, 3)))
    train = split.train_set()
    gen_seconds = time.perf_counter() - t0
    point: dict[str, Any] = {"items": ds.n_items, "users": ds.n_users, "interactions": ds.nnz,
                             "train_interactions": int(train.matrix.nnz), "data_seconds": gen_seconds}

    wals = runner.fit_model(ModelSpec("wals", {"factors": cfg.factors, "iterations": cfg.wals_iterations}),
                            split, cfg.seed).model
    point["wals_seconds_per_iteration"] = float(np.median([h["seconds"] for h in wals.history_]))

    common = {"dim": cfg.factors, "hidden": (64,)}
    full_budget = int(min(cfg.examples_timed, max(2000, cfg.full_flops_timed / (6 * cfg.factors * ds.n_items))))
    point["softmax_full_seconds_per_epoch"], point["softmax_full_examples_timed"] = _softmax_epoch_seconds(
        {**common, "negatives": "all"}, train, full_budget, cfg.seed)
    sampled = {**common, "negatives": cfg.negatives, "sampler": "uniform"}
    point["softmax_sampled_seconds_per_epoch"], point["softmax_sampled_examples_timed"] = _softmax_epoch_seconds(
        sampled, train, cfg.examples_timed, cfg.seed)

    rng = generator(cfg.seed, "serving")
    ws = serving_cost(wals, split, 20, rng, n_sample=cfg.latency_queries)
    point["wals_query_ms_p50"] = ws["query_ms_p50"] + ws["topk_ms_p50"]
    point["wals_cache_build_seconds"] = ws["cache_build_seconds"]
    point["wals_cache_bytes"] = ws["cache_bytes"]
    # the cache's serving path: copy one user's row out of a (users, 20) int32 table of the cache's shape
    table = np.zeros((ds.n_users, 20), dtype=np.int32)
    lat = []
    for u in rng.choice(ds.n_users, cfg.latency_queries):
        t = time.perf_counter()
        table[u].copy()
        lat.append(time.perf_counter() - t)
    point["wals_cache_lookup_ms_p50"] = float(np.median(lat) * 1000.0)
    small = _subsample(train, 2000, generator(cfg.seed, "scale", "subsample"))[0]
    sm = one_epoch_softmax(sampled)
    sm.fit(small, generator(cfg.seed, "fit", "softmax", 0))
    ss = serving_cost(sm, split, 20, rng, n_sample=cfg.latency_queries)
    point["softmax_query_ms_p50"] = ss["query_ms_p50"] + ss["topk_ms_p50"]
    point["wals_model_bytes"], point["softmax_model_bytes"] = ws["model_bytes"], ss["model_bytes"]

    hashed = {**sampled, "item_buckets": max(1, ds.n_items // cfg.items_per_bucket), "hash_output": True}
    point["softmax_hashed_buckets"] = hashed["item_buckets"]
    point["softmax_hashed_seconds_per_epoch"], point["softmax_hashed_examples_timed"] = _softmax_epoch_seconds(
        hashed, train, cfg.examples_timed, cfg.seed)
    hm = one_epoch_softmax(hashed)
    hm.fit(small, generator(cfg.seed, "fit", "softmax", 0))
    point["softmax_hashed_model_bytes"] = model_bytes(hm)
    if cfg.index != "exact":
        point.update(_index_point(wals, split, cfg))
    return point


def _index_point(model: Any, split: Any, cfg: ScaleConfig) -> dict:
    """Exact vs approximate search over ``model``'s item vectors at this size (default search setting)."""
    from ..evaluation.cost import index_cost
    from ..models.index import make_index

    default_setting = make_index(cfg.index).search_param
    cost = index_cost(model, split, cfg.index, (default_setting,), 20, generator(cfg.seed, "scale", "index"), cfg.latency_queries)
    default = next(s for s in cost["settings"] if s["is_default"])
    return {"exact_search_ms_p50": cost["exact_single_ms_p50"], "index_search_ms_p50": default["single_ms_p50"],
            "index_recall": default["index_recall"], "index_build_seconds": cost["build_seconds"],
            "index_bytes": cost["index_bytes"], "index_kind": cfg.index, "index_setting": default["value"]}


def run_scale(cfg: ScaleConfig, progress: ProgressFn = no_progress) -> dict:
    """Measure every size (smallest first, after an untimed warm-up), then fit the growth exponents."""
    warm = ScaleConfig(**{**asdict(cfg), "sizes": (200, 300), "latency_queries": 5, "examples_timed": 2000})
    progress(0, len(cfg.sizes), {})
    measure_size(200, warm)  # compiles the numba kernels so no point pays for it
    points = []
    for i, n in enumerate(cfg.sizes):  # a call before each size: the bar shows its total and what runs now
        progress(i, len(cfg.sizes), {"measuring items": float(n)})
        points.append(measure_size(n, cfg))
    progress(len(cfg.sizes), len(cfg.sizes), {"items": float(points[-1]["items"])})
    items = np.array([p["items"] for p in points], dtype=np.float64)
    fits = {}
    for key, label in CURVES.items():
        if not any(key in p for p in points):  # the index curves without --index
            continue
        f = fit_growth(items, np.array([p.get(key, np.nan) for p in points], dtype=np.float64))
        fits[key] = {"label": label, "exponent": f.exponent, "coef": f.coef, "r2": f.r2, "points": f.points}
    return {"config": {**asdict(cfg), "sizes": list(cfg.sizes)}, "points": points, "fits": fits,
            "x": "items (users and interactions grow in proportion)"}
