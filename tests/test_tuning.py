"""Equal tuning budget: trial 0 is the spec as given, explicit parameters stay fixed, draws are seeded and
inside the space, the best validation recall wins (ties: the earliest), kinds without a space are not tuned."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from mfvsdnn.core.errors import ModelError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.experiment import runner
from mfvsdnn.experiment.spec import DataSpec, ModelSpec
from mfvsdnn.experiment.tuning import SEARCH_SPACES, Choice, LogUniform, describe_space, tune
from mfvsdnn.models.softmax.model import SoftmaxDNN
from mfvsdnn.models.wals.model import WALS

SPLIT = object()  # the fake fits never look at the split


class FakeFit:
    """A ``fit`` that records each spec and scores it by a known function of its parameters."""

    def __init__(self, score=lambda params: -abs(math.log(params.get("lr", 0.002)) - math.log(0.005))):
        self.specs: list[ModelSpec] = []
        self.seeds: list[int] = []
        self.score = score

    def __call__(self, spec, split, seed):
        assert split is SPLIT
        self.specs.append(spec)
        self.seeds.append(seed)
        return SimpleNamespace(validation_recall=self.score(spec.params), spec=spec)


def test_trial_zero_is_the_spec_as_given_with_the_defaults_recorded():
    fit = FakeFit()
    result = tune(ModelSpec("softmax"), SPLIT, 7, 4, fit)
    assert fit.specs[0].params == {} and len(fit.specs) == len(result.trials) == 4
    defaults = SoftmaxDNN().get_params()
    assert result.trials[0].params == {k: defaults[k] for k in SEARCH_SPACES["softmax"]}
    assert result.tuned and result.space == SEARCH_SPACES["softmax"] and result.fixed == {}


def test_explicit_parameters_are_held_fixed_and_fixing_one_shifts_no_other_draw():
    free = tune(ModelSpec("softmax", {"hidden": [8]}), SPLIT, 7, 5, FakeFit())
    fit = FakeFit()
    held = tune(ModelSpec("softmax", {"hidden": [8], "dim": 16, "lr": 0.001}), SPLIT, 7, 5, fit)
    assert all(s.params["dim"] == 16 and s.params["lr"] == 0.001 and s.params["hidden"] == [8] for s in fit.specs)
    assert held.fixed == {"dim": 16, "lr": 0.001} and set(held.space) == {"negatives", "l2", "epochs"}
    for a, b in zip(free.trials[1:], held.trials[1:]):
        assert {k: a.params[k] for k in held.space} == {k: b.params[k] for k in held.space}
    assert all(s.name is None and s.kind == "softmax" for s in fit.specs)


def test_draws_are_seeded_and_inside_the_space():
    first = tune(ModelSpec("wals"), SPLIT, 7, 6, FakeFit(lambda p: 0.1))
    again = tune(ModelSpec("wals"), SPLIT, 7, 6, FakeFit(lambda p: 0.1))
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    fit = FakeFit(lambda p: 0.1)
    other = tune(ModelSpec("wals"), SPLIT, 8, 6, fit)
    assert fit.seeds == [8] * 6  # every trial is fitted with the run's seed
    assert [t.params for t in other.trials[1:]] != [t.params for t in first.trials[1:]]
    for trial in first.trials[1:] + other.trials[1:]:
        assert trial.params["factors"] in (16, 32, 64)
        assert 0.01 <= trial.params["w0"] <= 0.5 and 0.01 <= trial.params["reg"] <= 10
        assert float(f"{trial.params['w0']:.3g}") == trial.params["w0"]  # rounded to 3 significant digits


def test_best_is_the_highest_validation_recall_and_ties_keep_the_earliest():
    fit = FakeFit()
    result = tune(ModelSpec("softmax", {"negatives": 10}), SPLIT, 7, 5, fit)
    recalls = [t.valid_recall for t in result.trials]
    assert result.best_trial == recalls.index(max(recalls)) and result.best_valid_recall == max(recalls)
    assert result.best_params == fit.specs[result.best_trial].params
    assert result.best_params["negatives"] == 10 and result.best_fitted.spec is fit.specs[result.best_trial]
    tied = tune(ModelSpec("softmax"), SPLIT, 7, 5, FakeFit(lambda p: 0.25))
    assert tied.best_trial == 0 and tied.best_params == {}  # a tie: the untuned model stays


def test_kinds_without_a_space_and_loaded_runs_are_not_tuned():
    for spec in (ModelSpec("popularity"), ModelSpec("no-such-kind"), ModelSpec("wals", run_dir="runs/wals")):
        fit = FakeFit()
        result = tune(spec, SPLIT, 7, 5, fit)
        assert fit.specs == [] and result.trials == [] and not result.tuned and result.reason
        assert result.best_params == spec.params and result.best_trial == -1
    assert describe_space("popularity") == "popularity: not tuned (no search space)"
    assert describe_space("wals") == ("wals: factors in {16, 32, 64}; w0 log-uniform in [0.01, 0.5]; "
                                      "reg log-uniform in [0.01, 10]")
    assert "l2 in {0, 1e-06, 1e-05, 0.0001}" in describe_space("softmax")


def test_one_trial_is_the_defaults_only_and_the_trial_count_is_checked():
    fit = FakeFit()
    result = tune(ModelSpec("softmax", {"dim": 8}), SPLIT, 7, 1, fit)
    assert [s.params for s in fit.specs] == [{"dim": 8}] and result.best_params == {"dim": 8} and result.tuned
    fit = FakeFit()
    result = tune(ModelSpec("wals", {"factors": 8, "w0": 0.2, "reg": 0.5}), SPLIT, 7, 4, fit)
    assert len(fit.specs) == 1 and not result.tuned and "set explicitly" in result.reason
    for bad in (0, -1, 2.5, True, 10**6):
        with pytest.raises(ModelError, match="--trials"):
            tune(ModelSpec("wals"), SPLIT, 7, bad, FakeFit())


def test_failed_trials_are_recorded_and_never_win_but_the_spec_as_given_fails_loudly():
    def flaky(params):
        if params.get("negatives") == 200:
            raise ModelError("training diverged at epoch 3 (loss is nan); lower --lr")
        return 0.1

    fit = FakeFit(flaky)
    result = tune(ModelSpec("softmax", {"sampler": "hard", "hard_pool": 100}), SPLIT, 7, 8, fit)
    errors = [t for t in result.trials if t.error]
    assert errors and all(math.isnan(t.valid_recall) for t in errors) and result.best_valid_recall == 0.1
    # negatives 200 > hard_pool 100 is refused before fitting; the trial is recorded with the model's message
    assert all("--hard-pool" in t.error for t in errors) and all(s.params.get("negatives") != 200 for s in fit.specs)
    with pytest.raises(ModelError, match="diverged"):
        tune(ModelSpec("softmax", {"negatives": 200}), SPLIT, 7, 3, FakeFit(flaky))


def test_without_validation_nothing_is_searched_and_the_result_is_json():
    fit = FakeFit(lambda p: float("nan"))
    result = tune(ModelSpec("softmax"), SPLIT, 7, 5, fit)
    assert len(fit.specs) == 1 and not result.tuned and "validation" in result.reason
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["best_valid_recall"] is None
    full = tune(ModelSpec("softmax"), SPLIT, 7, 3, FakeFit()).to_dict()
    assert json.loads(json.dumps(full, allow_nan=False)) == full
    assert full["space"]["lr"] == {"type": "log-uniform", "low": 3e-4, "high": 1e-2}
    assert full["space"]["dim"] == {"type": "choice", "values": [16, 32, 64]} and len(full["trials"]) == 3
    assert isinstance(SEARCH_SPACES["softmax"]["dim"], Choice) and isinstance(SEARCH_SPACES["wals"]["w0"], LogUniform)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "syn.csv"
    write_csv(SyntheticConfig(users=120, items=40, groups=2, mean_interactions=8, seed=2), path)
    return runner.prepare_split(DataSpec(path, ColumnSpec()), SplitConfig(seed=5))


def test_tuning_through_the_runner_fit_is_deterministic_and_keeps_the_best_fit(split):
    fit = lambda spec, split_, seed: runner.fit_model(spec, split_, seed)  # noqa: E731
    spec = ModelSpec("wals", {"iterations": 2})
    first, again = tune(spec, split, 3, 3, fit), tune(spec, split, 3, 3, fit)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert [t.valid_recall for t in first.trials] == [t.valid_recall for t in again.trials]
    untuned = runner.fit_model(spec, split, 3)
    assert first.trials[0].valid_recall == untuned.validation_recall
    assert first.best_valid_recall >= untuned.validation_recall
    assert isinstance(first.best_fitted.model, WALS)
    assert first.best_fitted.validation_recall == first.best_valid_recall
    assert first.best_fitted.model.factors == first.trials[first.best_trial].params["factors"]
