"""Uncertainty of the evaluator's means: bootstrap intervals over users and paired tests.

Numbers only: each function takes per-user metric arrays (keyed by (metric, k), see
``evaluator.metric_arrays``) and returns arrays or tuples of floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import metrics
from .evaluator import MetricKey, PopulationEval


@dataclass(frozen=True)
class Estimate:
    """A mean over users with its percentile-bootstrap interval (NaN bounds without resamples)."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedEstimate:
    """Mean paired difference a − b over the same users, its interval and the bootstrap p-value."""

    diff: float
    low: float
    high: float
    p: float


def nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def population_estimates(ev: PopulationEval, n_boot: int, rng: np.random.Generator,
                         level: float = 0.95) -> dict[MetricKey, Estimate]:
    """Mean and bootstrap interval of every per-user metric of one population (one shared resampling)."""
    keys = list(ev.per_user)
    q = len(ev.users)
    if not keys:
        return {}
    mat = np.vstack([ev.per_user[key] for key in keys])  # (m, q)
    lo = hi = np.full(len(keys), np.nan)
    if n_boot > 0 and q > 0:
        lo, hi = metrics.percentile_interval(metrics.bootstrap_means(mat, n_boot, rng), level)
    return {key: Estimate(nanmean(mat[j]), float(lo[j]), float(hi[j])) for j, key in enumerate(keys)}


def paired_estimates(a: PopulationEval, b: PopulationEval, n_boot: int, rng: np.random.Generator,
                     level: float = 0.95) -> dict[MetricKey, PairedEstimate]:
    """Paired bootstrap of ``a − b`` over the same users for every metric both evaluations have."""
    if not np.array_equal(a.users, b.users):
        raise ValueError(f"population {a.name}: the two evaluations are on different users")
    keys = [key for key in a.per_user if key in b.per_user]
    if not keys or len(a.users) == 0:
        return {}
    diff = np.vstack([a.per_user[key] - b.per_user[key] for key in keys])  # NaN where either is undefined
    if n_boot > 0:
        boot = metrics.bootstrap_means(diff, n_boot, rng)
        lo, hi = metrics.percentile_interval(boot, level)
        p = metrics.paired_p_value(boot)
    else:
        lo = hi = p = np.full(len(keys), np.nan)
    return {key: PairedEstimate(nanmean(diff[j]), float(lo[j]), float(hi[j]), float(p[j]))
            for j, key in enumerate(keys)}


def is_significant(p: float, level: float = 0.95) -> bool:
    """A difference is significant when its p-value is below 1 − level (NaN: not significant)."""
    return (not math.isnan(p)) and p < 1 - level


def group_means(ev: PopulationEval, group_names: list[str],
                metric_names: tuple[str, ...] = ("recall", "leakage", "natural_cross_rate")
                ) -> list[tuple[str, int, dict[MetricKey, float]]]:
    """Means of the named metrics over the users of each group: [(group, users, {key: mean})]."""
    if ev.user_group is None or not group_names:
        return []
    keys = [key for key in ev.per_user if key[0] in metric_names]
    out = []
    for g, name in enumerate(group_names):
        members = ev.user_group == g
        if members.any():
            out.append((name, int(members.sum()), {key: nanmean(ev.per_user[key][members]) for key in keys}))
    return out
