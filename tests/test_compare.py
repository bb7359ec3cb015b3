"""``mfvsdnn compare`` end to end on a tiny synthetic CSV: the three reports, the JSON schema,
embedded plots, loading runs, and refusing runs from another split."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.data.synthetic import SyntheticConfig, generate

runner = CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1"})
FAST = ["--wals-param", "iterations=3", "--softmax-param", "epochs=2", "--dim", "8", "--bootstrap", "50",
        "--serving-sample", "10", "--user-features", "country,age_band", "--revealed", "0,1,3"]
SCHEMA_M = ("params", "train_seconds", "warm", "cold", "serving")
WARM_KEYS = ["users", "natural_cross_rate"] + [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "coverage",
                                                                      "leakage", "hit_rate") for k in (10, 20, 50)]
SERVING_KEYS = ("query_ms_p50", "query_ms_p99", "topk_ms_p50", "cache_build_seconds", "cache_bytes", "model_bytes")


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    df = generate(SyntheticConfig(users=220, items=70, groups=3, cross_rate=0.1, mean_interactions=10, seed=2))
    p = tmp_path_factory.mktemp("cmp") / "tiny.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def compared(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(out)] + FAST)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_writes_three_reports_and_prints_the_five_axes(compared):
    out, output = compared
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    for axis in ("query features", "cold start", "folding", "training scalability", "serving scalability"):
        assert axis in output
    assert "recall@20" in output and "significant" in output


def test_report_json_schema(compared):
    rep = json.loads((compared[0] / "report.json").read_text())
    assert {"dataset", "split", "models", "comparison"} <= set(rep)
    assert set(rep["models"]) == {"wals", "softmax"}
    for kind, m in rep["models"].items():
        for key in SCHEMA_M:
            assert key in m, (kind, key)
        for key in WARM_KEYS:
            assert key in m["warm"], (kind, key)
        for key in ("recall@20", "ndcg@20", "leakage@20", "natural_cross_rate"):
            lo, hi = m["warm"][f"{key}_ci"]
            assert lo <= m["warm"][key] <= hi
        assert set(m["cold"]) == {"r=0", "r=1", "r=3"}
        for pop in m["cold"].values():
            for key in WARM_KEYS:
                assert key in pop, (kind, key)
        for key in SERVING_KEYS:
            assert key in m["serving"], (kind, key)
        assert m["serving"]["model_bytes"] > 0 and m["train_seconds"] > 0
    assert rep["models"]["wals"]["serving"]["cache_bytes"] > 0
    assert rep["models"]["softmax"]["serving"]["cache_bytes"] is None  # not applicable to the DNN
    assert rep["models"]["wals"]["params"]["iterations"] == 3 and rep["models"]["softmax"]["params"]["epochs"] == 2
    assert rep["settings"]["seed"] == 42 and rep["split"]["fingerprint"]
    axes = {r["axis"] for r in rep["comparison"]["rows"]}
    assert {"query features", "cold start", "folding", "training scalability", "serving scalability"} <= axes
    assert "recall@20" in rep["comparison"]["paired"]["warm"]


def test_html_is_self_contained_with_an_image_per_plot(compared):
    html = (compared[0] / "report.html").read_text()
    figs = re.findall(r"<figure id='([a-z_]+)'><img alt='[^']*' src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'",
                      html)
    assert set(figs) == {"map_wals", "map_softmax", "recall_at_k", "cold_start", "leakage"}
    assert "http://" not in html and "https://" not in html
    md = (compared[0] / "report.md").read_text()
    assert "| metric |" in md and "Cold users, 0 revealed" in md


def test_loaded_runs_give_the_same_numbers(compared, csv, tmp_path):
    out, _ = compared
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--wals", str(out / "runs/wals"),
                              "--softmax", str(out / "runs/softmax")] + FAST)
    assert res.exit_code == 0, res.output
    a = json.loads((out / "report.json").read_text())["models"]
    b = json.loads((tmp_path / "report.json").read_text())["models"]
    for kind in a:
        assert a[kind]["warm"]["recall@20"] == b[kind]["warm"]["recall@20"]
        assert a[kind]["cold"]["r=1"]["recall@20_ci"] == b[kind]["cold"]["r=1"]["recall@20_ci"]


def test_mismatched_fingerprints_are_refused(compared, csv, tmp_path):
    out, _ = compared
    # the runs were trained with seed 42; DATA split with seed 7 differs
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--wals", str(out / "runs/wals"),
                              "--seed", "7"] + FAST)
    assert res.exit_code == 1
    assert "fingerprint" in res.output and "seed=42 vs 7" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "report.json").exists()


def test_runs_from_different_splits_refused(compared, csv, tmp_path):
    out, _ = compared
    from mfvsdnn.api import prepare_split, train_model
    from mfvsdnn.data import ColumnSpec
    from mfvsdnn.data.split import SplitConfig

    split7 = prepare_split(csv, ColumnSpec(user_features=("country", "age_band")), SplitConfig(seed=7))
    train_model("wals", split7, {"iterations": 1, "factors": 4}, 7, tmp_path / "wals7")
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path / "r"), "--wals",
                              str(tmp_path / "wals7"), "--softmax", str(out / "runs/softmax")] + FAST)
    assert res.exit_code == 1 and "trained on different splits" in res.output
    other = tmp_path / "other"
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(other), "--cold-users", "0.2",
                              "--softmax", str(out / "runs/softmax")] + FAST)
    assert res.exit_code == 1 and "fingerprint" in res.output
    # a softmax run passed as --wals is refused too
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(other), "--wals", str(out / "runs/softmax")]
                        + FAST)
    assert res.exit_code == 1 and "not 'wals'" in res.output


def test_measured_tradeoff_section_in_every_report(compared):
    out, output = compared
    rep = json.loads((out / "report.json").read_text())
    assert [r["axis"] for r in rep["tradeoff"]] == ["query features", "cold start", "folding",
                                                    "training scalability", "serving scalability"]
    assert all(r["verdict"] in ("agrees", "disagrees", "cannot tell") for r in rep["tradeoff"])
    assert "trade-off table, measured" in output
    assert "trade-off table, measured" in (out / "report.md").read_text()
    assert "trade-off table, measured" in (out / "report.html").read_text()


def test_folding_cannot_tell_without_groups(csv, tmp_path):
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--item-group-col", "",
                              "--user-group-col", ""] + FAST)
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "report.json").read_text())
    folding = next(r for r in rep["tradeoff"] if r["axis"] == "folding")
    assert folding["verdict"] == "cannot tell" and "no item groups" in folding["evidence"]
