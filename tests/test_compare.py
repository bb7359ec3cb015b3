"""``mfvsdnn compare`` end to end on a tiny synthetic CSV: the three reports, report.json against its
shipped JSON Schema, embedded plots, loading runs, refusing runs from another split, any k, and a
model registered only inside a test showing up everywhere without a change to evaluator or report."""

from __future__ import annotations

import json
import math
import re
from typing import ClassVar

import jsonschema
import numpy as np
import pytest
from helpers import QUICK_COMPARE
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.data.synthetic import SyntheticConfig, generate
from mfvsdnn.experiment.results import Results, schema
from mfvsdnn.models import registry
from mfvsdnn.models.base import Capabilities

runner = CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1"})
BASE = ["--wals-param", "iterations=3", "--softmax-param", "epochs=2", "--dim", "8", "--bootstrap", "50",
        "--serving-sample", "10", "--user-features", "country,age_band", "--revealed", "0,1,3"]
FAST = BASE + QUICK_COMPARE
#: the main fixture exercises the fairness machinery too, small: 2 model seeds, 2 tuning trials, the
#: folding contrasts, the MAP fold-in and one timed fit per growth subsample
FAIR = BASE + ["--repeats", "2", "--tune", "2", "--growth-repeats", "1", "--softmax-param", "min_steps=0"]
METRICS = ("recall", "recall_truncated", "ndcg", "precision", "coverage", "leakage", "hit_rate")
SERVING_KEYS = ("query_ms_p50", "query_ms_p99", "topk_ms_p50", "cache_build_seconds", "cache_bytes", "model_bytes")


def validated(path) -> dict:
    """report.json's content, after checking it against the shipped JSON Schema."""
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, schema())
    return doc


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    df = generate(SyntheticConfig(users=220, items=70, groups=3, cross_rate=0.1, mean_interactions=10, seed=2))
    p = tmp_path_factory.mktemp("cmp") / "tiny.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def compared(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(out)] + FAIR)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_writes_three_reports_and_prints_the_five_axes(compared):
    out, output = compared
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    for axis in ("query features", "cold start", "folding", "training scalability", "serving scalability"):
        assert axis in output
    assert "recall@20" in output and "significant" in output
    for baseline in ("most popular", "group popular", "random"):
        assert baseline in output


def test_report_json_follows_the_schema_and_holds_every_number(compared):
    rep = validated(compared[0] / "report.json")
    assert rep["schema_version"] == 3
    results = Results.from_dict(rep)
    assert results.model_names == ["wals", "softmax", "popularity", "group-popularity", "random", "wals(w0=0)",
                                   "softmax(negatives=0)", "wals+map"]
    roles = {m.name: (m.role, m.variant_of) for m in results.models}
    assert roles["random"] == ("baseline", None) and roles["wals(w0=0)"] == ("contrast", "wals")
    assert roles["softmax(negatives=0)"] == ("contrast", "softmax") and roles["wals+map"] == ("variant", "wals")
    assert results.settings.repeats == 2 and results.settings.tune == 2
    assert all(m.repeats == 2 for m in results.models)
    for name in ("wals", "softmax"):  # the same tuning budget for both; trial 1 is the given parameters
        tuning = results.model(name).tuning
        assert tuning["tuned"] and len(tuning["trials"]) == 2
    assert results.model("wals+map").tuning["fold_in_prior"] >= 0
    assert results.model("wals(w0=0)").params["w0"] == 0.0 and results.model("softmax(negatives=0)").params[
        "negatives"] == 0
    # every paired test is in a named family and Holm-adjusted there; significant means adjusted
    families = {f.name: f for f in results.families}
    assert set(families) == {"comparison", "verdicts"}
    for f in results.families:
        members = [t for t in results.paired if t.family == f.name]
        assert len(members) == f.size > 0 and f.method == "holm"
        for t in members:
            assert math.isnan(t.p) or t.p <= t.p_adjusted + 1e-12
            assert t.significant == (t.p_adjusted < 0.05)
    assert any(t.metric == "folding_index" for t in results.paired)
    folding = {f.model: f for f in results.folding}
    assert set(folding) >= {"wals", "softmax", "wals(w0=0)", "softmax(negatives=0)", "popularity"}
    assert {g.model for g in results.growth} == {"wals", "softmax"}
    assert all(len(g.seconds) == 4 and g.repeats == 1 for g in results.growth)
    assert results.model("wals").warm.get("recall", 20).seed_sd is not None
    assert results.settings.contrast == ["wals", "softmax"] and results.settings.main_k == 20
    for m in results.models:
        assert {p.population for p in m.populations} == set(results.population_ids())
        warm = m.warm
        for metric in METRICS:
            for k in (10, 20, 50):
                assert warm.get(metric, k) is not None, (m.name, metric, k)
        for metric, k in (("recall", 20), ("ndcg", 20), ("leakage", 20), ("natural_cross_rate", None)):
            v = warm.get(metric, k)
            assert v.ci[0] <= v.mean <= v.ci[1], (m.name, metric)
        for p in m.populations:  # hits / |T| never exceeds hits / min(k, |T|)
            for k in (10, 20, 50):
                assert p.mean("recall", k) <= p.mean("recall_truncated", k) + 1e-12, (m.name, k)
        if m.role == "variant":  # another use of a fitted model: not timed again
            assert m.serving is None
            continue
        assert m.serving.model_bytes > 0 and m.training.seconds > 0
        assert (m.serving.cache_bytes is not None) == m.capabilities["candidate_cache"]
    by = {m.name: m for m in results.models}
    assert by["wals"].serving.cache_bytes > 0 and by["softmax"].serving.cache_bytes is None
    assert by["wals"].params["iterations"] == 3 and by["softmax"].params["epochs"] == 2
    assert by["wals"].family == "mf" and by["softmax"].family == "dnn" and by["random"].family == "baseline"
    assert results.settings.seed == 42 and results.split["fingerprint"]
    assert results.split["held_out_untrained_items"] <= results.split["held_out_interactions_untrained_item"]
    assert {r.axis for r in results.comparison} >= {"query features", "cold start", "folding",
                                                    "training scalability", "serving scalability"}
    assert results.paired_test(results.population_ids()[0], "recall", 20) is not None
    assert results.settings.command.startswith("mfvsdnn compare ") and "--bootstrap 50" in results.settings.command
    assert Results.from_dict(rep).to_dict() == rep  # the JSON form round-trips exactly


def test_results_to_frame(compared):
    results = Results.from_dict(validated(compared[0] / "report.json"))
    frame = results.to_frame()
    assert set(frame["model"]) == set(results.model_names)
    row = frame[(frame.model == "wals") & (frame.population == "warm") & (frame.metric == "recall") & (frame.k == 20)]
    assert len(row) == 1 and row["mean"].iloc[0] == pytest.approx(results.model("wals").warm.mean("recall", 20))


def test_html_is_self_contained_with_an_image_per_plot(compared):
    html = (compared[0] / "report.html").read_text()
    figs = re.findall(r"<figure id='([a-z_-]+)'><img alt='[^']*' src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'",
                      html)
    assert set(figs) == {"map_wals", "map_softmax", "recall_at_k", "cold_start", "leakage", "folding_index",
                         "growth"}  # no maps of baselines
    assert "http://" not in html and "https://" not in html
    md = (compared[0] / "report.md").read_text()
    assert "| metric |" in md and "Cold users, 0 revealed" in md and "mfvsdnn compare" in md
    assert "| recall@20 |" in md and "| recall@20 (truncated) |" in md


def test_loaded_runs_give_the_same_numbers(csv, tmp_path):
    out = tmp_path / "first"  # one model seed: the saved run is the whole of what was measured
    assert runner.invoke(app, ["compare", str(csv), "--report-dir", str(out)] + FAST).exit_code == 0
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path / "again"), "--wals",
                              str(out / "runs/wals"), "--softmax", str(out / "runs/softmax")] + FAST)
    assert res.exit_code == 0, res.output
    a = Results.from_dict(validated(out / "report.json"))
    b = Results.from_dict(validated(tmp_path / "again" / "report.json"))
    for name in ("wals", "softmax"):
        ma, mb = a.model(name), b.model(name)
        assert not mb.trained_here and mb.run_dir and mb.repeats == 1
        assert ma.warm.mean("recall", 20) == mb.warm.mean("recall", 20)
        pid = a.population_ids()[2]
        assert ma.population(pid).get("recall", 20).ci == mb.population(pid).get("recall", 20).ci


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
    rep = validated(out / "report.json")
    assert [v["axis"] for v in rep["verdicts"]] == ["query features", "cold start", "folding",
                                                    "training scalability", "serving scalability",
                                                    "scoring a pre-filtered set"]
    assert all(v["verdict"] in ("agrees", "disagrees", "cannot tell") for v in rep["verdicts"])
    assert "trade-off table, measured" in output
    assert "trade-off table, measured" in (out / "report.md").read_text()
    assert "trade-off table, measured" in (out / "report.html").read_text()


def test_folding_cannot_tell_without_groups(csv, tmp_path):
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--item-group-col", "",
                              "--user-group-col", ""] + FAST)
    assert res.exit_code == 0, res.output
    rep = validated(tmp_path / "report.json")
    folding = next(v for v in rep["verdicts"] if v["axis"] == "folding")
    assert folding["verdict"] == "cannot tell" and "no item groups" in folding["evidence"]
    assert "group-popularity" not in [m["name"] for m in rep["models"]]
    assert any("group-popularity" in n for n in rep["notes"])


@pytest.mark.parametrize("ks, main_k", [("10,50", 10), ("5", 5), ("10,20", 20)])
def test_any_k_gives_complete_nan_free_rows(csv, tmp_path, ks, main_k):
    fast = [a for a in FAST]
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--k", ks, "--no-baselines"] + fast)
    assert res.exit_code == 0, res.output
    rep = validated(tmp_path / "report.json")
    assert rep["settings"]["main_k"] == main_k and [m["name"] for m in rep["models"]] == ["wals", "softmax"]
    for v in rep["verdicts"]:
        assert "nan" not in v["evidence"] and "could not be measured" not in v["evidence"], v
        no_pipeline = v["axis"] == "scoring a pre-filtered set" and v["evidence"].startswith("no pipeline")
        assert f"@{main_k}" in v["evidence"] or v["axis"] in ("training scalability", "serving scalability") \
            or no_pipeline, v
    metric_rows = [r for r in rep["comparison"] if r["source"] == "metric"]
    assert metric_rows and all(r["k"] == main_k for r in metric_rows)
    for r in metric_rows:
        assert all(v is not None and not math.isnan(v) for v in r["values"].values()), r


class Oracle:
    """A model registered only in this test: scores every user's held-out items first (fixed vectors)."""

    kind: ClassVar[str] = "test-oracle"
    family: ClassVar[str] = "other"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=True, candidate_cache=True,
                                                        uses_features=False, embeds_cold_users=True)

    def __init__(self, dim: int = 4) -> None:
        self.dim = int(dim)
        self.train_seconds_ = 0.0
        self.history_: list[dict] = []

    def fit(self, train, rng, progress=None):
        self.V = rng.standard_normal((train.n_items, self.dim)).astype(np.float32)
        self.train_seconds_ = 1e-3
        self.history_ = [{"iteration": 1, "seconds": 1e-3}]
        return self

    def query_vectors(self, histories, features=None, users=None, groups=None):
        return np.ones((histories.shape[0], self.dim), dtype=np.float32)

    @property
    def item_vectors(self):
        return self.V

    def get_params(self):
        return {"dim": self.dim}

    def state(self):
        return {"V": self.V}

    @classmethod
    def from_state(cls, params, arrays, info):
        m = cls(**params)
        m.V = arrays["V"]
        m.train_seconds_, m.history_ = info.get("train_seconds", 0.0), info.get("history", [])
        return m


def test_a_fifth_model_registered_in_a_test_shows_up_everywhere(csv, tmp_path):
    registry.register(Oracle)
    try:
        res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path), "--models",
                                  "wals,softmax,test-oracle"] + FAST)
        assert res.exit_code == 0, res.output
        assert "test-oracle" in res.output
        rep = validated(tmp_path / "report.json")
        assert "test-oracle" in [m["name"] for m in rep["models"]]
        oracle = Results.from_dict(rep).model("test-oracle")
        assert oracle.family == "other" and 0 <= oracle.warm.mean("recall", 20) <= 1
        assert oracle.serving.cache_bytes > 0  # its declared capability, not its kind, decides
        html = (tmp_path / "report.html").read_text()
        assert "test-oracle" in html and "map_test-oracle" in html
        assert "test-oracle" in (tmp_path / "report.md").read_text()
    finally:
        registry.unregister("test-oracle")


def test_unknown_model_is_refused_before_reading_data(tmp_path):
    res = runner.invoke(app, ["compare", str(tmp_path / "missing.csv"), "--models", "wals,nosuch",
                              "--report-dir", str(tmp_path / "r")])
    assert res.exit_code == 1 and "nosuch" in res.output and "wals" in res.output
    assert "no such file" not in res.output and "Traceback" not in res.output


def test_per_user_values_are_exported_and_recompute_the_means(csv, tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    for name, read in (("per_user.parquet", pq.read_table), ("values.csv", pcsv.read_csv)):
        out = tmp_path / name.split(".")[0]
        res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(out), "--per-user", name] + FAST)
        assert res.exit_code == 0, res.output
        frame = read(out / name).to_pandas()
        assert list(frame.columns) == ["model", "seed", "population", "revealed", "user", "metric", "k", "value"]
        results = Results.from_dict(validated(out / "report.json"))
        for m in ("wals", "softmax", "random"):
            rows = frame[(frame.model == m) & (frame.population == "warm") & (frame.metric == "recall")
                         & (frame.k == 20)]
            assert rows["value"].mean() == pytest.approx(results.model(m).warm.mean("recall", 20))
            assert rows["user"].nunique() == results.model(m).warm.users
        marker = json.loads((out / ".mfvsdnn.json").read_text())
        assert name in marker["entries"]


def test_per_user_must_be_a_file_name_inside_the_report_folder(csv, tmp_path):
    from helpers import cli_fails

    cli_fails(["compare", csv, "--report-dir", tmp_path / "r", "--per-user", str(tmp_path / "x.csv")],
              "--per-user takes a file name")
    cli_fails(["compare", csv, "--report-dir", tmp_path / "r", "--per-user", "x.txt"], "must end in .csv or .parquet")
    assert not (tmp_path / "r").exists()
