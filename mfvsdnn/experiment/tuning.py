"""An equal tuning budget: random search on validation recall@20, the same number of trials per model.

A comparison is only fair when each model had the same chance to be tuned. :func:`tune` gives a model
spec ``trials`` fits on the split's validation slice and keeps the parameters of the best one:

- trial 0 is the spec's own parameters (its explicit ones, the model's defaults for the rest), so
  tuning never picks something worse on validation than the untuned model;
- trials 1 .. trials-1 draw every parameter of the kind's search space from
  ``core.seeding.generator(seed, "tune", kind)``; a parameter the user set explicitly in
  ``spec.params`` is held fixed at that value (every dimension is still drawn, in the space's order,
  so fixing one parameter does not change the draws of the others);
- every trial is fitted by the ``fit`` passed in (the runner's ``fit_model``) with the same seed, and
  the trial with the highest validation recall wins (ties: the earliest, so the defaults win a tie).

Search spaces (:data:`SEARCH_SPACES`):

- ``wals``: factors in {16, 32, 64}; w0 log-uniform in [0.01, 0.5]; reg log-uniform in [0.01, 10];
- ``softmax``: lr log-uniform in [3e-4, 1e-2]; dim in {16, 32, 64}; negatives in {10, 50, 200};
  l2 in {0, 1e-6, 1e-5, 1e-4}; epochs in {10, 30, 60} (the softmax step budget still applies).

Every other kind (the baselines, pipelines, kinds added later) has no space and is not tuned:
:func:`tune` fits nothing and says so in ``reason``. Log-uniform draws are rounded to 3 significant
digits (readable in reports, inside the range). A drawn combination the model refuses, or a trial
whose training fails (e.g. diverges), is recorded with its error and a NaN recall and never wins; an
error of trial 0 (the spec as given) is raised as it would be without tuning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import ModelError
from ..core.progress import ProgressFactory, silent
from ..core.seeding import generator
from ..data.split import Split
from ..models import registry
from ..models.params import MAX_TRIALS, as_int
from .spec import ModelSpec


@dataclass(frozen=True)
class Choice:
    """One of a few values, each equally likely."""

    values: tuple[Any, ...]

    def draw(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def describe(self) -> str:
        return "{" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values) + "}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


@dataclass(frozen=True)
class LogUniform:
    """A number whose logarithm is uniform in [log low, log high], rounded to 3 significant digits."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        value = float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return min(max(float(f"{value:.3g}"), self.low), self.high)

    def describe(self) -> str:
        return f"log-uniform in [{self.low:g}, {self.high:g}]"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "log-uniform", "low": self.low, "high": self.high}


Dimension = Choice | LogUniform

SEARCH_SPACES: dict[str, dict[str, Dimension]] = {
    "wals": {
        "factors": Choice((16, 32, 64)),
        "w0": LogUniform(0.01, 0.5),
        "reg": LogUniform(0.01, 10.0),
    },
    "softmax": {
        "lr": LogUniform(3e-4, 1e-2),
        "dim": Choice((16, 32, 64)),
        "negatives": Choice((10, 50, 200)),
        "l2": Choice((0.0, 1e-6, 1e-5, 1e-4)),
        "epochs": Choice((10, 30, 60)),
    },
}


def describe_space(kind: str) -> str:
    """The search space of ``kind`` in one line (for help texts and the README)."""
    space = SEARCH_SPACES.get(kind)
    if not space:
        return f"{kind}: not tuned (no search space)"
    dims = "; ".join(f"{name} {dim.describe() if isinstance(dim, LogUniform) else 'in ' + dim.describe()}"
                     for name, dim in space.items())
    return f"{kind}: {dims}"


def _number(value: float) -> float | None:
    """JSON has no NaN: a missing recall is null."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class Trial:
    """One fit of the search: the values of the space's parameters (searched or held fixed), its
    validation recall@20 (NaN when it failed), the fit's wall time, and the error of a failed trial."""

    params: dict[str, Any]
    valid_recall: float
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"params": dict(self.params), "valid_recall": _number(self.valid_recall),
                "seconds": float(self.seconds), "error": self.error}


@dataclass
class TuningResult:
    """What :func:`tune` found for one model.

    best_params : the hyper-parameters to fit the model with (the spec's own for trial 0, else the
        spec's explicit ones plus the winning trial's values).
    best_trial : index of the winning trial in ``trials`` (-1: nothing was fitted).
    space : the searched dimensions (name -> Choice | LogUniform); ``fixed``: space parameters held at
        the user's value.
    reason : why the model was not tuned ("" when it was).
    best_fitted : the winning trial's fitted model (the ``fit``'s return value), so the caller need not
        refit it; not part of ``to_dict``.
    """

    kind: str
    trials: list[Trial]
    best_params: dict[str, Any]
    best_valid_recall: float
    space: dict[str, Dimension]
    fixed: dict[str, Any] = field(default_factory=dict)
    best_trial: int = -1
    reason: str = ""
    best_fitted: Any = None

    @property
    def tuned(self) -> bool:
        return not self.reason

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tuned": self.tuned, "reason": self.reason,
                "space": {name: dim.to_dict() for name, dim in self.space.items()}, "fixed": dict(self.fixed),
                "trials": [t.to_dict() for t in self.trials], "best_trial": self.best_trial,
                "best_params": dict(self.best_params), "best_valid_recall": _number(self.best_valid_recall)}


def draw_trials(kind: str, params: Mapping[str, Any], seed: int, trials: int) -> list[dict[str, Any]]:
    """The fit parameters of trials 1 .. trials-1: ``params`` with every space dimension not in
    ``params`` replaced by a draw of ``generator(seed, "tune", kind)``."""
    space = SEARCH_SPACES.get(kind, {})
    rng = generator(seed, "tune", kind)
    out = []
    for _ in range(1, trials):
        drawn = {name: dim.draw(rng) for name, dim in space.items()}  # all drawn: fixing one shifts no other
        out.append({**params, **{k: v for k, v in drawn.items() if k not in params}})
    return out


def tune(spec: ModelSpec, split: Split, seed: int, trials: int, fit: Callable[[ModelSpec, Split, int], Any],
         progress_factory: ProgressFactory = silent) -> TuningResult:
    """Random search of ``trials`` fits for ``spec`` on ``split``'s validation slice (see the module).

    fit : ``(ModelSpec, Split, seed) -> fitted`` with ``.validation_recall`` (the runner's fit_model).
    Returns the trials and the best parameters; a kind without a search space, or a spec that loads
    a trained run, is not tuned (no fit, ``reason`` says why).
    """
    trials = as_int("--trials", trials, 1, MAX_TRIALS)
    space = SEARCH_SPACES.get(spec.kind, {})
    fixed = {k: v for k, v in spec.params.items() if k in space}
    searched = {k: v for k, v in space.items() if k not in fixed}

    def untuned(reason: str) -> TuningResult:
        return TuningResult(spec.kind, [], dict(spec.params), float("nan"), {}, fixed, -1, reason)

    if not space:
        return untuned(f"{spec.kind} has no search space (not tuned)")
    if spec.run_dir is not None:
        return untuned("a trained run is loaded, not fitted (not tuned)")
    defaults = registry.check_params(spec.kind, spec.params, f"{spec.label} hyper-parameters")
    candidates = [dict(spec.params)] + (draw_trials(spec.kind, spec.params, seed, trials) if searched else [])
    done: list[Trial] = []
    best_index, best_recall, best_fitted = -1, -math.inf, None
    with progress_factory(f"tuning {spec.label}") as progress:
        for index, params in enumerate(candidates):
            values = {k: (defaults if index == 0 else params)[k] for k in space}
            t0 = time.perf_counter()
            try:
                if index > 0:
                    registry.check_params(spec.kind, params, f"{spec.label} tuning trial {index}")
                fitted = fit(ModelSpec(spec.kind, params, name=spec.name), split, seed)
            except ModelError as e:
                if index == 0:
                    raise
                done.append(Trial(values, float("nan"), time.perf_counter() - t0, str(e)))
                progress(index + 1, len(candidates), {"best valid recall@20": best_recall})
                continue
            recall = float(fitted.validation_recall)
            done.append(Trial(values, recall, time.perf_counter() - t0))
            if index == 0 and not math.isfinite(recall):  # no validation slice: nothing to choose by
                progress(1, 1, {})
                return TuningResult(spec.kind, done, dict(spec.params), recall, searched, fixed, 0,
                                    "no validation recall to tune on (no validation slice)", fitted)
            if recall > best_recall:  # NaN never wins; a tie keeps the earlier trial
                best_index, best_recall, best_fitted = index, recall, fitted
            progress(index + 1, len(candidates), {"valid recall@20": recall, "best valid recall@20": best_recall})
    reason = "" if searched else "every searched parameter is set explicitly (only the given parameters fitted)"
    return TuningResult(spec.kind, done, dict(candidates[best_index]), best_recall, searched, fixed, best_index,
                        reason, best_fitted)
