"""What an experiment is: the data, the split, the models with their parameters, and what to measure.

An :class:`ExperimentSpec` is everything :func:`mfvsdnn.experiment.runner.run` needs; compare,
sweep and scale build one and hand it over. Plain data, checked by :meth:`ExperimentSpec.check`
before any file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import EvaluationError
from ..data import ColumnSpec
from ..data.split import SplitConfig

DEFAULT_KS = (10, 20, 50)
MAX_SEARCH_SETTING = 100_000  # efSearch / nprobe beyond this search (nearly) everything: use exact


def check_index(kind: str, settings: tuple[int, ...]) -> None:
    """Refuse an unknown index, missing faiss, or search settings outside [1, 100000]."""
    from ..models.index import check_kind

    check_kind(kind)
    bad = [v for v in settings if not 1 <= int(v) <= MAX_SEARCH_SETTING]
    if bad:
        raise EvaluationError(f"--ef-search/--nprobe values must be in [1, {MAX_SEARCH_SETTING:,}], got "
                              f"{', '.join(map(str, bad))}")
PREFERRED_MAIN_K = 20
MAX_REPEATS = 20
#: the level of every interval and the significance threshold (1 − level) of every paired test
CONFIDENCE_LEVEL = 0.95
MAX_TUNE = 200


@dataclass(frozen=True)
class DataSpec:
    """The interaction file, how to read its columns, and an optional explicit test file."""

    path: Path
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    test_path: Path | None = None


@dataclass
class ModelSpec:
    """One model of the experiment.

    kind : registry name ("wals", "softmax", "popularity", ...).
    params : constructor keywords (the model's defaults for the rest).
    name : label in the results (default: the kind); unique within an experiment.
    run_dir : load this trained run instead of training (its split must match).
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    run_dir: Path | None = None

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass
class PipelineSpec:
    """A two-stage pipeline of the experiment: the ``retriever`` kind's top-N, re-scored by the ``scorer`` kind.

    candidates : the N values (several = one pipeline per N, named ``retriever>scorer@N``).
    retriever_params, scorer_params : hyper-parameters of a stage on top of the experiment's model of
        that kind (none = that very model, not retrained; else a stage model of its own, reported too).
    """

    retriever: str
    scorer: str
    candidates: tuple[int, ...] = (200,)
    retriever_params: dict[str, Any] = field(default_factory=dict)
    scorer_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentSpec:
    """Data, split, models and measurements of one experiment.

    ks : cut-offs; every metric at each. main_k (derived): 20 when given, else the middle one (the lower
        of the two middle ones for an even count).
    bootstrap : resamples over users for the 95% intervals and paired tests (0 = none).
    serving_sample : warm users timed one request at a time (0 = no serving measurement).
    cold : evaluate the cold-user populations too.
    contrast : the two model names compared head to head (default: the first "mf" and the first
        "dnn" model by family, else the first two models).
    runs_dir : where models trained here are saved (one sub-folder per model name); None = not saved.
    command : the command line that reproduces the experiment (recorded in the results).
    pipelines : two-stage pipelines evaluated beside the models (their stages are models of ``models``,
        added by ``runner.plan_pipelines`` where missing).
    index : "exact" (serving measured by brute force only) or "hnsw"/"ivf": every model with item
        vectors is also served from that index and its cost and recall loss measured (needs faiss).
    index_settings : efSearch (hnsw) or nprobe (ivf) values measured as the speed/accuracy curve
        (empty = the index's default curve).
    repeats : model seeds per model (every model is refitted with repeats 0..R-1 of the seeding rule on
        the same split; intervals and paired tests combine seed and user variance).
    tune : random-search trials on validation per learned model (the same budget for each; 1 = none).
    folding_contrasts : also train the folding contrasts the claim names (the MF model at w0 = 0, the
        DNN with no negatives and no gravity) on the same split, when the data has item groups.
    fold_in_prior : also report each MF model with the MAP fold-in for cold users (prior toward the
        feature-mean embedding, its weight chosen on validation).
    growth : measure training seconds per iteration/epoch on subsamples (``growth_fractions`` of the
        training users, median of ``growth_repeats`` after a warm-up) and fit growth exponents.
    """

    data: DataSpec | None
    split: SplitConfig
    models: list[ModelSpec]
    ks: tuple[int, ...] = DEFAULT_KS
    bootstrap: int = 1000
    serving_sample: int = 200
    cold: bool = True
    contrast: tuple[str, str] | None = None
    runs_dir: Path | None = None
    command: str = ""
    engine: str = "local"
    pipelines: list[PipelineSpec] = field(default_factory=list)
    index: str = "exact"
    index_settings: tuple[int, ...] = ()
    repeats: int = 1
    tune: int = 1
    folding_contrasts: bool = False
    fold_in_prior: bool = False
    growth: bool = False
    growth_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    growth_repeats: int = 3

    @property
    def seed(self) -> int:
        return self.split.seed

    @property
    def main_k(self) -> int:
        ks = sorted(set(self.ks))
        return PREFERRED_MAIN_K if PREFERRED_MAIN_K in ks else ks[(len(ks) - 1) // 2]

    def check(self) -> ExperimentSpec:
        """Refuse a spec that cannot run (before any data is read). Returns self."""
        ks = tuple(sorted(set(int(k) for k in self.ks)))
        if not ks or ks[0] < 1:
            raise EvaluationError(f"--k must be positive integers, got {', '.join(map(str, self.ks)) or 'nothing'}")
        self.ks = ks
        if self.bootstrap < 0:
            raise EvaluationError(f"--bootstrap must be >= 0, got {self.bootstrap}")
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise EvaluationError(f"--repeats must be in [1, {MAX_REPEATS}], got {self.repeats}")
        if not 1 <= self.tune <= MAX_TUNE:
            raise EvaluationError(f"--tune must be in [1, {MAX_TUNE}], got {self.tune}")
        if self.serving_sample < 0:
            raise EvaluationError(f"--serving-sample must be >= 0, got {self.serving_sample}")
        for p in self.pipelines:
            bad = [n for n in p.candidates if isinstance(n, bool) or not isinstance(n, int) or n < 1]
            if bad or not p.candidates:
                raise EvaluationError(f"--candidates must be integers >= 1, got "
                                      f"{', '.join(map(str, p.candidates)) or 'nothing'}")
        if not self.models:
            raise EvaluationError("no models to evaluate (--models is empty)")
        check_index(self.index, self.index_settings)
        labels = [m.label for m in self.models]
        dup = sorted({n for n in labels if labels.count(n) > 1})
        if dup:
            raise EvaluationError(f"model names must be unique, got {', '.join(dup)} more than once")
        if self.contrast is not None:
            missing = [n for n in self.contrast if n not in labels]
            if missing or len(set(self.contrast)) != 2:
                raise EvaluationError(f"the contrast must name two different models of {', '.join(labels)}; "
                                      f"got {', '.join(self.contrast)}")
        return self
