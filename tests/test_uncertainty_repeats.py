"""Repeated fits: two-level bootstrap (seeds, then users), paired tests, Holm, folding index.

Every test builds PopulationEval objects from small constructed arrays with a known answer.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from mfvsdnn.evaluation import metrics
from mfvsdnn.evaluation.evaluator import PopulationEval
from mfvsdnn.evaluation.uncertainty import (
    folding_contrast,
    folding_estimate,
    holm,
    population_estimates,
    repeat_estimates,
    repeat_paired,
)

KEY = ("metric", 10)
OTHER = ("other", 10)
LEAK = ("leakage", 20)
NATURAL = ("natural_cross_rate", None)


def ev(per_user: dict, q: int | None = None) -> PopulationEval:
    q = len(next(iter(per_user.values()))) if q is None else q
    return PopulationEval("warm", np.arange(q), {key: np.asarray(v, dtype=np.float64) for key, v in per_user.items()},
                          {}, None, "column", 0.0, 0.0)


def fits(matrix: np.ndarray, key=KEY, extra: dict | None = None) -> list[PopulationEval]:
    """One evaluation per row of ``matrix`` (R, q): the R fits of one model."""
    return [ev({key: row, **(extra or {})}) for row in matrix]


def exact_component(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    """n values with mean exactly 0 and population (÷ n) standard deviation exactly ``sd``."""
    x = rng.standard_normal(n)
    x -= x.mean()
    return x * (sd / math.sqrt((x ** 2).mean()))


# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_ties_nan_and_cap():
    out = holm([0.02, 0.02, float("nan"), 0.5])  # m = 3: 3·0.02, max(0.06, 2·0.02), 0.5
    assert out[[0, 1, 3]] == pytest.approx([0.06, 0.06, 0.5]) and math.isnan(out[2])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 1.2 and max(1.2, 0.7), capped
    assert holm([0.3]) == pytest.approx([0.3])
    assert holm([]).shape == (0,)
    assert np.isnan(holm([float("nan")] * 2)).all()


def test_holm_monotone_and_above_raw():
    p = np.random.default_rng(3).uniform(0, 0.2, 40)
    adj = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)
    assert adj[order[0]] == pytest.approx(min(1.0, 40 * p[order[0]]))


def test_holm_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


# ---------------------------------------------------------------------------------------------
# Two-level bootstrap of a mean


def crossed_data(n_seeds: int, q: int, sd_seed: float, sd_user: float, sd_noise: float, seed: int = 0):
    """value[s, u] = 0.3 + seed_effect[s] + user_effect[u] + noise[s, u], with the seed, user and
    residual (÷ n) variances exactly sd² (noise double-centred so the three parts are orthogonal)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_seeds, q))
    noise = noise - noise.mean(axis=1, keepdims=True) - noise.mean(axis=0, keepdims=True) + noise.mean()
    noise *= sd_noise / math.sqrt((noise ** 2).mean())
    return (0.3 + exact_component(rng, n_seeds, sd_seed)[:, None] + exact_component(rng, q, sd_user)[None, :]
            + noise)


def test_two_level_bootstrap_recovers_the_variance_of_the_grand_mean():
    n_seeds, q, sd_seed, sd_user, sd_noise = 10, 300, 0.05, 0.3, 0.1
    values = crossed_data(n_seeds, q, sd_seed, sd_user, sd_noise)
    est = repeat_estimates(fits(values), 2000, np.random.default_rng(1))[KEY]
    # Given the data, resampling seeds and users independently gives the grand mean the variance
    # σa²/R + σb²/q + σe²/(Rq) with the components' ÷ n variances (derivation in uncertainty.py).
    plug_in = sd_seed ** 2 / n_seeds + sd_user ** 2 / q + sd_noise ** 2 / (n_seeds * q)
    assert est.se ** 2 == pytest.approx(plug_in, rel=0.10)
    # The variance of the grand mean of a model with these (unbiased) component variances is within
    # 25% of it: only the seed term differs, by (R − 1)/R.
    unbiased = (sd_seed ** 2 * n_seeds / (n_seeds - 1) / n_seeds + sd_user ** 2 * q / (q - 1) / q
                + sd_noise ** 2 * n_seeds * q / ((n_seeds - 1) * (q - 1)) / (n_seeds * q))
    assert est.se ** 2 == pytest.approx(unbiased, rel=0.25)
    # the seed part is really there: users alone would give a much narrower interval
    assert est.se ** 2 > 1.5 * sd_user ** 2 / q
    assert est.mean == pytest.approx(values.mean())
    assert est.seed_means == pytest.approx(tuple(values.mean(axis=1)))
    assert est.seed_sd == pytest.approx(np.std(values.mean(axis=1), ddof=1))
    assert est.low < est.mean < est.high


def test_a_single_fit_is_the_user_only_bootstrap():
    rng = np.random.default_rng(5)
    other = rng.uniform(0, 1, 250)
    other[rng.random(250) < 0.2] = np.nan  # undefined for some users
    one = ev({KEY: rng.uniform(0, 1, 250), OTHER: other})
    rep = repeat_estimates([one], 500, np.random.default_rng(9))
    pop = population_estimates(one, 500, np.random.default_rng(9))
    for key in (KEY, OTHER):
        # the same generator draws the same user resamples in the same order: the same numbers
        assert (rep[key].mean, rep[key].low, rep[key].high) == pytest.approx((pop[key].mean, pop[key].low,
                                                                              pop[key].high), rel=1e-12)
        assert math.isnan(rep[key].seed_sd) and len(rep[key].seed_means) == 1
    # in distribution too: its se is the spread of metrics.bootstrap_means on other resamples
    boot = metrics.bootstrap_means(one.per_user[KEY][None, :], 2000, np.random.default_rng(11))[:, 0]
    rep = repeat_estimates([one], 2000, np.random.default_rng(12))[KEY]
    assert rep.se == pytest.approx(boot.std(ddof=1), rel=0.10)


def test_nan_cells_are_left_out_per_seed():
    values = np.array([[0.2, 0.4, np.nan, 0.6], [0.3, np.nan, 0.5, 0.7]])
    est = repeat_estimates(fits(values), 200, np.random.default_rng(0))[KEY]
    assert est.seed_means == pytest.approx((0.4, 0.5))
    assert est.mean == pytest.approx(0.45) and est.seed_sd == pytest.approx(np.std([0.4, 0.5], ddof=1))
    assert 0.2 <= est.low <= est.high <= 0.7


def test_no_resamples_gives_means_without_interval():
    est = repeat_estimates(fits(np.array([[0.1, 0.3], [0.2, 0.4]])), 0, np.random.default_rng(0))[KEY]
    assert est.mean == pytest.approx(0.25) and math.isnan(est.low) and math.isnan(est.se)
    paired = repeat_paired(fits(np.array([[0.1, 0.3]])), fits(np.array([[0.0, 0.2]])), 0, np.random.default_rng(0))
    assert paired[KEY].diff == pytest.approx(0.1) and math.isnan(paired[KEY].se) and math.isnan(paired[KEY].p)


def test_repeat_checks_users_and_settings():
    with pytest.raises(ValueError, match="different users"):
        repeat_estimates([ev({KEY: [0.1, 0.2]}), ev({KEY: [0.1, 0.2, 0.3]})], 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no evaluations"):
        repeat_estimates([], 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="level"):
        repeat_estimates(fits(np.ones((1, 3))), 10, np.random.default_rng(0), level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        repeat_paired(fits(np.ones((1, 3))), fits(np.ones((1, 3))), -1, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# Paired


def test_paired_identical_models_have_no_difference():
    values = crossed_data(3, 200, 0.02, 0.3, 0.1)
    same = repeat_paired(fits(values), fits(values), 500, np.random.default_rng(0))[KEY]
    assert same.diff == 0.0 and same.p == 1.0 and same.se > 0  # three fits each, drawn independently
    single = repeat_paired(fits(values[:1]), fits(values[:1]), 500, np.random.default_rng(0))[KEY]
    assert (single.diff, single.low, single.high, single.se, single.p) == (0.0, 0.0, 0.0, 0.0, 1.0)


def test_paired_constant_shift_is_significant():
    values = crossed_data(3, 300, 0.005, 0.3, 0.05)
    shifted = values - 0.05
    res = repeat_paired(fits(values), fits(shifted), 1000, np.random.default_rng(0))[KEY]
    assert res.diff == pytest.approx(0.05) and res.low > 0 and res.p < 1e-6
    assert res.p == pytest.approx(math.erfc(res.diff / res.se / math.sqrt(2)))
    one = repeat_paired(fits(values[:1]), fits(shifted[:1]), 500, np.random.default_rng(0))[KEY]
    assert one.diff == pytest.approx(0.05) and one.se < 1e-12 and one.p == pytest.approx(0.0, abs=1e-12)


def test_paired_ignores_users_undefined_in_any_fit():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, (2, 50))
    b = rng.uniform(0, 1, (3, 50))
    a[1, [3, 7]] = np.nan
    b[0, 11] = np.nan
    res = repeat_paired(fits(a), fits(b), 300, np.random.default_rng(4))[KEY]
    keep = np.setdiff1d(np.arange(50), [3, 7, 11])
    assert res.diff == pytest.approx(a[:, keep].mean() - b[:, keep].mean())
    # what b holds at a user a leaves undefined does not matter
    b2 = b.copy()
    b2[:, [3, 7]] = 5.0
    again = repeat_paired(fits(a), fits(b2), 300, np.random.default_rng(4))[KEY]
    assert (again.diff, again.low, again.high, again.se) == pytest.approx((res.diff, res.low, res.high, res.se))


def test_paired_single_fits_agree_with_the_user_only_paired_bootstrap():
    rng = np.random.default_rng(8)
    a, b = rng.uniform(0, 1, (1, 400)), rng.uniform(0, 1, (1, 400))
    rep = repeat_paired(fits(a), fits(b), 2000, np.random.default_rng(1))[KEY]
    diffs = metrics.bootstrap_means(a - b, 2000, np.random.default_rng(2))[:, 0]
    assert rep.diff == pytest.approx(float((a - b).mean()))
    assert rep.se == pytest.approx(diffs.std(ddof=1), rel=0.10)


# ---------------------------------------------------------------------------------------------
# Folding index


def folding_fits(leak: np.ndarray, natural: np.ndarray) -> list[PopulationEval]:
    return [ev({LEAK: row, NATURAL: natural}) for row in np.atleast_2d(leak)]


def natural_rate(q: int = 300) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.1, 0.4, q)


def random_leak(natural: np.ndarray, level: float, n_seeds: int = 3) -> np.ndarray:
    """Random's leakage per fit: ``level`` plus a little noise per (seed, user)."""
    return level + np.random.default_rng(1).normal(0, 0.02, (n_seeds, len(natural)))


def test_in_group_recommender_has_index_zero():
    natural = natural_rate()
    model = folding_fits(np.tile(natural, (3, 1)), natural)  # leakage = the user's own cross rate
    est = folding_estimate(model, folding_fits(random_leak(natural, 0.9), natural), 20, 500,
                           np.random.default_rng(0))
    assert est.index == pytest.approx(0.0, abs=1e-12)
    assert est.low == pytest.approx(0.0, abs=1e-9) and est.high == pytest.approx(0.0, abs=1e-9)
    assert est.leak == pytest.approx(natural.mean()) and est.natural == pytest.approx(natural.mean())
    assert est.natural_low < est.natural < est.natural_high and est.random_leak == pytest.approx(0.9, abs=0.01)
    assert not est.weak_groups


def test_recommender_mixing_like_random_has_index_one():
    natural = natural_rate()
    rand = random_leak(natural, 0.9)
    est = folding_estimate(folding_fits(rand, natural), folding_fits(rand, natural), 20, 500,
                           np.random.default_rng(0))
    assert est.index == pytest.approx(1.0)
    assert est.low < 1.0 < est.high and est.high - est.low < 0.1
    half = folding_fits((natural + rand) / 2, natural)  # halfway between the data and random
    assert folding_estimate(half, folding_fits(rand, natural), 20, 200,
                            np.random.default_rng(0)).index == pytest.approx(0.5)


def test_weak_groups_when_random_leaks_like_the_data():
    natural = natural_rate()
    model = folding_fits(random_leak(natural, 0.5), natural)
    weak = folding_estimate(model, folding_fits(np.tile(natural, (2, 1)) + 0.001, natural), 20, 500,
                            np.random.default_rng(0))
    assert weak.weak_groups and weak.natural_low <= weak.random_leak <= weak.natural_high
    strong = folding_estimate(model, folding_fits(random_leak(natural, 0.9), natural), 20, 500,
                              np.random.default_rng(0))
    assert not strong.weak_groups
    # no resamples: no interval shows the groups carry signal
    assert folding_estimate(model, folding_fits(random_leak(natural, 0.9), natural), 20, 0,
                            np.random.default_rng(0)).weak_groups


def test_no_index_when_random_does_not_leak_beyond_natural():
    natural = natural_rate()
    model = folding_fits(random_leak(natural, 0.5), natural)
    for below in (0.0, -0.05):
        est = folding_estimate(model, folding_fits(np.tile(natural + below, (2, 1)), natural), 20, 200,
                               np.random.default_rng(0))
        assert math.isnan(est.index) and math.isnan(est.low) and math.isnan(est.high)
        # weak when random sits inside the natural rate's interval; clearly below it, it is not
        assert est.weak_groups == (below == 0.0)


def test_folding_uses_users_defined_everywhere():
    natural = natural_rate(100)
    leak = np.tile(natural, (2, 1))
    leak[0, :10] = np.nan  # leakage undefined for these users in one fit (e.g. nothing recommended)
    natural_with_gap = natural.copy()
    natural_with_gap[95:] = np.nan
    est = folding_estimate(folding_fits(leak, natural_with_gap), folding_fits(random_leak(natural, 0.9), natural),
                           20, 100, np.random.default_rng(0))
    assert est.index == pytest.approx(0.0, abs=1e-12) and est.natural == pytest.approx(natural[10:95].mean())
    with pytest.raises(ValueError, match="leakage@10"):
        folding_estimate(folding_fits(leak, natural), folding_fits(leak, natural), 10, 10, np.random.default_rng(0))


def test_folding_contrast():
    natural = natural_rate()
    rand = folding_fits(random_leak(natural, 0.9), natural)
    in_group = folding_fits(np.tile(natural, (3, 1)), natural)
    mixing = folding_fits(random_leak(natural, 0.9, 2) + 0.001, natural)
    res = folding_contrast(mixing, in_group, rand, 20, 500, np.random.default_rng(0))
    assert res.diff == pytest.approx(1.0, abs=0.01) and res.low > 0.9 and res.p < 1e-6
    same = folding_contrast(in_group, in_group, rand, 20, 500, np.random.default_rng(0))
    assert same.diff == pytest.approx(0.0, abs=1e-12) and same.p > 0.5
    none = folding_contrast(in_group, mixing, folding_fits(np.tile(natural, (2, 1)), natural), 20, 100,
                            np.random.default_rng(0))
    assert math.isnan(none.diff) and math.isnan(none.p)


# ---------------------------------------------------------------------------------------------
# Memory


def test_memory_is_bounded_by_blocks_not_resamples():
    q, n_seeds, n_boot = 200_000, 3, 1000
    rng = np.random.default_rng(0)
    values = rng.random((n_seeds, q))
    values[:, ::97] = np.nan  # one metric with undefined cells: the per-seed denominators too
    a = [ev({KEY: row, OTHER: row[::-1].copy()}) for row in values]
    tracemalloc.start()
    try:
        est = repeat_estimates(a, n_boot, np.random.default_rng(1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # n_boot · q · R float64 would be 4.8 GB; the blocks of user counts stay at a few tens of MB
    assert peak < 150 * 2 ** 20
    assert est[KEY].low < est[KEY].mean < est[KEY].high
