"""Uncertainty of the evaluator's means: bootstrap intervals over users and paired tests.

Numbers only: each function takes per-user metric arrays (keyed by (metric, k), see
``evaluator.metric_arrays``) and returns arrays or tuples of floats.

Two families: over users of one fit (``population_estimates``, ``paired_estimates``), and over model
seeds and users of R fits on the same users (``repeat_estimates``, ``repeat_paired``,
``folding_estimate``, ``folding_contrast``), with ``holm`` to correct a family of p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


# ---------------------------------------------------------------------------------------------
# Repeated fits: a two-level bootstrap over model seeds and users
#
# A model fitted with R seeds and evaluated on the same q users gives values x[s, u] (seed s, user u,
# NaN = undefined). Each resample b draws seed counts c[b] ~ Multinomial(R, 1/R) and user counts
# w[b] ~ Multinomial(q, 1/q) (one user draw shared by every metric and every model of the call, so
# differences stay paired over users) and takes the weighted mean over the chosen (seed, user) cells:
#     mean*[b] = Σ_s Σ_u c[b,s] w[b,u] x[s,u] / Σ_s Σ_u c[b,s] w[b,u] valid[s,u]
# Only (b, q) user counts are ever held, in blocks of at most ``max_block`` entries; seeds enter as
# (b, R) weights on the R per-seed sums W x[s]ᵀ, so nothing of size n_boot · R · q is built.
# Without NaN the variance of mean* given the data is exactly σa²/R + σb²/q + σe²/(Rq), with σa², σb², σe²
# the seed, user and residual variances of x's two-way decomposition (divided by R, q and Rq): the
# plug-in variance of the grand mean. Its seed term is (R − 1)/R of the unbiased one, so with few seeds
# the seed share of the interval is somewhat narrow (2/3 at R = 3).


@dataclass(frozen=True)
class RepeatEstimate:
    """A mean over R fits and their users with its two-level bootstrap interval and standard error.

    mean = mean of the per-seed means (``seed_means``, each NaN-ignoring over users); seed_sd = their
    sample standard deviation (NaN for R = 1); se = standard deviation of the bootstrap means."""

    mean: float
    low: float
    high: float
    se: float
    seed_sd: float
    seed_means: tuple[float, ...]


@dataclass(frozen=True)
class RepeatPaired:
    """a − b over the same users, with its two-level bootstrap interval, standard error and p-value."""

    diff: float
    low: float
    high: float
    se: float
    p: float


@dataclass(frozen=True)
class FoldingEstimate:
    """Folding index (leak − natural) / (random_leak − natural) with its interval, and its three parts.

    0 = the model's top-k crosses groups as often as the users' own held-out items do, 1 = as often as
    random recommendations. weak_groups: random's leakage lies within the natural rate's interval, so the
    groups carry too little signal for folding to show (also True when there is no interval)."""

    index: float
    low: float
    high: float
    leak: float
    natural: float
    natural_low: float
    natural_high: float
    random_leak: float
    random_low: float
    random_high: float
    weak_groups: bool


@dataclass(frozen=True)
class _Fits:
    """One model's R fits stacked for the bootstrap.

    values (R, m, q): the per-user values of m metrics, undefined cells set to 0. The denominator of a
    metric row is ``valid`` (m, q) 0/1, the users counted in every fit (None = every user), except for
    the rows ``rows`` counted per (seed, user) cell: ``cell_valid`` (R, len(rows), q) 0/1."""

    values: np.ndarray  # C-contiguous, so (R, m, q) -> (R·m, q) is a view
    valid: np.ndarray | None
    rows: np.ndarray
    cell_valid: np.ndarray | None

    @property
    def n_seeds(self) -> int:
        return self.values.shape[0]

    def seed_means(self) -> np.ndarray:
        """(R, m) mean over defined users of each fit (NaN where no user is defined)."""
        n_seeds, m, q = self.values.shape
        num = self.values.sum(axis=2)
        den = np.broadcast_to(np.float64(q) if self.valid is None else self.valid.sum(axis=1), (n_seeds, m)).copy()
        if self.rows.size:
            den[:, self.rows] = self.cell_valid.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def resampled_means(self, user_counts: np.ndarray, seed_counts: np.ndarray) -> np.ndarray:
        """(b, m) mean*[b] of the equation above for user counts (b, q) and seed counts (b, R).

        The per-seed user sums of every fit come from one product with the user counts (a single pass
        over them: the product is bound by reading them), then seeds are weighted: (R, m, b) -> (b, m)."""
        n_seeds, m, q = self.values.shape
        sums = (self.values.reshape(n_seeds * m, q) @ user_counts.T).reshape(n_seeds, m, -1)
        num = np.einsum("bs,smb->bm", seed_counts, sums)
        if self.valid is None:
            den = np.repeat(n_seeds * user_counts.sum(axis=1)[:, None], m, axis=1)
        else:  # Σ_s c[b,s] = R, so a denominator shared by every fit is R · W validᵀ
            den = n_seeds * (self.valid @ user_counts.T).T
        if self.rows.size:
            rows = len(self.rows)
            cells = (self.cell_valid.reshape(n_seeds * rows, q) @ user_counts.T).reshape(n_seeds, rows, -1)
            den[:, self.rows] = np.einsum("bs,smb->bm", seed_counts, cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _check(evs: Sequence[PopulationEval], what: str) -> np.ndarray:
    """The users shared by every evaluation in ``evs`` (ValueError when empty or on different users)."""
    if not evs:
        raise ValueError(f"{what}: no evaluations")
    users = evs[0].users
    for ev in evs[1:]:
        if not np.array_equal(ev.users, users):
            raise ValueError(f"population {ev.name}: the repeated evaluations are on different users")
    return users


def _check_settings(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _stack(evs: Sequence[PopulationEval], keys: list[MetricKey]) -> np.ndarray:
    """(R, m, q) per-user values of ``keys`` in every fit."""
    return np.stack([np.vstack([np.asarray(ev.per_user[key], dtype=np.float64) for key in keys]) for ev in evs])


def _masked_fits(values: np.ndarray, mask: np.ndarray) -> _Fits:
    """Fits counted on the users of ``mask`` (m, q) bool only (the same users in every fit)."""
    return _Fits(np.where(mask, values, 0.0), mask.astype(np.float64), np.zeros(0, dtype=np.int64), None)


def _user_counts(rng: np.random.Generator, b: int, q: int) -> np.ndarray:
    """(b, q) float64: how often each user is drawn in each of b resamples (each row sums to q)."""
    idx = rng.integers(0, q, size=(b, q))  # the draws of metrics.bootstrap_means, in the same order
    counts = np.empty((b, q))
    for row in range(b):
        counts[row] = np.bincount(idx[row], minlength=q)
    return counts


def _seed_counts(rng: np.random.Generator, b: int, n_seeds: int) -> np.ndarray:
    """(b, R) float64: how often each fit is drawn in each of b resamples (a single fit: always once)."""
    if n_seeds == 1:
        return np.ones((b, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b).astype(np.float64)


def _bootstrap(fits: Sequence[_Fits], q: int, n_boot: int, rng: np.random.Generator,
               max_block: int) -> list[np.ndarray]:
    """The (n_boot, m) bootstrap means of each of ``fits``: per resample one user draw shared by all of
    them, and an independent seed draw for each (different models are independent fits)."""
    out = [np.full((n_boot, f.values.shape[1]), np.nan) for f in fits]
    if q == 0 or n_boot == 0:
        return out
    block = max(1, min(n_boot, max_block // q))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        users = _user_counts(rng, b, q)
        for f, boot in zip(fits, out, strict=True):
            boot[start:start + b] = f.resampled_means(users, _seed_counts(rng, b, f.n_seeds))
    return out


def _sd(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample standard deviation (ddof 1) ignoring NaN; NaN with fewer than two values."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=axis)
    mean = np.where(ok, x, 0.0).sum(axis=axis) / np.maximum(n, 1)
    dev = np.where(ok, x - np.expand_dims(mean, axis), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, np.sqrt((dev ** 2).sum(axis=axis) / np.maximum(n - 1, 1)), np.nan)


def _normal_p(diff: float, se: float) -> float:
    """Two-sided p = 2 (1 − Φ(|diff| / se)) = erfc(|diff| / (se √2)); 1 for 0 / 0, 0 for a nonzero / 0.

    A normal approximation from the bootstrap standard error rather than the share of resamples across
    0: that share cannot go below ~1 / n_boot (0.002 with 1000 resamples), and Holm over ~60 tests
    needs smaller p-values to call anything."""
    if math.isnan(diff) or math.isnan(se):
        return float("nan")
    if se == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    return math.erfc(abs(diff) / (se * math.sqrt(2.0)))


def _paired(diff: float, boot: np.ndarray, level: float) -> RepeatPaired:
    """RepeatPaired from a point difference and its (n_boot,) bootstrap distribution."""
    lo, hi = metrics.percentile_interval(boot[:, None], level)
    se = float(_sd(boot[:, None])[0])
    return RepeatPaired(float(diff), float(lo[0]), float(hi[0]), se, _normal_p(float(diff), se))


def _mean_over_seeds(fits: _Fits) -> np.ndarray:
    """(m,) mean of the per-seed means (seeds where a metric is undefined left out)."""
    sm = fits.seed_means()
    ok = ~np.isnan(sm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(axis=0), np.where(ok, sm, 0.0).sum(axis=0) / ok.sum(axis=0), np.nan)


def repeat_estimates(evs: Sequence[PopulationEval], n_boot: int, rng: np.random.Generator,
                     level: float = 0.95, max_block: int = 2_000_000) -> dict[MetricKey, RepeatEstimate]:
    """Mean and two-level bootstrap interval (seeds, then users) of every metric all R fits have.

    evs: R evaluations of one model (one per model seed) on the same users in the same order.
    mean = (1/R) Σ_s mean_u x[s, u]; the interval is the percentile interval of mean* (equation above)
    at ``level``; se its standard deviation. With R = 1 this is ``population_estimates``' bootstrap."""
    _check_settings(n_boot, level)
    users = _check(evs, "repeat_estimates")
    keys = [key for key in evs[0].per_user if all(key in ev.per_user for ev in evs)]
    if not keys:
        return {}
    values = _stack(evs, keys)  # (R, m, q)
    defined = ~np.isnan(values)
    rows = np.flatnonzero(~defined.all(axis=(0, 2)))  # metrics undefined for some (seed, user) cell
    fits = _Fits(np.where(defined, values, 0.0), None, rows,
                 defined[:, rows, :].astype(np.float64) if rows.size else None)
    del values, defined
    seed_means = fits.seed_means()  # (R, m)
    mean = _mean_over_seeds(fits)
    seed_sd = _sd(seed_means) if fits.n_seeds > 1 else np.full(len(keys), np.nan)
    boot = _bootstrap([fits], len(users), n_boot, rng, max_block)[0]
    lo, hi = metrics.percentile_interval(boot, level)
    se = _sd(boot)
    return {key: RepeatEstimate(float(mean[j]), float(lo[j]), float(hi[j]), float(se[j]), float(seed_sd[j]),
                                tuple(float(v) for v in seed_means[:, j]))
            for j, key in enumerate(keys)}


def repeat_paired(a: Sequence[PopulationEval], b: Sequence[PopulationEval], n_boot: int,
                  rng: np.random.Generator, level: float = 0.95,
                  max_block: int = 2_000_000) -> dict[MetricKey, RepeatPaired]:
    """Paired two-level bootstrap of mean(a) − mean(b) for every metric all fits of a and b have.

    a (R_a fits) and b (R_b fits) are independent fits on the same users: each resample draws the seeds
    of a and of b independently and the users once for both. A metric is counted on the users defined in
    every fit of a and of b (with one fit each: the users where both are defined, as
    ``paired_estimates``). diff = mean over a's seeds − mean over b's seeds; p from ``_normal_p``."""
    _check_settings(n_boot, level)
    users = _check(list(a) + list(b), "repeat_paired")
    keys = [key for key in a[0].per_user if all(key in ev.per_user for ev in list(a) + list(b))]
    if not keys:
        return {}
    values_a, values_b = _stack(a, keys), _stack(b, keys)
    mask = ~np.isnan(values_a).any(axis=0) & ~np.isnan(values_b).any(axis=0)  # (m, q)
    fits_a, fits_b = _masked_fits(values_a, mask), _masked_fits(values_b, mask)
    del values_a, values_b
    diff = _mean_over_seeds(fits_a) - _mean_over_seeds(fits_b)
    boot_a, boot_b = _bootstrap([fits_a, fits_b], len(users), n_boot, rng, max_block)
    boot = boot_a - boot_b
    return {key: _paired(diff[j], boot[:, j], level) for j, key in enumerate(keys)}


def _folding_fits(model_sets: Sequence[Sequence[PopulationEval]], random_evs: Sequence[PopulationEval],
                  k: int) -> tuple[_Fits, list[_Fits], _Fits]:
    """(natural, [each model's leakage fits], random's leakage fits), all counted on the users where the
    natural rate and every fit's leakage@k are defined."""
    every = [ev for evs in model_sets for ev in evs] + list(random_evs)
    _check(every, "folding")
    leak_key, natural_key = ("leakage", k), ("natural_cross_rate", None)
    for ev in every:
        if leak_key not in ev.per_user:
            raise ValueError(f"population {ev.name}: no leakage@{k} (the data has no item groups?)")
    if natural_key not in model_sets[0][0].per_user:
        raise ValueError(f"population {model_sets[0][0].name}: no natural cross-group rate")
    # the natural rate is a property of the targets, the same for every model: take the first model's
    natural = np.asarray(model_sets[0][0].per_user[natural_key], dtype=np.float64)[None, None, :]
    leaks = [_stack(evs, [leak_key]) for evs in model_sets] + [_stack(random_evs, [leak_key])]
    mask = ~np.isnan(natural[0])
    for leak in leaks:
        mask &= ~np.isnan(leak).any(axis=0)
    fits = [_masked_fits(leak, mask) for leak in leaks]
    return _masked_fits(natural, mask), fits[:-1], fits[-1]


def _index(leak: np.ndarray, natural: np.ndarray, random_leak: np.ndarray) -> np.ndarray:
    """Folding index (leak − natural) / (random_leak − natural), NaN where random does not leak beyond
    the natural rate (denominator <= 0: no scale to measure folding on)."""
    den = random_leak - natural
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (leak - natural) / np.where(den > 0, den, 1.0), np.nan)


def _index_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap indices; NaN when more than (1 − level)/2 of the resamples have no
    index (random within the natural rate there: the index is unbounded, so no interval can be claimed)."""
    undefined = np.isnan(boot).mean() if len(boot) else 1.0
    if undefined > (1.0 - level) / 2.0:
        return float("nan"), float("nan")
    lo, hi = metrics.percentile_interval(boot[:, None], level)
    return float(lo[0]), float(hi[0])


def folding_estimate(model_evs: Sequence[PopulationEval], random_evs: Sequence[PopulationEval], k: int,
                     n_boot: int, rng: np.random.Generator, level: float = 0.95,
                     max_block: int = 2_000_000) -> FoldingEstimate:
    """Folding index of a model at k with its two-level bootstrap interval.

    Per user u (defined in every fit): leak[s, u] = leakage@k of the model's fit s, rand[t, u] = that of
    random's fit t, nat[u] = natural cross-group rate of u's held-out items (from model_evs[0]).
    index = (mean leak − mean nat) / (mean rand − mean nat), each mean over seeds then users; every
    resample draws the model's seeds, random's seeds and the users (once for all three) and recomputes
    the index, so its interval carries the covariance of the three parts. weak_groups = random's mean
    leakage inside the natural rate's interval [natural_low, natural_high] (or no interval)."""
    _check_settings(n_boot, level)
    natural, (leak,), random_leak = _folding_fits([model_evs], random_evs, k)
    nat_mean = float(_mean_over_seeds(natural)[0])
    leak_mean = float(_mean_over_seeds(leak)[0])
    rand_mean = float(_mean_over_seeds(random_leak)[0])
    boot_nat, boot_leak, boot_rand = (x[:, 0] for x in _bootstrap([natural, leak, random_leak],
                                                                   natural.values.shape[2], n_boot, rng,
                                                                   max_block))
    lo, hi = _index_interval(_index(boot_leak, boot_nat, boot_rand), level)
    (nat_lo,), (nat_hi,) = metrics.percentile_interval(boot_nat[:, None], level)
    (rand_lo,), (rand_hi,) = metrics.percentile_interval(boot_rand[:, None], level)
    # written as 'not outside' so that a NaN bound (no resamples) or a NaN mean counts as weak
    weak = not (rand_mean < nat_lo or rand_mean > nat_hi)
    return FoldingEstimate(float(_index(np.float64(leak_mean), np.float64(nat_mean), np.float64(rand_mean))),
                           lo, hi, leak_mean, nat_mean, float(nat_lo), float(nat_hi), rand_mean,
                           float(rand_lo), float(rand_hi), bool(weak))


def folding_contrast(a_evs: Sequence[PopulationEval], b_evs: Sequence[PopulationEval],
                     random_evs: Sequence[PopulationEval], k: int, n_boot: int, rng: np.random.Generator,
                     level: float = 0.95, max_block: int = 2_000_000) -> RepeatPaired:
    """index(a) − index(b) at k (e.g. WALS with w0 = 0 against the chosen w0), on shared resamples.

    Both indices use the same natural rate and random's leakage on the same users (those defined in
    every fit of a, b and random); each resample draws a's, b's and random's seeds independently and
    the users once. NaN diff where either index is undefined; resamples without both indices are left
    out of the interval and the standard error."""
    _check_settings(n_boot, level)
    natural, (leak_a, leak_b), random_leak = _folding_fits([a_evs, b_evs], random_evs, k)
    nat, rand = _mean_over_seeds(natural), _mean_over_seeds(random_leak)
    diff = float((_index(_mean_over_seeds(leak_a), nat, rand) - _index(_mean_over_seeds(leak_b), nat, rand))[0])
    boot_nat, boot_a, boot_b, boot_rand = (x[:, 0] for x in _bootstrap([natural, leak_a, leak_b, random_leak],
                                                                        natural.values.shape[2], n_boot,
                                                                        rng, max_block))
    boot = _index(boot_a, boot_nat, boot_rand) - _index(boot_b, boot_nat, boot_rand)
    return _paired(diff, boot, level)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the order given.

    With the m non-NaN p-values sorted ascending p_(1) <= ... <= p_(m):
        adj_(i) = min(1, max_{j <= i} (m − j + 1) · p_(j))   (step-down, so monotone in p)
    NaN entries stay NaN and are not counted in m. Rejecting adj < α controls the family-wise error at α."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must be in [0, 1]")
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out
