"""Hyper-parameter checks shared by the model constructors (and the CLI's ranges in ``--help``).

Each check returns the value in its type or raises a ModelError naming the option, e.g.
``--lr must be a finite number in (0, 10], got inf``.
"""

from __future__ import annotations

import math
from typing import Any

from ..core.errors import ModelError

# Upper bounds of the hyper-parameters (and of the evaluation's cut-offs and resamples), shared by
# the models' constructors, the sweep and scale configurations, and the CLI's --help.
# They refuse absurd values before anything is allocated; the memory estimate (check_memory) then
# refuses combinations that are each sane but together exceed the machine.

MAX_DIM = 4096            # --factors, --dim, --feature-dim
MAX_WIDTH = 65536         # each --hidden width
MAX_LAYERS = 32           # number of --hidden layers
MAX_ITERATIONS = 10_000   # --iterations (WALS)
MAX_CG_STEPS = 1000       # --cg-steps
MAX_THREADS = 1024        # --threads
MAX_EPOCHS = 100_000      # --epochs, --patience
MAX_STEPS = 1_000_000_000  # min_steps of the softmax DNN (optimiser steps)
MAX_BATCH = 1_000_000     # --batch-size
MAX_NEGATIVES = 1_000_000  # --negatives
MAX_HARD_POOL = 10_000_000  # --hard-pool
MAX_BUCKETS = 100_000_000  # --item-buckets, --feature-buckets (hashing trick)
MAX_HASHES = 4            # --item-hashes: rows summed per hashed item
MAX_LR = 10.0             # --lr: Adam/Adagrad steps move a weight by about lr; beyond 10 nothing can train
MAX_REG = 1e6             # --reg: larger values shrink every factor to 0 (and overflow float32 Grams)
MAX_INIT_SCALE = 10.0     # init_scale of both models
MAX_FOLD_IN_PRIOR = 1e12  # WALS fold_in_prior: long before it the MAP fold-in is the prior mean to float precision
MAX_K = 100_000           # --k cut-offs (every top-k list is queries x max(k))
MAX_BOOTSTRAP = 100_000   # --bootstrap resamples
MAX_TRIALS = 1000         # tuning trials per model (each one a full fit)
MAX_SEED = 2**32 - 1      # --seed: a 32-bit seed, what every engine here (numpy, Spark) accepts


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def as_int(option: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi]; a bool, a fraction or anything else is a ModelError naming ``option``."""
    need = f"an integer {_interval(lo, hi, False, False)}"
    if isinstance(value, bool):
        raise ModelError(f"{option} must be {need}, got {value!r}")
    try:
        x = float(value)
        n = int(x) if isinstance(value, float) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"{option} must be {need}, got {value!r}") from None
    if x != n or n < lo or (hi is not None and n > hi):
        raise ModelError(f"{option} must be {need}, got {value!r}")
    return n


def as_float(option: str, value: Any, lo: float, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> float:
    """``value`` as a finite float inside the interval; anything else is a ModelError naming ``option``."""
    need = f"a finite number {_interval(lo, hi, lo_open, hi_open)}"
    if isinstance(value, bool):
        raise ModelError(f"{option} must be {need}, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ModelError(f"{option} must be {need}, got {value!r}") from None
    ok = math.isfinite(x) and (x > lo if lo_open else x >= lo)
    if hi is not None:
        ok = ok and (x < hi if hi_open else x <= hi)
    if not ok:
        raise ModelError(f"{option} must be {need}, got {value!r}")
    return x


def as_choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ModelError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
    return value


# Constructor keywords of each model (what --wals-param / --softmax-param accept). The CLI lists them
# in --help without importing the models (numba); a test checks they equal the constructors'.
HYPER_PARAMETERS: dict[str, tuple[str, ...]] = {
    "wals": ("factors", "w0", "reg", "iterations", "solver", "cg_steps", "num_threads", "min_support",
             "init_scale", "fold_in_prior"),
    "softmax": ("dim", "hidden", "feature_dim", "negatives", "sampler", "hard_pool", "gravity", "epochs",
                "batch_size", "lr", "optimizer", "l2", "patience", "tie_embeddings", "history_dropout",
                "feature_dropout", "init_scale", "mix_sampler", "mask_positives", "item_buckets", "item_hashes",
                "hash_output", "feature_buckets", "min_steps"),
}
