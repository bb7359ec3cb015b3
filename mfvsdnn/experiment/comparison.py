"""The side-by-side table: every model's value of each measured quantity, grouped by the trade-off
axes, with which of the contrasted pair is better and whether the paired test finds it significant.

Numbers and decisions only; the report layer names the rows and explains them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .results import WARM, ComparisonRow, ModelResult, PopulationId, Results, cold

AXES = ("retrieval quality (warm users)", "query features", "cold start", "folding",
        "training scalability", "serving scalability")

#: single timings within this relative difference of each other are a tie (they are noisy)
TIMING_TIE = 0.10


@dataclass(frozen=True)
class CostField:
    source: str  # "training" or "serving"
    quantity: str
    unit: str
    direction: str = "lower"


TRAINING_FIELDS = (CostField("training", "seconds", "s"), CostField("training", "seconds_per_iteration", "s"),
                   CostField("training", "iterations", "count", "info"))
SERVING_FIELDS = (CostField("serving", "query_ms_p50", "ms"), CostField("serving", "query_ms_p99", "ms"),
                  CostField("serving", "cold_query_ms_p50", "ms"), CostField("serving", "topk_ms_p50", "ms"),
                  CostField("serving", "topk_ms_p99", "ms"), CostField("serving", "batch_ms_per_query", "ms"),
                  CostField("serving", "cache_build_seconds", "s"), CostField("serving", "cache_bytes", "bytes"),
                  CostField("serving", "model_bytes", "bytes"))


def better_of(va: float | None, vb: float | None, names: tuple[str, str], direction: str,
              target: float | None = None, tie_rel: float = 0.0) -> str | None:
    """Which of two values is better: by 'higher', 'lower', or 'closer' (to ``target``).

    Returns a name, "tie", or None when either value (or the target) is undefined or the row is 'info'.
    Values within ``tie_rel`` relative difference are a tie.
    """
    if va is None or vb is None or any(math.isnan(float(v)) for v in (va, vb)) or direction == "info":
        return None
    if tie_rel and abs(va - vb) <= tie_rel * max(abs(va), abs(vb)):
        return "tie"
    if direction == "closer":
        if target is None or math.isnan(target):
            return None
        va, vb = -abs(va - target), -abs(vb - target)
    elif direction == "lower":
        va, vb = -va, -vb
    if va == vb:
        return "tie"
    return names[0] if va > vb else names[1]


def _cost_value(m: ModelResult, f: CostField) -> float | None:
    block = m.training if f.source == "training" else m.serving
    if block is None:
        return None
    v = getattr(block, f.quantity)
    return None if v is None else float(v)


def comparison_rows(results: Results) -> list[ComparisonRow]:
    """Rows of the side-by-side table, in axis order."""
    models = results.models
    names = [m.name for m in models]
    contrast = tuple(results.settings.contrast)
    k = results.settings.main_k
    rows: list[ComparisonRow] = []
    if len(contrast) != 2:
        return rows
    a, b = contrast
    by = {m.name: m for m in models}

    def metric_row(axis: str, metric: str, pid: PopulationId, direction: str = "higher",
                   target: float | None = None, source: str = "metric") -> None:
        pops = {n: by[n].population(pid) for n in names}
        if pops[a] is None or pops[b] is None or pops[a].get(metric, k) is None:
            return
        values = {n: (p.mean(metric, k) if p is not None and p.get(metric, k) is not None else None)
                  for n, p in pops.items()}
        cis = {n: (p.get(metric, k).ci if p is not None and p.get(metric, k) is not None else None)
               for n, p in pops.items()}
        better = better_of(values[a], values[b], contrast, direction, target)
        test = results.paired_test(pid, metric, k) if source == "metric" else None
        if direction == "info" or source != "metric":
            significant = None
        elif better in (None, "tie") or test is None:
            significant = False
        else:
            significant = test.significant
        rows.append(ComparisonRow(axis, source, metric, k, pid, "share", direction, values, cis, better, significant,
                                  None if test is None else test.p, None if test is None else test.diff,
                                  None if test is None else test.ci, target,
                                  None if test is None else test.p_adjusted))

    def cost_row(axis: str, f: CostField) -> None:
        values = {n: _cost_value(by[n], f) for n in names}
        tie = TIMING_TIE if f.unit in ("s", "ms") else 0.0
        rows.append(ComparisonRow(axis, f.source, f.quantity, None, None, f.unit, f.direction, values,
                                  {n: None for n in names}, better_of(values[a], values[b], contrast, f.direction,
                                                                      tie_rel=tie), None))

    quality, features, cold_start, folding, training, serving = AXES
    for metric in ("recall", "ndcg", "precision", "hit_rate"):
        metric_row(quality, metric, WARM)
    metric_row(quality, "coverage", WARM, source="scalar")
    metric_row(quality, "popularity", WARM, "info")

    cold_ids = sorted({p.population for m in models for p in m.populations if not p.population.is_warm},
                      key=lambda p: p.revealed)
    if cold(0) in cold_ids:
        metric_row(features, "recall", cold(0))
        metric_row(features, "ndcg", cold(0))
    for pid in cold_ids:
        metric_row(cold_start, "recall", pid)

    for pid in [WARM] + cold_ids[-1:]:
        base = by[a].population(pid)
        natural = None if base is None else base.mean("natural_cross_rate")
        if natural is None or math.isnan(natural):
            continue
        metric_row(folding, "leakage", pid, "closer", natural)

    for f in TRAINING_FIELDS:
        cost_row(training, f)
    if all(m.serving is not None for m in (by[a], by[b])):
        for f in SERVING_FIELDS:
            cost_row(serving, f)
    return rows
