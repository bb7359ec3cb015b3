"""The softmax DNN's step budget: epochs raised to at least S optimiser steps, patience counted in steps,
early stopping never before S, min_steps=0 as before, the step bookkeeping and its round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core.errors import ModelError
from mfvsdnn.data.split import TrainSet
from mfvsdnn.models.params import HYPER_PARAMETERS, MAX_EPOCHS
from mfvsdnn.models.softmax.model import TRAINING_COUNTS, SoftmaxDNN, auto_min_steps

N_USERS, N_ITEMS = 10, 20
SMALL = {"dim": 4, "hidden": (), "feature_dim": 2, "negatives": 5}


def _train(per_user: int = 3) -> TrainSet:
    """N_USERS users with ``per_user`` training items each (30 pairs by default) and one validation item."""
    rng = np.random.default_rng(0)
    rows, cols, vrows, vcols = [], [], [], []
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=per_user + 1, replace=False)
        rows += [u] * per_user
        cols += list(items[:per_user])
        vrows.append(u)
        vcols.append(items[-1])
    shape = (N_USERS, N_ITEMS)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    valid = sp.csr_matrix((np.ones(len(vrows), np.float32), (vrows, vcols)), shape=shape)
    return TrainSet(matrix=matrix, users=np.arange(N_USERS), valid=valid)


def _scripted(values: list[float]):
    """A validator returning ``values`` in turn (then the last one again), counting its calls."""
    calls = []

    def validate(model):
        calls.append(model.steps_per_epoch_)
        return values[min(len(calls), len(values)) - 1]
    validate.calls = calls
    return validate


def test_auto_budget_formula_and_its_cap():
    assert auto_min_steps(N_ITEMS, 256, 1) == 1000  # the floor
    assert auto_min_steps(100_000, 256, 400) == math.ceil(50 * 100_000 / 256) == 19_532
    assert auto_min_steps(10**7, 1, 1) == MAX_EPOCHS  # 5e8 steps would need more than MAX_EPOCHS epochs


def test_auto_budget_raises_the_epochs_on_tiny_data():
    progress = []
    m = SoftmaxDNN(**SMALL, epochs=5, batch_size=256, patience=0).fit(
        _train(), np.random.default_rng(0), progress=lambda done, total, metrics: progress.append((done, total)))
    assert m.min_steps == "auto" and m.min_steps_ == 1000  # 30 pairs, batch 256: 1 step per epoch
    assert m.steps_per_epoch_ == 1 and m.effective_epochs_ == 1000 == len(m.history_) == m.steps_
    assert {total for _, total in progress} == {1000} and progress[-1] == (1000, 1000)
    assert not m.stopped_early_


def test_min_steps_zero_keeps_epochs_and_patience_in_epochs():
    validate = _scripted([0.5, 0.4, 0.3, 0.2, 0.1])
    m = SoftmaxDNN(**SMALL, epochs=5, batch_size=10, patience=2, min_steps=0).fit(
        _train(), np.random.default_rng(0), validate=validate)
    # best at epoch 1; epochs 2 and 3 are not better: stop after epoch 3, as before the budget existed
    assert m.min_steps_ == 0 and m.effective_epochs_ == 5 and len(m.history_) == 3 == len(validate.calls)
    assert m.best_epoch_ == 1 and m.best_step_ == 3 and m.steps_ == 9 and m.stopped_early_


def test_early_stopping_waits_for_the_budget():
    # 30 pairs, batch 10: 3 steps per epoch; S = 12; patience_steps = 1 * max(3, ceil(12 / 10)) = 3
    falling = [0.5, 0.4, 0.3, 0.2, 0.1]
    m = SoftmaxDNN(**SMALL, epochs=10, batch_size=10, patience=1, min_steps=12).fit(
        _train(), np.random.default_rng(0), validate=_scripted(falling))
    assert m.effective_epochs_ == 10 and len(m.history_) == 4 and m.steps_ == 12 and m.stopped_early_
    assert m.best_epoch_ == 1 and m.best_step_ == 3
    without = SoftmaxDNN(**SMALL, epochs=10, batch_size=10, patience=1, min_steps=0).fit(
        _train(), np.random.default_rng(0), validate=_scripted(falling))
    assert len(without.history_) == 2  # the step budget is what kept the first fit going


def test_budget_above_the_epochs_raises_them_and_stretches_patience():
    # S = 30 > 2 epochs x 3 steps: 10 epochs; patience_steps = 1 * max(3, ceil(30 / 2)) = 15
    m = SoftmaxDNN(**SMALL, epochs=2, batch_size=10, patience=1, min_steps=30).fit(
        _train(), np.random.default_rng(0), validate=_scripted([0.5, 0.1]))
    assert m.effective_epochs_ == 10 and m.steps_ == 30 and len(m.history_) == 10
    assert not m.stopped_early_  # the budget ends with the last epoch: nothing was cut short


@pytest.mark.parametrize("min_steps, epochs, patience", [(0, 6, 1), (7, 3, 1), (20, 4, 2), (9, 12, 3), (1, 5, 1)])
def test_stopping_rule_and_bookkeeping_invariants(min_steps, epochs, patience):
    rng = np.random.default_rng(min_steps + 10 * epochs)
    validate = _scripted(list(rng.random(200)))
    m = SoftmaxDNN(**SMALL, epochs=epochs, batch_size=7, patience=patience, min_steps=min_steps).fit(
        _train(), np.random.default_rng(1), validate=validate)
    per_epoch = math.ceil(30 / 7)
    assert m.steps_per_epoch_ == per_epoch and m.min_steps_ == min_steps
    assert m.effective_epochs_ == max(epochs, math.ceil(min_steps / per_epoch))
    steps = [h["step"] for h in m.history_]
    assert steps == [per_epoch * e for e in range(1, len(steps) + 1)] and [h["epoch"] for h in m.history_] == \
        list(range(1, len(steps) + 1))
    assert m.steps_ == steps[-1] and len(validate.calls) == len(steps)  # validation once per epoch
    recalls = [h["valid_recall@20"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmax(recalls)) + 1 and m.best_step_ == steps[m.best_epoch_ - 1]
    patience_steps = patience * max(per_epoch, math.ceil(min_steps / epochs))
    if m.stopped_early_:
        assert m.steps_ >= min_steps and m.steps_ - m.best_step_ >= patience_steps
    else:
        assert len(steps) == m.effective_epochs_
    # never stopped while the rule said go on: at every earlier epoch the budget or the patience held it
    for e in range(1, len(steps)):
        best_so_far = steps[int(np.argmax(recalls[:e]))]
        assert steps[e - 1] < min_steps or steps[e - 1] - best_so_far < patience_steps


def test_min_steps_is_checked_listed_and_round_trips():
    assert SoftmaxDNN().get_params()["min_steps"] == "auto" and HYPER_PARAMETERS["softmax"][-1] == "min_steps"
    assert SoftmaxDNN(min_steps=" AUTO ").min_steps == "auto"
    assert SoftmaxDNN(min_steps="250").min_steps == 250 and SoftmaxDNN(min_steps=0).min_steps == 0
    for bad in (-1, 1.5, True, "many", None, 10**10):
        with pytest.raises(ModelError, match="min_steps"):
            SoftmaxDNN(min_steps=bad)
    m = SoftmaxDNN(**SMALL, epochs=2, batch_size=10, min_steps=12).fit(_train(), np.random.default_rng(0))
    again = SoftmaxDNN.from_state(m.get_params(), m.state(), {"n_items": N_ITEMS})
    assert [getattr(again, f"{name}_") for name in TRAINING_COUNTS] == \
        [getattr(m, f"{name}_") for name in TRAINING_COUNTS] == [m.best_step_, 12, 12, 3, 4, False]
    old = {k: v for k, v in m.state().items() if k not in TRAINING_COUNTS}  # a run saved before the budget
    assert SoftmaxDNN.from_state(m.get_params(), old, {"n_items": N_ITEMS}).steps_ == 0
    with pytest.raises(ModelError, match="steps must be one integer"):
        SoftmaxDNN.from_state(m.get_params(), {**m.state(), "steps": np.array([1.5])}, {"n_items": N_ITEMS})
