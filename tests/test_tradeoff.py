"""The measured trade-off table: verdicts from a report's numbers."""

from __future__ import annotations

import copy

import pytest

from mfvsdnn.experiment.verdicts import AGREES, CANNOT_TELL, DISAGREES, measured_table


def _pop(recall, leak=None, nat=None, users=100):
    d = {"users": users, "recall@20": recall}
    if leak is not None:
        d.update({"leakage@20": leak, "natural_cross_rate": nat})
    return d


def _sig(p):
    return {"recall@20": {"diff": 0.0, "p": p, "significant": p < 0.05}}


@pytest.fixture
def report():
    cold_w = {"r=0": _pop(0.30), "r=1": _pop(0.20), "r=3": _pop(0.30), "r=5": _pop(0.35)}
    cold_s = {"r=0": _pop(0.40), "r=1": _pop(0.30), "r=3": _pop(0.40), "r=5": _pop(0.45)}
    return {
        "dataset": {"items": 100, "interactions": 1000, "groups": {"natural_cross_group_rate": 0.05}},
        "settings": {"user_features": ["country"]},
        "models": {
            "wals": {"params": {"w0": 0.1}, "train_seconds": 1.0, "training": {"seconds_per_iteration": 0.1},
                     "warm": _pop(0.5, 0.06, 0.05), "cold": cold_w,
                     "serving": {"query_ms_p50": 0.01, "topk_ms_p50": 1.0, "cache_build_seconds": 0.5,
                                 "cache_bytes": 1000}},
            "softmax": {"params": {"negatives": 50, "gravity": 0.0}, "train_seconds": 3.0,
                        "training": {"seconds_per_iteration": 0.3}, "warm": _pop(0.55, 0.04, 0.05), "cold": cold_s,
                        "serving": {"query_ms_p50": 0.2, "topk_ms_p50": 1.0, "cache_build_seconds": None,
                                    "cache_bytes": None}},
        },
        "comparison": {"paired": {k: _sig(0.01) for k in ("warm", "r=0", "r=1", "r=3", "r=5")}},
    }


def verdicts(report):
    return {r["axis"]: r["verdict"] for r in measured_table(report)}


def test_textbook_data_agrees_everywhere(report):
    v = verdicts(report)
    assert v == {"query features": AGREES, "cold start": AGREES, "folding": AGREES,
                 "training scalability": AGREES, "serving scalability": AGREES}
    assert all(r["claim"] and r["evidence"] for r in measured_table(report))


def test_folding_cannot_tell_without_groups(report):
    report["dataset"]["groups"] = None
    row = next(r for r in measured_table(report) if r["axis"] == "folding")
    assert row["verdict"] == CANNOT_TELL and "no item groups" in row["evidence"]


def test_positives_only_dnn_that_folds_agrees_and_one_that_does_not_disagrees(report):
    r = copy.deepcopy(report)
    r["models"]["softmax"]["params"]["negatives"] = 0
    r["models"]["softmax"]["warm"]["leakage@20"] = 0.6
    assert verdicts(r)["folding"] == AGREES
    r["models"]["softmax"]["warm"]["leakage@20"] = 0.05
    assert verdicts(r)["folding"] == DISAGREES
    r = copy.deepcopy(report)
    r["models"]["wals"]["warm"]["leakage@20"] = 0.5  # w0 > 0 but folds anyway
    assert verdicts(r)["folding"] == DISAGREES


def test_no_features_and_no_significance(report):
    r = copy.deepcopy(report)
    r["settings"]["user_features"] = []
    assert verdicts(r)["query features"] == CANNOT_TELL
    r = copy.deepcopy(report)
    r["comparison"]["paired"] = {k: _sig(0.4) for k in ("warm", "r=0", "r=1", "r=3", "r=5")}
    v = verdicts(r)
    assert v["query features"] == CANNOT_TELL and v["cold start"] == CANNOT_TELL


def test_mf_better_cold_start_disagrees(report):
    r = copy.deepcopy(report)
    r["models"]["wals"]["cold"], r["models"]["softmax"]["cold"] = r["models"]["softmax"]["cold"], r["models"]["wals"]["cold"]
    v = verdicts(r)
    assert v["cold start"] == DISAGREES and v["query features"] == DISAGREES
