"""The measured trade-off table: verdicts from typed results built by hand."""

from __future__ import annotations

import copy

import pytest

from mfvsdnn.experiment.results import (
    WARM,
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
from mfvsdnn.experiment.verdicts import AGREES, CANNOT_TELL, DISAGREES, measured_table

K = 20
CAPS = {"item_vectors": True, "candidate_cache": True, "uses_features": True, "embeds_cold_users": True}


def _pop(pid, recall, leak=None, nat=None, users=100):
    values = [MetricValue("recall", K, recall)]
    if leak is not None:
        values += [MetricValue("leakage", K, leak), MetricValue("natural_cross_rate", None, nat)]
    return PopulationResult(pid, users, values)


def _model(name, kind, family, params, seconds, warm, colds, serving):
    return ModelResult(name, kind, family, dict(CAPS, candidate_cache=family == "mf"), params, 42, None, True, None,
                       TrainingCost(seconds, 10, seconds / 10), serving, [warm] + colds)


def _serving(query_ms, cache):
    return ServingCost(10, query_ms, query_ms, 1.0, 1.0, 0.1, 0.1, 1.0, 1000,
                       0.5 if cache else None, 1000 if cache else None, 100 if cache else None)


def _paired(p):
    return [PairedTest("wals", "softmax", pid, "recall", K, 0.0, (0.0, 0.0), p, p < 0.05)
            for pid in (WARM, cold(0), cold(1), cold(3), cold(5))]


@pytest.fixture
def results():
    cold_w = [_pop(cold(0), 0.30), _pop(cold(1), 0.20), _pop(cold(3), 0.30), _pop(cold(5), 0.35)]
    cold_s = [_pop(cold(0), 0.40), _pop(cold(1), 0.30), _pop(cold(3), 0.40), _pop(cold(5), 0.45)]
    wals = _model("wals", "wals", "mf", {"w0": 0.1}, 1.0, _pop(WARM, 0.5, 0.06, 0.05), cold_w, _serving(0.01, True))
    dnn = _model("softmax", "softmax", "dnn", {"negatives": 50, "gravity": 0.0}, 3.0, _pop(WARM, 0.55, 0.04, 0.05),
                 cold_s, _serving(0.2, False))
    settings = Settings(seed=42, ks=[K], main_k=K, bootstrap=100, confidence_level=0.95, serving_sample=10,
                        user_features=["country"], contrast=["wals", "softmax"])
    return Results({"items": 100, "interactions": 1000, "groups": {"natural_cross_group_rate": 0.05}},
                   {"fingerprint": "x", "config": {}}, settings, [wals, dnn], _paired(0.01))


def verdicts(results):
    return {v.axis: v.verdict for v in measured_table(results)}


def _set(m: ModelResult, pid, metric, value):
    p = m.population(pid)
    p.values = [MetricValue(v.metric, v.k, value) if v.metric == metric else v for v in p.values]


def test_textbook_data_agrees_everywhere(results):
    assert verdicts(results) == {"query features": AGREES, "cold start": AGREES, "folding": AGREES,
                                 "training scalability": AGREES, "serving scalability": AGREES,
                                 "scoring a pre-filtered set": CANNOT_TELL}  # no pipeline in this run
    assert all(v.claim and v.evidence for v in measured_table(results))


def test_folding_cannot_tell_without_groups(results):
    results.dataset["groups"] = None
    row = next(v for v in measured_table(results) if v.axis == "folding")
    assert row.verdict == CANNOT_TELL and "no item groups" in row.evidence


def test_positives_only_dnn_that_folds_agrees_and_one_that_does_not_disagrees(results):
    r = copy.deepcopy(results)
    r.model("softmax").params["negatives"] = 0
    _set(r.model("softmax"), WARM, "leakage", 0.6)
    assert verdicts(r)["folding"] == AGREES
    _set(r.model("softmax"), WARM, "leakage", 0.05)
    assert verdicts(r)["folding"] == DISAGREES
    r = copy.deepcopy(results)
    _set(r.model("wals"), WARM, "leakage", 0.5)  # w0 > 0 but folds anyway
    assert verdicts(r)["folding"] == DISAGREES


def test_no_features_and_no_significance(results):
    r = copy.deepcopy(results)
    r.settings.user_features = []
    assert verdicts(r)["query features"] == CANNOT_TELL
    r = copy.deepcopy(results)
    r.paired = _paired(0.4)
    v = verdicts(r)
    assert v["query features"] == CANNOT_TELL and v["cold start"] == CANNOT_TELL


def test_mf_better_cold_start_disagrees(results):
    r = copy.deepcopy(results)
    w, s = r.model("wals"), r.model("softmax")
    w.populations[1:], s.populations[1:] = s.populations[1:], w.populations[1:]
    v = verdicts(r)
    assert v["cold start"] == DISAGREES and v["query features"] == DISAGREES


def test_models_are_found_by_family_not_kind(results):
    r = copy.deepcopy(results)
    for m in r.models:
        m.name = m.kind = f"my-{m.kind}"
    r.settings.contrast = [m.name for m in r.models]
    for t in r.paired:
        t.a, t.b = r.settings.contrast
    assert verdicts(r) == verdicts(results)
    r.models[1].family = "baseline"
    assert set(verdicts(r).values()) == {CANNOT_TELL}


def test_verdicts_use_the_main_k(results):
    r = copy.deepcopy(results)
    for m in r.models:
        for p in m.populations:
            p.values = [MetricValue(v.metric, 10 if v.k == K else v.k, v.mean, v.ci) for v in p.values]
    for t in r.paired:
        t.k = 10
    r.settings.ks, r.settings.main_k = [10], 10
    assert verdicts(r) == verdicts(results)
    assert all("@20" not in v.evidence for v in measured_table(r))
