"""The measured trade-off table: verdicts from typed results built by hand.

Each rule must be able to come out each way: every test below starts from a "textbook" run (where
the data agrees with every row) and changes the evidence one rule reads.
"""

from __future__ import annotations

import copy

import pytest

from mfvsdnn.experiment.results import (
    WARM,
    FoldingResult,
    GrowthResult,
    MetricValue,
    ModelResult,
    PairedTest,
    PopulationResult,
    Results,
    ServingCost,
    Settings,
    TrainingCost,
    cold,
)
from mfvsdnn.experiment.verdicts import (
    AGREES,
    BY_DESIGN,
    CANNOT_TELL,
    DISAGREES,
    MEASURED,
    measured_table,
)

K = 20
CAPS = {"item_vectors": True, "candidate_cache": True, "uses_features": True, "embeds_cold_users": True}
PIDS = (WARM, cold(0), cold(1), cold(3))


def _pop(pid, recall, users=100):
    return PopulationResult(pid, users, [MetricValue("recall", K, recall)])


def _model(name, kind, family, params, recalls, serving=None, role="model", variant_of=None):
    return ModelResult(name, kind, family, dict(CAPS, candidate_cache=family == "mf"), params, 42, None, True, None,
                       TrainingCost(1.0, 10, 0.1), serving, [_pop(pid, r) for pid, r in zip(PIDS, recalls)],
                       role=role, variant_of=variant_of)


def _serving(query_ms, topk_ms, cache):
    return ServingCost(10, query_ms, query_ms, topk_ms, topk_ms, 0.1, 0.1, 1.0, 1000,
                       0.5 if cache else None, 1000 if cache else None, 100 if cache else None)


def _t(a, b, pid, diff, significant, metric="recall", ci=None, family="verdicts"):
    ci = ci or (diff - 0.01, diff + 0.01)
    return PairedTest(a, b, pid, metric, K, diff, ci, 0.001 if significant else 0.4, significant,
                      0.002 if significant else 0.8, family)


def _fold(name, index, ci, weak=False):
    return FoldingResult(name, WARM, K, index, ci, 0.1 + index * 0.5, 0.1, (0.09, 0.11), 0.6, (0.58, 0.62), weak)


def _growth(name, kind, exponent, r2=0.99):
    return GrowthResult(name, kind, "iteration", [0.125, 0.25, 0.5, 1.0], [100, 200, 400, 800],
                        [0.01 * 2 ** (i * exponent) for i in range(4)], exponent, r2, 3)


@pytest.fixture
def results():
    wals = _model("wals", "wals", "mf", {"w0": 0.1}, (0.50, 0.30, 0.20, 0.30), _serving(0.01, 1.0, True))
    dnn = _model("softmax", "softmax", "dnn", {"negatives": 50, "gravity": 0.0}, (0.55, 0.40, 0.30, 0.40),
                 _serving(0.5, 1.0, False))
    pop = _model("popularity", "popularity", "baseline", {}, (0.30, 0.25, 0.15, 0.20), role="baseline")
    rnd = _model("random", "random", "baseline", {}, (0.01, 0.01, 0.01, 0.01), role="baseline")
    w00 = _model("wals(w0=0)", "wals", "mf", {"w0": 0.0}, (0.45, 0.30, 0.20, 0.30), role="contrast", variant_of="wals")
    s00 = _model("softmax(negatives=0)", "softmax", "dnn", {"negatives": 0}, (0.3, 0.2, 0.1, 0.1), role="contrast",
                 variant_of="softmax")
    mapv = _model("wals+map", "wals", "mf", {"w0": 0.1}, (0.50, 0.30, 0.25, 0.32), role="variant", variant_of="wals")
    mapv.tuning = {"fold_in_prior": 3.0}
    paired = [_t("wals", "softmax", pid, -0.1, True, family="comparison") for pid in PIDS]
    for m in ("wals", "softmax", "wals+map"):
        paired += [_t(m, "popularity", pid, 0.1, True) for pid in PIDS]
    paired += [_t("softmax", "wals+map", pid, 0.08, True) for pid in (cold(1), cold(3))]
    paired += [_t("wals(w0=0)", "wals", WARM, 0.3, True, "folding_index", (0.2, 0.4)),
               _t("softmax(negatives=0)", "softmax", WARM, 0.5, True, "folding_index", (0.4, 0.6))]
    settings = Settings(seed=42, ks=[K], main_k=K, bootstrap=100, confidence_level=0.95, serving_sample=10,
                        user_features=["country"], contrast=["wals", "softmax"], repeats=3)
    r = Results({"items": 100, "interactions": 1000, "groups": {"natural_cross_group_rate": 0.1}},
                {"fingerprint": "x", "config": {}}, settings, [wals, dnn, pop, rnd, w00, s00, mapv], paired)
    r.folding = [_fold("wals", 0.1, (0.05, 0.15)), _fold("softmax", 0.05, (0.0, 0.1)),
                 _fold("wals(w0=0)", 0.4, (0.3, 0.5)), _fold("softmax(negatives=0)", 0.55, (0.45, 0.65)),
                 _fold("popularity", 0.9, (0.85, 0.95))]
    r.growth = [_growth("wals", "wals", 1.0), _growth("softmax", "softmax", 1.4)]
    return r


def verdicts(results):
    return {v.axis: v.verdict for v in measured_table(results)}


def _test(r, a, b, pid, metric="recall"):
    return next(t for t in r.paired if (t.a, t.b, t.population, t.metric) == (a, b, pid, metric))


def _flip(r, a, b, pid, metric="recall", diff=None, significant=None, ci=None):
    t = _test(r, a, b, pid, metric)
    if diff is not None:
        t.diff = diff
    if significant is not None:
        t.significant = significant
    if ci is not None:
        t.ci = ci


def test_textbook_data_agrees_everywhere(results):
    assert verdicts(results) == {"query features": AGREES, "cold start": AGREES, "folding": AGREES,
                                 "training scalability": AGREES, "serving scalability": AGREES,
                                 "scoring a pre-filtered set": CANNOT_TELL}  # no pipeline in this run
    assert all(v.claim and v.evidence for v in measured_table(results))
    assert {v.axis: v.basis for v in measured_table(results)}["serving scalability"] == MEASURED


def test_query_features_each_way(results):
    r = copy.deepcopy(results)
    _flip(r, "wals", "softmax", cold(0), diff=0.1)  # the MF heuristic significantly better
    assert verdicts(r)["query features"] == DISAGREES
    r = copy.deepcopy(results)
    _flip(r, "softmax", "popularity", cold(0), significant=False)  # the DNN does not beat the best baseline
    v = next(v for v in measured_table(r) if v.axis == "query features")
    assert v.verdict == CANNOT_TELL and "does not significantly beat the best baseline" in v.evidence
    r = copy.deepcopy(results)
    _flip(r, "wals", "softmax", cold(0), significant=False)  # a tie, and MF gets nothing beyond popularity
    _flip(r, "wals", "popularity", cold(0), significant=False)
    assert verdicts(r)["query features"] == AGREES
    _flip(r, "wals", "popularity", cold(0), significant=True)  # a tie with both using the features
    assert verdicts(r)["query features"] == CANNOT_TELL
    r.settings.user_features = []
    assert verdicts(r)["query features"] == CANNOT_TELL


def test_cold_start_reads_both_fold_ins(results):
    r = copy.deepcopy(results)
    for pid in (cold(1), cold(3)):  # the MAP fold-in beats the DNN
        _flip(r, "softmax", "wals+map", pid, diff=-0.05)
    v = next(v for v in measured_table(r) if v.axis == "cold start")
    assert v.verdict == DISAGREES and "fold-in solve" in v.evidence and "prior weight 3" in v.evidence
    r = copy.deepcopy(results)
    for pid in (cold(1), cold(3)):
        _flip(r, "softmax", "wals+map", pid, significant=False)
    assert verdicts(r)["cold start"] == CANNOT_TELL
    r = copy.deepcopy(results)
    for pid in (cold(1), cold(3)):  # the DNN does not beat the best baseline
        _flip(r, "softmax", "popularity", pid, significant=False)
    assert verdicts(r)["cold start"] == CANNOT_TELL


def test_folding_is_the_contrast_of_the_claim(results):
    r = copy.deepcopy(results)  # w0 does not reduce folding: the contrast's interval is below the margin
    _flip(r, "wals(w0=0)", "wals", WARM, "folding_index", diff=0.0, significant=False, ci=(-0.03, 0.03))
    v = next(v for v in measured_table(r) if v.axis == "folding")
    assert v.verdict == DISAGREES and "w0" in v.evidence
    r = copy.deepcopy(results)  # too uncertain either way
    _flip(r, "softmax(negatives=0)", "softmax", WARM, "folding_index", diff=0.1, significant=False, ci=(-0.1, 0.3))
    assert verdicts(r)["folding"] == CANNOT_TELL
    r = copy.deepcopy(results)  # groups too weak: random leaks no more than the data itself
    r.folding = [FoldingResult(f.model, f.population, f.k, f.index, f.ci, f.leakage, f.natural, f.natural_ci,
                               f.random_leakage, f.random_ci, True) for f in r.folding]
    v = next(v for v in measured_table(r) if v.axis == "folding")
    assert v.verdict == CANNOT_TELL and "too weak" in v.evidence
    r = copy.deepcopy(results)
    r.dataset["groups"] = None
    assert verdicts(r)["folding"] == CANNOT_TELL
    r = copy.deepcopy(results)  # no contrast trained (e.g. --no-folding-contrasts)
    r.models = [m for m in r.models if m.role != "contrast"]
    assert verdicts(r)["folding"] == CANNOT_TELL


def test_training_reads_growth_exponents_not_one_timing(results):
    r = copy.deepcopy(results)
    r.model("softmax").training.seconds = 0.01  # a faster single run changes nothing
    assert verdicts(r)["training scalability"] == AGREES
    r.growth = [_growth("wals", "wals", 1.5), _growth("softmax", "softmax", 1.0)]
    assert verdicts(r)["training scalability"] == DISAGREES
    r.growth = [_growth("wals", "wals", 1.0), _growth("softmax", "softmax", 1.1)]
    assert verdicts(r)["training scalability"] == CANNOT_TELL  # a tie
    r.growth = [_growth("wals", "wals", 1.0, r2=0.3), _growth("softmax", "softmax", 2.0)]
    assert verdicts(r)["training scalability"] == CANNOT_TELL  # a poor fit
    r.growth = []
    assert verdicts(r)["training scalability"] == CANNOT_TELL


def test_serving_tie_is_by_design_and_a_faster_dnn_disagrees(results):
    r = copy.deepcopy(results)
    r.model("softmax").serving = _serving(0.05, 1.0, False)  # 1.05 vs 1.01 ms: within 10%
    v = next(v for v in measured_table(r) if v.axis == "serving scalability")
    assert v.verdict == AGREES and v.basis == BY_DESIGN and "by design" in v.evidence
    r.model("softmax").serving = _serving(0.001, 0.5, False)
    assert verdicts(r)["serving scalability"] == DISAGREES
    r.model("softmax").serving = None
    assert verdicts(r)["serving scalability"] == CANNOT_TELL


def test_models_are_found_by_family_and_role_not_kind(results):
    r = copy.deepcopy(results)
    names = {m.name: f"my-{m.name}" for m in r.models}
    for m in r.models:
        m.name, m.kind = names[m.name], f"my-{m.kind}" if m.kind not in ("popularity", "random") else m.kind
        m.variant_of = names.get(m.variant_of) if m.variant_of else None
    for t in r.paired:
        t.a, t.b = names[t.a], names[t.b]
    for f in r.folding:
        f.model = names[f.model]
    for g in r.growth:
        g.model = names[g.model]
    r.settings.contrast = [names[n] for n in r.settings.contrast]
    assert verdicts(r) == verdicts(results)
    r.models[1].family = "baseline"
    assert set(verdicts(r).values()) == {CANNOT_TELL}
