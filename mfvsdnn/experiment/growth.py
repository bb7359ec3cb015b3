"""Training cost against the size of the user's own data: growth exponents fitted on subsamples.

One training run says how long a model took at this size, early stopping and numba's first compile
included; the training-scalability claim ("MF scales to huge sparse corpora, the DNN is harder") is
about how that cost *grows*. :func:`training_growth` trains every learned model on seeded subsamples
of the training users holding a share f of the training interactions (f = 1/8, 1/4, 1/2, 1 by
default), each with a fixed amount of work (WALS: its iterations; a model with epochs: ``epochs``
epochs, never stopping early), and fits the exponent b of ``seconds per unit = a * interactions^b``
with :func:`mfvsdnn.experiment.fits.fit_growth` (also against the items and the users the subsample
holds). :func:`growth_verdict_inputs` turns an MF and a DNN curve into a verdict.

The subsample keeps users whole (a user's history is what the DNN's tower reads) and drops the users
and items it leaves without interactions: a subsample then looks like a smaller corpus of the same
kind, so the item-side work (WALS's item solves, a full softmax) shrinks with it as it would on a
smaller catalogue, instead of the full catalogue's empty rows being paid for at every fraction.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import EvaluationError
from ..core.progress import ProgressFn, no_progress
from ..core.seeding import generator
from ..data.split import TrainSet
from ..models import registry
from ..models.memory import check_model_memory
from .fits import GrowthFit, fit_growth
from .spec import ModelSpec

DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
DEFAULT_REPEATS = 3
DEFAULT_EPOCHS = 1

# The verdict's constants. With fractions 1/8..1 the fit spans a factor of 8 in interactions
# (ln 8 = 2.08): a 15% timing error at one end moves b by ln(1.15)/ln(8) = 0.07, opposite errors at
# both ends by 0.13, so exponents closer than 0.15 are within what a shared machine's noise makes.
TOLERANCE = 0.15
# Below R² 0.9 a power law does not describe the points well enough (a fixed overhead dominating the small
# subsamples, a cache boundary crossed): the slope is then no growth rate to compare.
MIN_R2 = 0.9
MIN_POINTS = 3


def _num(x: Any) -> float | None:
    """A JSON number: None for NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


@dataclass
class TrainingGrowth:
    """One model's training cost on growing subsamples of the training data.

    model, kind : the model's name in the experiment and its registry kind.
    unit : what ``seconds`` is per: "iteration" (WALS), "epoch" (a model with epochs) or "fit".
    units : iterations/epochs each timed fit ran.
    fractions : the target shares of the training interactions, ascending.
    interactions, users, items : what each subsample holds (users and items with interactions).
    seconds : per fraction, the median over the repeats of fit seconds / units.
    all_seconds : per fraction, every repeat's fit seconds / units.
    total_seconds : per fraction, the median whole-fit seconds.
    exponent, r2, points : b of ``seconds = a * interactions^b`` (log-log least squares), its R², points used.
    exponent_items, r2_items, exponent_users, r2_users : the same fit against items and users.
    measure_seconds : what measuring this model took (warm-up and every timed fit).
    """

    model: str
    kind: str
    unit: str
    units: int
    fractions: list[float]
    interactions: list[int]
    users: list[int]
    items: list[int]
    seconds: list[float]
    all_seconds: list[list[float]]
    total_seconds: list[float]
    exponent: float
    r2: float
    points: int
    exponent_items: float
    r2_items: float
    exponent_users: float
    r2_users: float
    measure_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "kind": self.kind, "unit": self.unit, "units": self.units,
            "fractions": list(self.fractions), "interactions": list(self.interactions), "users": list(self.users),
            "items": list(self.items), "seconds": [_num(s) for s in self.seconds],
            "all_seconds": [[_num(s) for s in row] for row in self.all_seconds],
            "total_seconds": [_num(s) for s in self.total_seconds],
            "exponent": _num(self.exponent), "r2": _num(self.r2), "points": self.points,
            "exponent_items": _num(self.exponent_items), "r2_items": _num(self.r2_items),
            "exponent_users": _num(self.exponent_users), "r2_users": _num(self.r2_users),
            "measure_seconds": _num(self.measure_seconds), "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainingGrowth:
        return cls(
            d["model"], d["kind"], d["unit"], int(d["units"]), [float(f) for f in d["fractions"]],
            [int(n) for n in d["interactions"]], [int(n) for n in d["users"]], [int(n) for n in d["items"]],
            [_nan(s) for s in d["seconds"]], [[_nan(s) for s in row] for row in d["all_seconds"]],
            [_nan(s) for s in d["total_seconds"]], _nan(d.get("exponent")), _nan(d.get("r2")),
            int(d.get("points") or 0), _nan(d.get("exponent_items")), _nan(d.get("r2_items")),
            _nan(d.get("exponent_users")), _nan(d.get("r2_users")), _nan(d.get("measure_seconds")),
            dict(d.get("params") or {}))


def check_settings(fractions: Sequence[float], repeats: int, epochs: int) -> tuple[float, ...]:
    """The fractions sorted and deduplicated; refuses a fraction outside (0, 1], repeats < 1 or epochs < 1."""
    out = []
    for f in fractions:
        f = float(f)
        if not 0.0 < f <= 1.0:
            raise EvaluationError(f"growth fractions must be in (0, 1], got {f}")
        out.append(f)
    if not out:
        raise EvaluationError("growth needs at least one fraction of the training data")
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise EvaluationError(f"growth repeats must be an integer >= 1, got {repeats}")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise EvaluationError(f"growth epochs must be an integer >= 1, got {epochs}")
    return tuple(sorted(set(out)))


def subsample(train: TrainSet, fraction: float, rng: np.random.Generator) -> TrainSet:
    """Seeded whole users holding about ``fraction`` of ``train``'s interactions, as a smaller corpus.

    Users are drawn in a random order until their interactions come closest to ``fraction * nnz``
    (all of them at 1.0); the users and items left without interactions are dropped, every per-user
    and per-item attribute sliced to match. No validation part (nothing stops early).
    """
    matrix = train.matrix.tocsr()
    counts = np.diff(matrix.indptr)
    warm = np.flatnonzero(counts > 0)
    order = rng.permutation(warm)
    cumulative = np.cumsum(counts[order])
    target = fraction * matrix.nnz
    n_take = int(np.argmin(np.abs(cumulative - target))) + 1
    rows = np.sort(order[:n_take])
    by_user = matrix[rows]
    cols = np.flatnonzero(np.bincount(by_user.indices, minlength=matrix.shape[1]) > 0)
    sub = by_user[:, cols].tocsr()

    def per_user(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.asarray(values)[rows]

    def per_item(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.asarray(values)[cols]

    return TrainSet(matrix=sub, users=np.arange(len(rows)),
                    features={name: np.asarray(codes)[rows] for name, codes in train.features.items()},
                    cardinalities=dict(train.cardinalities), valid=None, item_groups=per_item(train.item_groups),
                    user_groups=per_user(train.user_groups), group_count=train.group_count,
                    user_ids=per_user(train.user_ids), item_ids=per_item(train.item_ids),
                    feature_values=dict(train.feature_values))


def fixed_work(kind: str, params: dict[str, Any], epochs: int) -> tuple[dict[str, Any], str, int]:
    """(params, unit, units): ``params`` changed so a fit does a fixed amount of work.

    A model with ``epochs`` runs ``epochs`` of them with early stopping off (``patience`` 0) and no
    minimum of steps (``min_steps`` 0) where it has those; one with ``iterations`` (WALS) runs its
    own; any other learned model is timed per fit.
    """
    defaults = registry.get(kind)(**params).get_params()
    if "epochs" in defaults:
        fixed = {**params, "epochs": epochs}
        fixed.update({name: 0 for name in ("patience", "min_steps") if name in defaults})
        return fixed, "epoch", epochs
    if "iterations" in defaults:
        return dict(params), "iteration", int(defaults["iterations"])
    return dict(params), "fit", 1


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _fit(sizes: np.ndarray, seconds: np.ndarray) -> GrowthFit:
    """fit_growth, with points counted as distinct sizes: on a tiny training set two fractions can
    draw the same users, and a repeated size adds no evidence of growth (all equal: no slope at all)."""
    distinct = len(np.unique(sizes[sizes > 0]))
    if distinct < 2:
        return GrowthFit(float("nan"), float("nan"), float("nan"), distinct)
    fitted = fit_growth(sizes, seconds)
    fitted.points = min(fitted.points, distinct)
    return fitted


def training_growth(specs: list[ModelSpec], train: TrainSet, seed: int,
                    fractions: Sequence[float] = DEFAULT_FRACTIONS, repeats: int = DEFAULT_REPEATS,
                    progress: ProgressFn = no_progress, epochs: int = DEFAULT_EPOCHS,
                    clock: Callable[[], float] = time.perf_counter) -> list[TrainingGrowth]:
    """Each learned model's training seconds per unit on subsamples of ``train``, with growth exponents.

    Baselines (family "baseline") are skipped; a spec with a ``run_dir`` is measured from its
    ``params``. Every model first fits once, untimed, on the smallest subsample (numba compiles its
    kernels there); then ``repeats`` rounds go over the fractions (smallest first), drawing each
    fraction's subsample (``generator(seed, "growth", fraction index)``: the same users in every round
    and for every model) and fitting every model on it once, timed by ``clock``; a fraction's seconds
    are the median of its rounds. Only one subsample is held at a time, and each model's
    memory estimate at the largest fraction is checked before anything is fitted.
    ``progress(done, total)`` after every fit; total = models x (1 + fractions x repeats).
    """
    fractions = check_settings(fractions, repeats, epochs)
    learned = [s for s in specs if registry.family_of(s.kind) != "baseline"]
    plans = [(s, *fixed_work(s.kind, s.params, epochs)) for s in learned]
    if not plans:
        return []
    total = len(plans) * (1 + len(fractions) * repeats)
    done = 0

    def draw(index: int) -> TrainSet:
        return subsample(train, fractions[index], generator(seed, "growth", index))

    def fit(spec: ModelSpec, params: dict[str, Any], data: TrainSet, purpose: tuple) -> float:
        model = registry.get(spec.kind)(**params)
        rng = generator(seed, "growth", "fit", spec.label, *purpose)
        start = clock()
        model.fit(data, rng)
        return clock() - start

    largest = draw(len(fractions) - 1)
    for spec, params, _, _ in plans:
        model = registry.get(spec.kind)(**params)
        if hasattr(model, "estimate_bytes"):
            check_model_memory(model, largest)
    del largest

    measure = [0.0] * len(plans)
    smallest = draw(0)
    for m, (spec, params, _, _) in enumerate(plans):
        measure[m] += fit(spec, params, smallest, ("warm-up",))
        done += 1
        progress(done, total, {})
    del smallest

    # repeats go round the fractions (and the models) rather than one fraction at a time, so that a
    # burst of load from another process on a shared machine spreads over the curve instead of
    # bending it at one fraction; a subsample is redrawn for each round (same seed, same users)
    shape: list[tuple[int, int, int]] = []
    timed: list[list[list[float]]] = [[[] for _ in fractions] for _ in plans]
    for repeat in range(repeats):
        for index in range(len(fractions)):
            data = draw(index)
            if repeat == 0:
                shape.append((int(data.matrix.nnz), int(data.matrix.shape[0]), int(data.matrix.shape[1])))
            for m, (spec, params, _, _) in enumerate(plans):
                seconds = fit(spec, params, data, (index, repeat))
                measure[m] += seconds
                timed[m][index].append(seconds)
                done += 1
                progress(done, total, {"fraction": fractions[index], "interactions": float(shape[index][0])})
            del data

    interactions, users, items = (np.array(col, dtype=np.float64) for col in zip(*shape))
    out = []
    for m, (spec, params, unit, units) in enumerate(plans):
        per_unit = [[t / units for t in runs] for runs in timed[m]]
        seconds = [_median(row) for row in per_unit]
        by_nnz, by_items, by_users = (_fit(sizes, np.array(seconds)) for sizes in (interactions, items, users))
        out.append(TrainingGrowth(
            spec.label, spec.kind, unit, units, list(fractions), [int(n) for n in interactions],
            [int(n) for n in users], [int(n) for n in items], seconds, per_unit,
            [_median(runs) for runs in timed[m]], by_nnz.exponent, by_nnz.r2, by_nnz.points,
            by_items.exponent, by_items.r2, by_users.exponent, by_users.r2, measure[m], params))
    return out


def _describe(growth: TrainingGrowth) -> str:
    return (f"{growth.model} seconds per {growth.unit} ~ interactions^{growth.exponent:.2f} "
            f"(R² {growth.r2:.2f}, {growth.points} points; ~ items^{growth.exponent_items:.2f}, "
            f"R² {growth.r2_items:.2f})")


def growth_verdict_inputs(mf: TrainingGrowth, dnn: TrainingGrowth, tolerance: float = TOLERANCE,
                          min_r2: float = MIN_R2) -> tuple[str, str]:
    """("agrees" | "disagrees" | "cannot tell", evidence) for "MF's training scales better than the DNN's".

    Agrees when the DNN's exponent exceeds MF's by more than ``tolerance``, disagrees when MF's
    exceeds the DNN's by more than that; cannot tell for a smaller difference, or when either fit has
    fewer than 3 points or R² below ``min_r2`` (see :data:`TOLERANCE` and :data:`MIN_R2` for why).
    """
    fractions = sorted(set(mf.fractions) | set(dnn.fractions))
    sizes = ", ".join(f"{f:g}" for f in fractions)

    def full_size(g: TrainingGrowth) -> str:
        if not g.seconds:
            return f"{g.model}: not measured"
        return f"{g.model} {g.seconds[-1]:.3g} s/{g.unit} at {g.interactions[-1]:,} interactions"

    evidence = (f"{_describe(mf)}; {_describe(dnn)}; fractions {sizes} of the training interactions; "
                f"largest: {full_size(mf)}, {full_size(dnn)}")
    weak = [g.model for g in (mf, dnn)
            if g.points < MIN_POINTS or not (g.r2 >= min_r2) or not math.isfinite(g.exponent)]
    if weak:
        return "cannot tell", (f"{evidence}; no growth rate for {', '.join(weak)} (needs {MIN_POINTS} points "
                               f"and R² >= {min_r2:g})")
    gap = dnn.exponent - mf.exponent
    if gap > tolerance:
        return "agrees", f"{evidence}; the DNN's cost grows faster (exponent {gap:+.2f}, tolerance {tolerance:g})"
    if gap < -tolerance:
        return "disagrees", f"{evidence}; MF's cost grows faster (exponent {gap:+.2f}, tolerance {tolerance:g})"
    return "cannot tell", f"{evidence}; the exponents differ by {gap:+.2f}, within the tolerance {tolerance:g}"
