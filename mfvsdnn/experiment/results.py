"""Typed results of an experiment, and their JSON form (report.json, ``schema_version`` 3).

Everything a report shows is in these dataclasses; the renderers read them and compute nothing.
A metric is named by its ``metric`` and its cut-off ``k`` (None for metrics without one, such as the
natural cross-group rate); a population by its ``kind`` ("warm" or "cold") and, for cold users, the
number of ``revealed`` interactions. No key is ever built as a string and parsed back.

The JSON Schema of report.json ships beside this file (``report.schema.json``); :func:`schema`
loads it and the tests validate every report they write against it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

SCHEMA_VERSION = 3


def _num(x: Any) -> float | None:
    """A JSON number: None for NaN or missing (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _interval(ci: Any) -> list[float | None] | None:
    return None if ci is None else [_num(ci[0]), _num(ci[1])]


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


@dataclass(frozen=True)
class PopulationId:
    """Which users: ``kind`` "warm" (held-out interactions of training users) or "cold" (users held
    out entirely, queried with ``revealed`` interactions of their history; 0 = features only)."""

    kind: str
    revealed: int | None = None

    @property
    def is_warm(self) -> bool:
        return self.kind == "warm"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "revealed": self.revealed}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationId:
        return cls(d["kind"], d.get("revealed"))


WARM = PopulationId("warm")


def cold(revealed: int) -> PopulationId:
    return PopulationId("cold", int(revealed))


@dataclass(frozen=True)
class MetricValue:
    """One metric of one model on one population: the mean over users (and over the model seeds of
    ``--repeats``), its 95% interval (a two-level bootstrap: seeds, then users) and the between-seed
    spread ``seed_sd`` (the standard deviation of the per-seed means; None with one seed)."""

    metric: str
    k: int | None
    mean: float
    ci: tuple[float, float] | None = None
    seed_sd: float | None = None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "k": self.k, "mean": _num(self.mean), "ci": _interval(self.ci),
                "seed_sd": _num(self.seed_sd)}

    @classmethod
    def from_dict(cls, d: dict) -> MetricValue:
        ci = d.get("ci")
        sd = d.get("seed_sd")
        return cls(d["metric"], d.get("k"), _nan(d.get("mean")),
                   None if ci is None else (_nan(ci[0]), _nan(ci[1])), None if sd is None else float(sd))


@dataclass
class GroupBreakdown:
    """Means over the users of one group (the user's group as the evaluator defines it)."""

    group: str
    users: int
    values: list[MetricValue]

    def to_dict(self) -> dict:
        return {"group": self.group, "users": self.users, "values": [v.to_dict() for v in self.values]}

    @classmethod
    def from_dict(cls, d: dict) -> GroupBreakdown:
        return cls(d["group"], int(d["users"]), [MetricValue.from_dict(v) for v in d["values"]])


@dataclass
class PopulationResult:
    """Every metric of one model on one population."""

    population: PopulationId
    users: int
    values: list[MetricValue]
    embed_ms_per_query: float = float("nan")
    topk_ms_per_query: float = float("nan")
    group_source: str | None = None
    by_group: list[GroupBreakdown] = field(default_factory=list)

    def get(self, metric: str, k: int | None = None) -> MetricValue | None:
        for v in self.values:
            if v.metric == metric and v.k == k:
                return v
        return None

    def mean(self, metric: str, k: int | None = None) -> float:
        v = self.get(metric, k)
        return float("nan") if v is None else v.mean

    def to_dict(self) -> dict:
        return {"population": self.population.to_dict(), "users": self.users,
                "values": [v.to_dict() for v in self.values],
                "embed_ms_per_query": _num(self.embed_ms_per_query), "topk_ms_per_query": _num(self.topk_ms_per_query),
                "group_source": self.group_source, "by_group": [g.to_dict() for g in self.by_group]}

    @classmethod
    def from_dict(cls, d: dict) -> PopulationResult:
        return cls(PopulationId.from_dict(d["population"]), int(d["users"]),
                   [MetricValue.from_dict(v) for v in d["values"]], _nan(d.get("embed_ms_per_query")),
                   _nan(d.get("topk_ms_per_query")), d.get("group_source"),
                   [GroupBreakdown.from_dict(g) for g in d.get("by_group", [])])


@dataclass
class TrainingCost:
    """What the fit cost: wall-clock seconds (the median over the model seeds; ``seconds_range`` their
    min and max), iterations (WALS) or epochs (DNN) run, seconds per one. For a model with a step
    budget: optimiser ``steps`` run, the budget ``min_steps`` and whether early stopping fired."""

    seconds: float
    iterations: int
    seconds_per_iteration: float
    seconds_range: tuple[float, float] | None = None
    steps: int | None = None
    min_steps: int | None = None
    stopped_early: bool | None = None

    def to_dict(self) -> dict:
        return {"seconds": _num(self.seconds), "iterations": self.iterations,
                "seconds_per_iteration": _num(self.seconds_per_iteration),
                "seconds_range": _interval(self.seconds_range), "steps": self.steps, "min_steps": self.min_steps,
                "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict) -> TrainingCost:
        r = d.get("seconds_range")
        return cls(_nan(d.get("seconds")), int(d.get("iterations") or 0), _nan(d.get("seconds_per_iteration")),
                   None if r is None else (_nan(r[0]), _nan(r[1])), d.get("steps"), d.get("min_steps"),
                   d.get("stopped_early"))


@dataclass
class ServingCost:
    """Single-request latencies (ms, over ``sample_users`` requests), the candidate cache, model size.

    The cache fields are None for a model whose capabilities say its query vectors are not fixed.
    """

    sample_users: int
    query_ms_p50: float
    query_ms_p99: float
    topk_ms_p50: float
    topk_ms_p99: float
    cold_query_ms_p50: float
    cold_query_ms_p99: float
    batch_ms_per_query: float
    model_bytes: int
    cache_build_seconds: float | None = None
    cache_bytes: int | None = None
    cache_users: int | None = None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ServingCost:
        kw = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.name in ("sample_users", "model_bytes"):
                kw[f.name] = int(v or 0)
            elif f.name in ("cache_bytes", "cache_users"):
                kw[f.name] = None if v is None else int(v)
            elif f.name == "cache_build_seconds":
                kw[f.name] = None if v is None else float(v)
            else:
                kw[f.name] = _nan(v)
        return cls(**kw)


@dataclass
class IndexSetting:
    """One speed/accuracy setting of an item-vector index (``value`` of efSearch / nprobe; None for exact).

    ``index_recall``: share of the exact top-k the index returns; ``recall``: end-to-end recall@k of the
    model served from the index, ``recall_loss`` = exact recall − recall; latencies of the search alone
    (the query embedding is the same either way): one query (p50/p99, ms) and per query in a batch.
    """

    value: int | None
    is_default: bool
    index_recall: float
    recall: float
    recall_loss: float
    single_ms_p50: float
    single_ms_p99: float
    batch_ms_per_query: float

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> IndexSetting:
        return cls(d.get("value"), bool(d.get("is_default")),
                   *(_nan(d.get(f.name)) for f in fields(cls) if f.name not in ("value", "is_default")))


@dataclass
class IndexCost:
    """Serving one model from an item-vector index (``kind`` exact, hnsw or ivf; ``param`` the knob
    its settings vary), against exact brute force on the same ``queries`` warm users at cut-off ``k``."""

    kind: str
    param: str | None
    k: int
    queries: int
    sample_queries: int
    build_seconds: float
    index_bytes: int
    vectors_bytes: int
    zero_norm_items: int
    exact_recall: float
    exact_single_ms_p50: float
    exact_single_ms_p99: float
    exact_batch_ms_per_query: float
    settings: list[IndexSetting]

    @property
    def default(self) -> IndexSetting | None:
        return next((s for s in self.settings if s.is_default), self.settings[0] if self.settings else None)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settings"}
        out = {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}
        out["settings"] = [s.to_dict() for s in self.settings]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> IndexCost:
        ints = ("k", "queries", "sample_queries", "index_bytes", "vectors_bytes", "zero_norm_items")
        kw: dict[str, Any] = {"kind": d["kind"], "param": d.get("param"),
                              "settings": [IndexSetting.from_dict(s) for s in d.get("settings", [])]}
        for f in fields(cls):
            if f.name in kw:
                continue
            kw[f.name] = int(d.get(f.name) or 0) if f.name in ints else _nan(d.get(f.name))
        return cls(**kw)


@dataclass
class ModelResult:
    """One model of the experiment: what it is, how it was trained, and every measured number."""

    name: str
    kind: str
    family: str
    capabilities: dict[str, bool]
    params: dict[str, Any]
    seed: int | None
    run_dir: str | None
    trained_here: bool
    validation: MetricValue | None
    training: TrainingCost
    serving: ServingCost | None
    populations: list[PopulationResult]
    #: a two-stage pipeline's stage models (names in this run) and its N; None for any other model
    stages: dict[str, Any] | None = None
    index: IndexCost | None = None
    #: "model" (compared), "baseline", "pipeline", "contrast" (trained inside compare to test a claim,
    #: e.g. WALS at w0 = 0 against the chosen w0) or "variant" (another use of a fitted model, e.g. WALS
    #: with the MAP fold-in); ``variant_of`` names the model a contrast or variant varies
    role: str = "model"
    variant_of: str | None = None
    #: model seeds the figures combine (``--repeats``; 1 for a loaded run)
    repeats: int = 1
    #: the tuning on validation that chose ``params`` (``--tune``; None when not tuned)
    tuning: dict[str, Any] | None = None

    def population(self, pid: PopulationId) -> PopulationResult | None:
        for p in self.populations:
            if p.population == pid:
                return p
        return None

    @property
    def warm(self) -> PopulationResult | None:
        return self.population(WARM)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "family": self.family, "capabilities": dict(self.capabilities),
                "params": self.params, "seed": self.seed, "run_dir": self.run_dir, "trained_here": self.trained_here,
                "validation": None if self.validation is None else self.validation.to_dict(),
                "training": self.training.to_dict(),
                "serving": None if self.serving is None else self.serving.to_dict(),
                "populations": [p.to_dict() for p in self.populations],
                "index": None if self.index is None else self.index.to_dict(), "role": self.role,
                "variant_of": self.variant_of, "repeats": self.repeats, "tuning": self.tuning} | (
                    {} if self.stages is None else {"stages": dict(self.stages)})

    @classmethod
    def from_dict(cls, d: dict) -> ModelResult:
        return cls(d["name"], d["kind"], d["family"], dict(d["capabilities"]), dict(d["params"]), d.get("seed"),
                   d.get("run_dir"), bool(d.get("trained_here")),
                   None if d.get("validation") is None else MetricValue.from_dict(d["validation"]),
                   TrainingCost.from_dict(d["training"]),
                   None if d.get("serving") is None else ServingCost.from_dict(d["serving"]),
                   [PopulationResult.from_dict(p) for p in d["populations"]],
                   stages=None if d.get("stages") is None else dict(d["stages"]),
                   index=None if d.get("index") is None else IndexCost.from_dict(d["index"]),
                   role=d.get("role", "model"), variant_of=d.get("variant_of"), repeats=int(d.get("repeats") or 1),
                   tuning=d.get("tuning"))


@dataclass
class PairedTest:
    """Paired two-level bootstrap (model seeds, then the same users) of ``a − b`` for one metric on one
    population. ``p`` is the raw p-value, ``p_adjusted`` the Holm–Bonferroni one within its ``family``
    (see :class:`TestFamily`); ``significant`` means the adjusted p is below 1 − the confidence level."""

    a: str
    b: str
    population: PopulationId
    metric: str
    k: int | None
    diff: float
    ci: tuple[float, float] | None
    p: float
    significant: bool
    p_adjusted: float = float("nan")
    family: str = ""
    se: float = float("nan")

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "population": self.population.to_dict(), "metric": self.metric, "k": self.k,
                "diff": _num(self.diff), "ci": _interval(self.ci), "se": _num(self.se), "p": _num(self.p),
                "p_adjusted": _num(self.p_adjusted), "family": self.family, "significant": self.significant}

    @classmethod
    def from_dict(cls, d: dict) -> PairedTest:
        ci = d.get("ci")
        return cls(d["a"], d["b"], PopulationId.from_dict(d["population"]), d["metric"], d.get("k"),
                   _nan(d.get("diff")), None if ci is None else (_nan(ci[0]), _nan(ci[1])), _nan(d.get("p")),
                   bool(d.get("significant")), _nan(d.get("p_adjusted")), d.get("family", ""), _nan(d.get("se")))


@dataclass
class TestFamily:
    """A family of paired tests whose p-values are adjusted together (Holm–Bonferroni, ``method``)."""

    name: str
    description: str
    size: int
    method: str = "holm"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TestFamily:
        return cls(d["name"], d["description"], int(d["size"]), d.get("method", "holm"))


@dataclass
class FoldingResult:
    """The folding index of one model on one population at cut-off ``k``:
    (leakage − natural) / (random's leakage − natural), with its two-level bootstrap interval; 0 = as
    separated as the data's own cross-group rate, 1 = as mixed as random recommendations.
    ``weak_groups``: random's leakage lies inside the natural rate's interval (groups too weak to see folding)."""

    model: str
    population: PopulationId
    k: int
    index: float
    ci: tuple[float, float] | None
    leakage: float
    natural: float
    natural_ci: tuple[float, float] | None
    random_leakage: float
    random_ci: tuple[float, float] | None
    weak_groups: bool

    def to_dict(self) -> dict:
        return {"model": self.model, "population": self.population.to_dict(), "k": self.k, "index": _num(self.index),
                "ci": _interval(self.ci), "leakage": _num(self.leakage), "natural": _num(self.natural),
                "natural_ci": _interval(self.natural_ci), "random_leakage": _num(self.random_leakage),
                "random_ci": _interval(self.random_ci), "weak_groups": self.weak_groups}

    @classmethod
    def from_dict(cls, d: dict) -> FoldingResult:
        def tup(c: Any) -> tuple[float, float] | None:
            return None if c is None else (_nan(c[0]), _nan(c[1]))

        return cls(d["model"], PopulationId.from_dict(d["population"]), int(d["k"]), _nan(d.get("index")),
                   tup(d.get("ci")), _nan(d.get("leakage")), _nan(d.get("natural")), tup(d.get("natural_ci")),
                   _nan(d.get("random_leakage")), tup(d.get("random_ci")), bool(d.get("weak_groups")))


@dataclass
class GrowthResult:
    """Training cost of one model on subsamples of this data's training set: the median seconds per
    ``unit`` (iteration / epoch) at each fraction, and the fitted exponent b of seconds ~ interactions^b."""

    model: str
    kind: str
    unit: str
    fractions: list[float]
    interactions: list[int]
    seconds: list[float]
    exponent: float
    r2: float
    repeats: int

    def to_dict(self) -> dict:
        return {"model": self.model, "kind": self.kind, "unit": self.unit, "fractions": list(self.fractions),
                "interactions": [int(x) for x in self.interactions], "seconds": [_num(x) for x in self.seconds],
                "exponent": _num(self.exponent), "r2": _num(self.r2), "repeats": self.repeats}

    @classmethod
    def from_dict(cls, d: dict) -> GrowthResult:
        return cls(d["model"], d["kind"], d["unit"], list(d["fractions"]), list(d["interactions"]),
                   [_nan(x) for x in d["seconds"]], _nan(d.get("exponent")), _nan(d.get("r2")), int(d["repeats"]))


@dataclass
class ComparisonRow:
    """One row of the side-by-side table: a measured quantity for every model, and which of the
    contrasted pair is better.

    ``source`` says where the value comes from: "metric" (a population metric with intervals),
    "scalar" (a population-level count such as coverage), "training" or "serving" (a cost field).
    ``direction``: "higher", "lower", "closer" (to ``target``) or "info" (no better/worse).
    ``better``: a model name, "tie" or None (undefined). ``significant``: from the paired test of the
    contrasted pair (None for single measurements).
    """

    axis: str
    source: str
    quantity: str
    k: int | None
    population: PopulationId | None
    unit: str
    direction: str
    values: dict[str, float | None]
    ci: dict[str, tuple[float, float] | None]
    better: str | None
    significant: bool | None
    p: float | None = None
    diff: float | None = None
    diff_ci: tuple[float, float] | None = None
    target: float | None = None
    p_adjusted: float | None = None

    def to_dict(self) -> dict:
        return {"axis": self.axis, "source": self.source, "quantity": self.quantity, "k": self.k,
                "population": None if self.population is None else self.population.to_dict(), "unit": self.unit,
                "direction": self.direction, "values": {m: _num(v) for m, v in self.values.items()},
                "ci": {m: _interval(c) for m, c in self.ci.items()}, "better": self.better,
                "significant": self.significant, "p": _num(self.p), "diff": _num(self.diff),
                "diff_ci": _interval(self.diff_ci), "target": _num(self.target), "p_adjusted": _num(self.p_adjusted)}

    @classmethod
    def from_dict(cls, d: dict) -> ComparisonRow:
        def tup(c: Any) -> tuple[float, float] | None:
            return None if c is None else (_nan(c[0]), _nan(c[1]))

        pop = d.get("population")
        return cls(d["axis"], d["source"], d["quantity"], d.get("k"),
                   None if pop is None else PopulationId.from_dict(pop), d["unit"], d["direction"],
                   {m: (None if v is None else float(v)) for m, v in d["values"].items()},
                   {m: tup(c) for m, c in d["ci"].items()}, d.get("better"), d.get("significant"),
                   d.get("p"), d.get("diff"), tup(d.get("diff_ci")), d.get("target"), d.get("p_adjusted"))


@dataclass
class Verdict:
    """One row of the trade-off table: the claim, what this run measured for it, and the verdict."""

    axis: str
    claim: str
    verdict: str  # "agrees" | "disagrees" | "cannot tell"
    evidence: str
    #: "measured" (this run's numbers decide) or "by design" (true by construction; the numbers shown
    #: only size it)
    basis: str = "measured"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        return cls(d["axis"], d["claim"], d["verdict"], d["evidence"], d.get("basis", "measured"))


@dataclass
class Settings:
    """How the experiment was run (everything needed, with the data and split, to reproduce it)."""

    seed: int
    ks: list[int]
    main_k: int
    bootstrap: int
    confidence_level: float
    serving_sample: int
    user_features: list[str]
    contrast: list[str]
    engine: str = "local"
    package_version: str = ""
    command: str = ""
    #: model seeds per model (``--repeats``) and tuning trials per learned model (``--tune``; 1 = none)
    repeats: int = 1
    tune: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class Results:
    """Everything one experiment measured. ``to_dict`` is report.json (schema version 3)."""

    dataset: dict
    split: dict
    settings: Settings
    models: list[ModelResult]
    paired: list[PairedTest] = field(default_factory=list)
    comparison: list[ComparisonRow] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    families: list[TestFamily] = field(default_factory=list)
    folding: list[FoldingResult] = field(default_factory=list)
    growth: list[GrowthResult] = field(default_factory=list)
    #: what a reader must not miss (a model that does not beat the best baseline, a population too small,
    #: early stopping before the step budget); shown in the terminal and every report
    warnings: list[str] = field(default_factory=list)

    def model(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"no model named {name!r} in these results ({', '.join(m.name for m in self.models)})")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def population_ids(self) -> list[PopulationId]:
        """Populations in report order: warm first, then cold by revealed count."""
        seen: list[PopulationId] = []
        for m in self.models:
            for p in m.populations:
                if p.population not in seen:
                    seen.append(p.population)
        return sorted(seen, key=lambda p: (0 if p.is_warm else 1, p.revealed or 0))

    def paired_test(self, population: PopulationId, metric: str, k: int | None, a: str | None = None,
                    b: str | None = None) -> PairedTest | None:
        """The paired test of ``a − b`` (default: the contrasted pair) for one metric on one population."""
        if a is None or b is None:
            a, b = (list(self.settings.contrast) + [None, None])[:2]
        for t in self.paired:
            if t.population == population and t.metric == metric and t.k == k and (a is None or (t.a, t.b) == (a, b)):
                return t
        return None

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "dataset": self.dataset, "split": self.split,
                "settings": self.settings.to_dict(), "models": [m.to_dict() for m in self.models],
                "paired": [t.to_dict() for t in self.paired], "comparison": [r.to_dict() for r in self.comparison],
                "verdicts": [v.to_dict() for v in self.verdicts], "notes": list(self.notes),
                "families": [f.to_dict() for f in self.families], "folding": [f.to_dict() for f in self.folding],
                "growth": [g.to_dict() for g in self.growth], "warnings": list(self.warnings)}

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"report schema version {d.get('schema_version')!r}; this mfvsdnn reads {SCHEMA_VERSION}")
        return cls(d["dataset"], d["split"], Settings.from_dict(d["settings"]),
                   [ModelResult.from_dict(m) for m in d["models"]], [PairedTest.from_dict(t) for t in d["paired"]],
                   [ComparisonRow.from_dict(r) for r in d["comparison"]], [Verdict.from_dict(v) for v in d["verdicts"]],
                   list(d.get("notes", [])), [TestFamily.from_dict(f) for f in d.get("families", [])],
                   [FoldingResult.from_dict(f) for f in d.get("folding", [])],
                   [GrowthResult.from_dict(g) for g in d.get("growth", [])], list(d.get("warnings", [])))

    def to_frame(self):
        """One row per (model, population, metric, k): mean and interval, as a pandas DataFrame."""
        import pandas as pd

        rows = []
        for m in self.models:
            for p in m.populations:
                for v in p.values:
                    rows.append({"model": m.name, "kind": m.kind, "population": p.population.kind,
                                 "revealed": p.population.revealed, "users": p.users, "metric": v.metric, "k": v.k,
                                 "mean": v.mean, "ci_low": v.ci[0] if v.ci else float("nan"),
                                 "ci_high": v.ci[1] if v.ci else float("nan")})
        return pd.DataFrame(rows, columns=["model", "kind", "population", "revealed", "users", "metric", "k",
                                           "mean", "ci_low", "ci_high"])


def best_baseline(models: list[ModelResult], pid: PopulationId, k: int, metric: str = "recall") -> ModelResult | None:
    """The baseline (role "baseline") with the highest mean ``metric``@k on population ``pid``; None without one."""
    scored = [(m.population(pid).mean(metric, k), m) for m in models
              if m.role == "baseline" and m.population(pid) is not None]
    scored = [(v, m) for v, m in scored if not math.isnan(v)]
    return max(scored, key=lambda t: t[0])[1] if scored else None


def _jsonable(o: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, NaN/inf floats to None, tuples to lists."""
    import numpy as np

    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_jsonable(v) for v in o.tolist()]
    if isinstance(o, bool | np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(float(o)) else None
    return o


def schema() -> dict:
    """The JSON Schema of report.json (schema version 3), shipped in the package."""
    text = resources.files(__package__).joinpath("report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
