"""Training growth on subsamples: exponents of constructed costs on a fake clock, the subsample, the warm-up,
the fixed amount of work, the verdict rule, determinism, and a tiny run of the real models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core.errors import EvaluationError
from mfvsdnn.core.seeding import generator
from mfvsdnn.data.split import TrainSet
from mfvsdnn.experiment import growth as G
from mfvsdnn.experiment.spec import ModelSpec
from mfvsdnn.models import registry
from mfvsdnn.models.baselines import MostPopular


class FakeClock:
    """A clock that only the fake models move: ``now`` advances by each fit's constructed cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
COMPILE_SECONDS = 1000.0  # what the first fit of a fake kind costs on top of its work (numba's compile)


class CostModel(MostPopular):
    """A learned model whose fit costs ``coef * size^power`` per iteration on :data:`CLOCK`
    (size = the training interactions, or the items with ``size="items"``), its first fit more."""

    kind = "fake-mf"
    family = "mf"
    fits: list[dict] = []

    def __init__(self, coef: float = 1e-3, power: float = 1.0, size: str = "nnz", iterations: int = 4) -> None:
        super().__init__()
        self.coef, self.power, self.size, self.iterations = coef, power, size, iterations

    def get_params(self) -> dict:
        return {"coef": self.coef, "power": self.power, "size": self.size, "iterations": self.iterations}

    def units(self) -> int:
        return self.iterations

    def fit(self, train, rng=None, progress=None):
        n = train.matrix.nnz if self.size == "nnz" else train.matrix.shape[1]
        first = not type(self).fits
        CLOCK.now += self.coef * float(n) ** self.power * self.units() + (COMPILE_SECONDS if first else 0.0)
        type(self).fits.append({"nnz": int(train.matrix.nnz), **self.get_params()})
        return super().fit(train, rng)


class EpochModel(CostModel):
    """A DNN-like fake with epochs, early stopping and a minimum number of steps."""

    kind = "fake-dnn"
    family = "dnn"
    fits: list[dict] = []

    def __init__(self, coef: float = 1e-3, power: float = 1.0, size: str = "nnz", epochs: int = 30,
                 patience: int = 3, min_steps: int = 500) -> None:
        MostPopular.__init__(self)
        self.coef, self.power, self.size = coef, power, size
        self.epochs, self.patience, self.min_steps = epochs, patience, min_steps

    def get_params(self) -> dict:
        return {"coef": self.coef, "power": self.power, "size": self.size, "epochs": self.epochs,
                "patience": self.patience, "min_steps": self.min_steps}

    def units(self) -> int:
        return self.epochs


class EpochModelNoMinSteps(EpochModel):
    """The same without ``min_steps`` (a constructor that would refuse the keyword)."""

    kind = "fake-dnn-plain"
    fits: list[dict] = []

    def __init__(self, coef: float = 1e-3, power: float = 1.0, size: str = "nnz", epochs: int = 30,
                 patience: int = 3) -> None:
        MostPopular.__init__(self)
        self.coef, self.power, self.size, self.epochs, self.patience = coef, power, size, epochs, patience

    def get_params(self) -> dict:
        return {"coef": self.coef, "power": self.power, "size": self.size, "epochs": self.epochs,
                "patience": self.patience}


FAKES = (CostModel, EpochModel, EpochModelNoMinSteps)


@pytest.fixture(autouse=True)
def fakes():
    for cls in FAKES:
        registry.register(cls, replace=True)
        cls.fits = []
    CLOCK.now = 0.0
    yield
    for cls in FAKES:
        registry.unregister(cls.kind)


@pytest.fixture(scope="module")
def train() -> TrainSet:
    """400 users (30 of them cold) x 120 items, 1-30 interactions each on a long tail of popularity (so
    small subsamples lose items); items 110-119 never interacted with."""
    rng = generator(3, "test-growth")
    n_users, n_items = 400, 120
    popularity = 1.0 / np.arange(1, 111) ** 1.2
    rows, cols = [], []
    for user in range(30, n_users):
        items = rng.choice(110, size=int(rng.integers(1, 31)), replace=False, p=popularity / popularity.sum())
        rows += [user] * len(items)
        cols += items.tolist()
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_users, n_items))
    return TrainSet(matrix=matrix, users=np.arange(30, n_users),
                    features={"country": (np.arange(n_users) % 5).astype(np.int32)}, cardinalities={"country": 5},
                    item_groups=(np.arange(n_items) % 3).astype(np.int32), group_count=3,
                    user_ids=np.array([f"u{u}" for u in range(n_users)]),
                    item_ids=np.array([f"i{i}" for i in range(n_items)]))


def pairs(data: TrainSet) -> set[tuple[str, str]]:
    coo = data.matrix.tocoo()
    return {(data.user_ids[u], data.item_ids[i]) for u, i in zip(coo.row, coo.col)}


@pytest.mark.parametrize("fraction", [0.125, 0.25, 0.5, 1.0])
def test_subsample_keeps_a_share_of_whole_users_as_a_smaller_corpus(train, fraction):
    sub = G.subsample(train, fraction, generator(0, "growth", 0))
    counts = np.diff(train.matrix.indptr)
    # choosing whole users, the share misses the fraction by at most half the largest history
    assert abs(sub.matrix.nnz - fraction * train.matrix.nnz) <= counts.max() / 2
    if fraction == 1.0:
        assert sub.matrix.nnz == train.matrix.nnz and sub.matrix.shape == (370, 110)
    # users whole: each kept user has every one of its training interactions
    original = dict(zip(train.user_ids, counts))
    assert all(original[uid] == n for uid, n in zip(sub.user_ids, np.diff(sub.matrix.indptr)))
    assert pairs(sub) <= pairs(train)
    # no empty users or items; every per-user and per-item attribute sliced alike
    assert (np.diff(sub.matrix.indptr) > 0).all() and (np.bincount(sub.matrix.indices) > 0).all()
    assert len(np.bincount(sub.matrix.indices)) == sub.matrix.shape[1] == len(sub.item_ids) == len(sub.item_groups)
    index_of_user = {uid: u for u, uid in enumerate(train.user_ids)}
    kept = np.array([index_of_user[uid] for uid in sub.user_ids])
    assert (sub.features["country"] == train.features["country"][kept]).all()
    assert (sub.item_groups == np.array([int(i[1:]) % 3 for i in sub.item_ids])).all()
    assert sub.valid is None and (sub.users == np.arange(sub.matrix.shape[0])).all()


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_exponent_of_a_constructed_cost_is_recovered_exactly(train, power):
    out = G.training_growth([ModelSpec("fake-mf", {"power": power})], train, seed=0, clock=CLOCK)
    (g,) = out
    assert g.unit == "iteration" and g.units == 4
    assert g.exponent == pytest.approx(power, abs=1e-9) and g.r2 == pytest.approx(1.0, abs=1e-12)
    assert g.points == 4 and g.fractions == [0.125, 0.25, 0.5, 1.0]
    # seconds are per iteration: coef * nnz^power, the same in every repeat
    expected = [1e-3 * n ** power for n in g.interactions]
    assert g.seconds == pytest.approx(expected) and g.total_seconds == pytest.approx([4 * e for e in expected])
    assert all(row == pytest.approx([e] * 3) for row, e in zip(g.all_seconds, expected))
    assert g.interactions == sorted(g.interactions) and g.interactions[-1] == train.matrix.nnz


def test_exponent_against_items(train):
    (g,) = G.training_growth([ModelSpec("fake-mf", {"size": "items"})], train, seed=0, clock=CLOCK)
    assert g.exponent_items == pytest.approx(1.0, abs=1e-9) and g.r2_items == pytest.approx(1.0)
    assert g.seconds == pytest.approx([1e-3 * n for n in g.items])
    assert len(set(g.items)) >= 3 and g.items == sorted(g.items)  # the tail thins out in small subsamples


def test_warm_up_is_one_untimed_fit_at_the_smallest_fraction(train):
    calls = []
    (g,) = G.training_growth([ModelSpec("fake-mf")], train, seed=0, repeats=2,
                             progress=lambda done, total, metrics: calls.append((done, total)), clock=CLOCK)
    fits = CostModel.fits
    assert len(fits) == 1 + 4 * 2 and fits[0]["nnz"] == g.interactions[0]
    # the compile cost of the first fit is in no timed point, only in what the measurement took
    assert max(max(row) for row in g.all_seconds) < COMPILE_SECONDS / 100
    assert g.measure_seconds == pytest.approx(CLOCK.now) and g.measure_seconds > COMPILE_SECONDS
    assert calls == [(i, 9) for i in range(1, 10)]


def test_baselines_are_skipped_and_epochs_fixed_with_early_stopping_off(train):
    specs = [ModelSpec("popularity"), ModelSpec("fake-dnn", {"epochs": 30, "patience": 5}, name="dnn"),
             ModelSpec("fake-dnn-plain", {"epochs": 7}), ModelSpec("random")]
    out = G.training_growth(specs, train, seed=0, repeats=1, epochs=2, clock=CLOCK)
    assert [(g.model, g.kind, g.unit, g.units) for g in out] == [("dnn", "fake-dnn", "epoch", 2),
                                                                 ("fake-dnn-plain", "fake-dnn-plain", "epoch", 2)]
    assert {(f["epochs"], f["patience"], f["min_steps"]) for f in EpochModel.fits} == {(2, 0, 0)}
    assert {(f["epochs"], f["patience"]) for f in EpochModelNoMinSteps.fits} == {(2, 0)}
    assert out[0].params["min_steps"] == 0 and "min_steps" not in out[1].params
    assert out[0].seconds == pytest.approx([1e-3 * n for n in out[0].interactions])
    assert G.training_growth([ModelSpec("popularity")], train, seed=0, clock=CLOCK) == []


def test_same_seed_same_measurement_other_seed_other_users(train):
    def run(seed: int) -> dict:
        CLOCK.now = 0.0
        CostModel.fits = []
        return G.training_growth([ModelSpec("fake-mf")], train, seed=seed, clock=CLOCK)[0].to_dict()

    assert run(5) == run(5)
    assert run(5)["interactions"][:3] != run(6)["interactions"][:3]
    first = G.subsample(train, 0.25, generator(5, "growth", 1))
    again = G.subsample(train, 0.25, generator(5, "growth", 1))
    assert (first.user_ids == again.user_ids).all() and (first.matrix != again.matrix).nnz == 0


def test_to_dict_round_trip_is_json_without_nan(train):
    (g,) = G.training_growth([ModelSpec("fake-mf")], train, seed=0, fractions=(1.0,), repeats=1, clock=CLOCK)
    assert math.isnan(g.exponent) and g.points == 1  # one size: no growth rate
    text = json.dumps(g.to_dict(), allow_nan=False)
    back = G.TrainingGrowth.from_dict(json.loads(text))
    assert back.to_dict() == g.to_dict() and math.isnan(back.r2)


@pytest.mark.parametrize("kwargs, message", [
    ({"fractions": (0.0, 0.5)}, r"fractions must be in \(0, 1\], got 0.0"),
    ({"fractions": (1.5,)}, r"fractions must be in \(0, 1\]"),
    ({"fractions": ()}, "at least one fraction"),
    ({"repeats": 0}, "repeats must be an integer >= 1"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
])
def test_bad_settings_are_refused_before_anything_is_fitted(train, kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        G.training_growth([ModelSpec("fake-mf")], train, seed=0, clock=CLOCK, **kwargs)
    assert CostModel.fits == []


def curve(model: str, exponent: float, r2: float = 0.99, points: int = 4, per_unit: float = 0.5) -> G.TrainingGrowth:
    fractions = [0.125, 0.25, 0.5, 1.0][-points:] if points else []
    return G.TrainingGrowth(model, model, "epoch", 1, fractions, [1000 * int(8 * f) for f in fractions],
                            [10] * points, [10] * points, [per_unit] * points, [[per_unit]] * points,
                            [per_unit] * points, exponent, r2, points, 1.0, 0.9, 1.0, 0.9)


@pytest.mark.parametrize("mf, dnn, verdict, reason", [
    (curve("wals", 1.0), curve("softmax", 1.4), "agrees", "the DNN's cost grows faster"),
    (curve("wals", 1.5), curve("softmax", 1.0), "disagrees", "MF's cost grows faster"),
    (curve("wals", 1.0), curve("softmax", 1.1), "cannot tell", "within the tolerance 0.15"),
    (curve("wals", 1.0), curve("softmax", 1.16), "agrees", "exponent \\+0.16"),
    (curve("wals", 1.0, r2=0.5), curve("softmax", 2.0), "cannot tell", "no growth rate for wals"),
    (curve("wals", 1.0), curve("softmax", 2.0, points=2), "cannot tell", "no growth rate for softmax"),
    (curve("wals", float("nan"), r2=float("nan"), points=1), curve("softmax", 2.0), "cannot tell",
     "no growth rate for wals"),
])
def test_verdict_rule(mf, dnn, verdict, reason):
    got, evidence = G.growth_verdict_inputs(mf, dnn)
    assert got == verdict
    assert reason.replace("\\", "") in evidence or pytest.fail(evidence)
    assert "fractions 0.125, 0.25, 0.5, 1 of the training interactions" in evidence
    assert f"interactions^{dnn.exponent:.2f}" in evidence and "s/epoch at 8,000 interactions" in evidence


def test_verdict_constants_can_be_tightened():
    mf, dnn = curve("wals", 1.0, r2=0.85), curve("softmax", 1.1)
    assert G.growth_verdict_inputs(mf, dnn, tolerance=0.05, min_r2=0.8)[0] == "agrees"
    assert G.growth_verdict_inputs(mf, dnn, tolerance=0.05)[0] == "cannot tell"  # the default guard is R² 0.9


def test_real_models_tiny(train):
    specs = [ModelSpec("wals", {"factors": 4, "iterations": 2}),
             ModelSpec("softmax", {"dim": 4, "hidden": (8,), "epochs": 9}), ModelSpec("popularity")]
    out = G.training_growth(specs, train, seed=1, fractions=(0.5, 1.0), repeats=1)
    assert [(g.kind, g.unit, g.units) for g in out] == [("wals", "iteration", 2), ("softmax", "epoch", 1)]
    assert out[1].params["epochs"] == 1 and out[1].params["patience"] == 0
    for g in out:
        assert all(s > 0 and math.isfinite(s) for s in g.seconds) and g.interactions[-1] == train.matrix.nnz
