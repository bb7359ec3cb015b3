"""Negative samplers: proposal probabilities, logQ, the hard choice."""

from __future__ import annotations

import numpy as np
import pytest

from mfvsdnn.core.errors import ModelError
from mfvsdnn.models.softmax.sampling import (
    HardPoolSampler,
    PopularitySampler,
    UniformSampler,
    choose_hard,
    make_sampler,
)


def test_uniform_range_and_log_q():
    s = UniformSampler(7)
    x = s.draw(np.random.default_rng(0), 5000)
    assert x.min() == 0 and x.max() == 6
    assert np.bincount(x, minlength=7).min() > 600
    np.testing.assert_allclose(s.log_q(np.array([0, 3])), np.log(1 / 7))


def test_popularity_frequencies_match_q_and_q_is_normalised():
    counts = np.array([0, 1, 3, 10, 50])
    s = PopularitySampler(counts)
    q = np.exp(s.log_q(np.arange(5)))
    assert q.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(q, (counts + 1) / (counts + 1).sum())
    x = s.draw(np.random.default_rng(1), 200_000)
    freq = np.bincount(x, minlength=5) / len(x)
    np.testing.assert_allclose(freq, q, atol=0.004)
    assert freq[0] > 0  # a never-seen item can still be drawn


def test_same_rng_same_draws():
    s = PopularitySampler(np.arange(10))
    a = s.draw(np.random.default_rng(3), 50)
    b = s.draw(np.random.default_rng(3), 50)
    assert (a == b).all()


def test_choose_hard_picks_n_distinct_and_prefers_high_scores():
    rng = np.random.default_rng(0)
    logits = np.zeros((3, 6))
    logits[:, 4] = 50.0
    logits[:, 1] = 40.0
    m = choose_hard(logits, 2, rng)
    assert m.sum(axis=1).tolist() == [2, 2, 2]
    assert m[:, [1, 4]].all()  # overwhelming scores are always chosen
    # frequencies follow softmax of the scores (Gumbel-top-1)
    lg = np.tile(np.log([[1.0, 2.0, 7.0]]), (20000, 1))
    pick = np.argmax(choose_hard(lg, 1, rng), axis=1)
    np.testing.assert_allclose(np.bincount(pick, minlength=3) / 20000, [0.1, 0.2, 0.7], atol=0.015)
    assert choose_hard(logits, 10, rng).all()  # n >= pool: the whole pool


def test_hard_pool_has_no_correction_and_make_sampler():
    assert (HardPoolSampler(5).log_q(np.array([1, 2])) == 0).all()
    assert isinstance(make_sampler("popularity", np.ones(4)), PopularitySampler)
    with pytest.raises(ModelError, match="sampler"):
        make_sampler("nope", np.ones(4))
