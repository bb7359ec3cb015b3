"""The interface both retrievers implement: ``score(query, item) = q . v_item``.

A model is built from plain constructor keywords (its hyper-parameters), learns in ``fit`` (which
returns ``self``), and exposes:

- ``query_vectors(histories, features, users)`` -> (q, d): embeds any set of queries, warm or cold;
- ``item_vectors`` -> (n_items, d);
- ``get_params()`` -> JSON-able dict of hyper-parameters;
- ``state()`` -> dict of numpy arrays (everything learned), and ``from_state(params, arrays, info)``
  to rebuild it; the store writes these with ``np.savez`` and reads them with ``allow_pickle=False``.

Learned attributes end in ``_`` (``train_seconds_``, ``history_``). Models never print: they report
progress through a ``ProgressFn`` callback.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from ..errors import ModelError
from ..split import TrainSet

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
MAX_BATCH = 1_000_000     # --batch-size
MAX_NEGATIVES = 1_000_000  # --negatives
MAX_HARD_POOL = 10_000_000  # --hard-pool
MAX_LR = 10.0             # --lr: Adam/Adagrad steps move a weight by about lr; beyond 10 nothing can train
MAX_REG = 1e6             # --reg: larger values shrink every factor to 0 (and overflow float32 Grams)
MAX_INIT_SCALE = 10.0     # init_scale of both models
MAX_K = 100_000           # --k cut-offs (every top-k list is queries x max(k))
MAX_BOOTSTRAP = 100_000   # --bootstrap resamples
MAX_SEED = 2**32 - 1      # --seed: a 32-bit seed, what every engine here (numpy, Spark) accepts

# Constructor keywords of each model (what --wals-param / --softmax-param accept). The CLI lists them
# in --help without importing the models (numba); a test checks they equal the constructors'.
HYPER_PARAMETERS: dict[str, tuple[str, ...]] = {
    "wals": ("factors", "w0", "reg", "iterations", "solver", "cg_steps", "num_threads", "min_support",
             "init_scale"),
    "softmax": ("dim", "hidden", "feature_dim", "negatives", "sampler", "hard_pool", "gravity", "epochs",
                "batch_size", "lr", "optimizer", "l2", "patience", "tie_embeddings", "history_dropout",
                "feature_dropout", "init_scale"),
}


class ProgressFn(Protocol):
    """Called after each iteration/epoch: ``progress(done, total, metrics)``."""

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None: ...


def no_progress(done: int, total: int, metrics: dict[str, float]) -> None:
    """A ProgressFn that does nothing."""


class Retriever(Protocol):
    kind: ClassVar[str]
    train_seconds_: float
    history_: list[dict[str, float]]

    def fit(self, train: TrainSet, rng: np.random.Generator, progress: ProgressFn = no_progress) -> Retriever:
        """Learn the parameters from ``train.matrix`` (n_users, n_items). Returns self."""
        ...

    def query_vectors(self, histories: sp.csr_matrix, features: dict[str, np.ndarray] | None = None,
                      users: np.ndarray | None = None) -> np.ndarray:
        """Query embeddings.

        Parameters
        ----------
        histories : csr (q, n_items). Items known for each query (its history).
        features : name -> (q,) int codes (-1 = unknown), or None.
        users : (q,) training-user indices when the queries are warm training users (a model may use
            its learned per-user state then), or None for new (cold) queries.

        Returns
        -------
        (q, d) float32.
        """
        ...

    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, d) float32."""
        ...

    def get_params(self) -> dict[str, Any]: ...

    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Retriever:
        """Rebuild a fitted model; ``info`` holds train_seconds and history."""
        ...


def model_class(kind: str) -> type:
    """The model class registered under ``kind`` ("wals" or "softmax")."""
    if kind == "wals":
        from .wals import WALS

        return WALS
    if kind == "softmax":
        from .softmax import SoftmaxDNN

        return SoftmaxDNN
    raise ModelError(f"unknown model kind {kind!r} (expected 'wals' or 'softmax')")


# ------------------------------------------------------------------------------------------------
# hyper-parameter checks shared by the constructors


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


def check_params(kind: str, params: Mapping[str, Any], option: str) -> dict[str, Any]:
    """Every hyper-parameter of a ``kind`` model built from ``params`` (defaults filled in).

    Refuses, with one message naming ``option`` (e.g. ``--wals-param``): a key that is not a
    constructor keyword (the message lists the valid keys and suggests the closest one), and a
    value the constructor refuses. Nothing is trained and no data is needed.
    """
    cls = model_class(kind)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"{option} {key}=...: {key!r} is not a {kind} hyper-parameter{hint}; "
                             f"valid keys: {', '.join(valid)}")
    try:
        return cls(**params).get_params()
    except ModelError as e:
        raise ModelError(f"{option}: {e}") from None


# ------------------------------------------------------------------------------------------------
# memory: estimated before anything large is allocated


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None  # absent, unreadable, or "max" (no limit)


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable from /proc/meminfo (else the free
    physical pages from os.sysconf), lowered to the room left under a cgroup memory limit.
    None when the system tells nothing."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            room = max(0, limit - usage)
            avail = room if avail is None else min(avail, room)
            break
    return avail


def fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def validation_bytes(n_users: int, n_items: int, d: int, k: int = 20, max_users: int = 5000) -> int:
    """Peak bytes of the validation recall@k run during and after training: the query vectors, one
    block of scores (the evaluator's budget at most) and the top-k indices and scores."""
    from ..evaluate import SCORE_BUDGET_BYTES

    q = min(n_users, max_users)
    return 4 * q * d + min(SCORE_BUDGET_BYTES, 4 * q * n_items) + 12 * q * k


def check_memory(what: str, need: int, hint: str) -> None:
    """Refuse (ModelError) when ``need`` bytes exceed the available memory; the message gives both."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise ModelError(f"not enough memory for {what}: it needs about {fmt_bytes(need)}, "
                         f"{fmt_bytes(avail)} is available; {hint}")


def check_model_memory(model: Any, train: TrainSet) -> int:
    """The model's ``estimate_bytes`` for this training set, refused when it exceeds the available
    memory (call it before ``fit``). Returns the estimate."""
    n_users, n_items = train.matrix.shape
    cards = {f: int(train.cardinalities.get(f, int(np.max(c, initial=-1)) + 1)) for f, c in train.features.items()}
    need = int(model.estimate_bytes(n_users, n_items, int(train.matrix.nnz), cards))
    check_memory(f"training {model.kind} on {n_users:,} users x {n_items:,} items", need, model.memory_hint)
    return need
