"""sweep (every point in sweep.json, resumable) and scale (growth-exponent fitting, tiny end-to-end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mfvsdnn.api import prepare_split
from mfvsdnn.cli import app
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.experiment import sweep as S
from mfvsdnn.experiment.results import WARM, PopulationResult, cold
from mfvsdnn.experiment.scale import fit_growth
from mfvsdnn.report.curves import sweep_rows

runner = CliRunner(env={"COLUMNS": "120"})
TINY = dict(w0=(0.0, 0.1), negatives=(0, 10), sampler=("uniform",), gravity=(0.0, 1.0),
            sampler_negatives=10, softmax_params={"epochs": 2, "hidden": (16,), "dim": 8},
            wals_params={"factors": 8, "iterations": 3}, bootstrap=20)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("sw") / "d.csv"
    write_csv(SyntheticConfig(users=250, items=80, groups=2, cross_rate=0.05, seed=2), p)
    return p


@pytest.fixture(scope="module")
def split(data):
    return prepare_split(data, ColumnSpec(user_features=("country", "age_band")), SplitConfig(seed=1))


def test_points_and_dedup():
    cfg = S.SweepConfig(**TINY)
    pts = cfg.points()
    assert [(p["model"], p["knob"]) for p in pts].count(("wals", "w0")) == 2
    assert len(pts) == 2 + 2 + 1 + 2
    with pytest.raises(Exception, match="--negatives"):
        S.SweepConfig(negatives=("lots",))


def test_tiny_sweep_writes_every_point_and_resumes(split, tmp_path, monkeypatch):
    cfg = S.SweepConfig(**TINY)
    calls = []
    real = S.run_point

    def counting(kind, params, sp, c, progress=None):
        calls.append((kind, dict(params)))
        return real(kind, params, sp, c)

    monkeypatch.setattr(S, "run_point", counting)

    class Stop(Exception):
        pass

    def stop_after_two(done, total, p):
        if done == 2 and not p["resumed"]:
            raise Stop

    with pytest.raises(Stop):  # "interrupted" after two trained points
        S.run_sweep(split, cfg, tmp_path, on_point=stop_after_two)
    first = json.loads((tmp_path / "sweep.json").read_text())
    assert len(first["results"]) == 2 and not first["complete"]
    n_unique = len({p["key"] for p in first["points"]})
    calls.clear()
    doc = S.run_sweep(split, cfg, tmp_path)
    unique = 2 + 2 + 0 + 1  # w0 x2, negatives x2 (uniform@10 == negatives 10, gravity 0 == negatives 0), gravity 1
    assert len(calls) == unique - 2  # the two finished points were not retrained
    assert doc["complete"] and n_unique == 2
    on_disk = json.loads((tmp_path / "sweep.json").read_text())
    assert len(on_disk["points"]) == len(cfg.points())
    for p in on_disk["points"]:
        assert {"model", "knob", "value", "params", "populations"} <= set(p)
        pops = [PopulationResult.from_dict(x) for x in p["populations"]]
        assert [x.population for x in pops] == [WARM] + [cold(r) for r in split.config.revealed]
        warm = pops[0]
        for metric, k in (("recall", 20), ("ndcg", 20), ("precision", 20), ("coverage", 20), ("leakage", 20),
                          ("natural_cross_rate", None)):
            assert warm.get(metric, k) is not None, (metric, k)
        assert warm.get("recall", 20).ci is not None and warm.users > 0
        assert 0.0 <= warm.mean("recall", 20) <= 1.0
    wals0 = next(p for p in on_disk["points"] if p["knob"] == "w0" and p["value"] == 0.0)
    assert wals0["params"]["w0"] == 0.0 and "factors" in wals0["params"]  # all hyper-parameters recorded


def test_other_split_does_not_resume(split, data, tmp_path):
    cfg = S.SweepConfig(**{**TINY, "negatives": (), "sampler": (), "gravity": (), "w0": (0.1,)})
    S.run_sweep(split, cfg, tmp_path)
    other = prepare_split(data, ColumnSpec(user_features=("country", "age_band")), SplitConfig(seed=2))
    assert S.load_previous(tmp_path / "sweep.json", other.fingerprint) == {}
    assert len(S.load_previous(tmp_path / "sweep.json", split.fingerprint)) == 1


def test_sweep_cli_writes_reports(data, tmp_path):
    res = runner.invoke(app, ["sweep", str(data), "--w0", "0.1", "--negatives", "", "--sampler", "", "--gravity", "",
                              "--wals-param", "factors=8", "--bootstrap", "10", "--report-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # frontier + the w0 curves
    assert "wals w0" in (tmp_path / "sweep.md").read_text()
    doc = json.loads((tmp_path / "sweep.json").read_text())  # the report records the line that reproduces it
    assert doc["command"].startswith("mfvsdnn sweep ") and "--wals-param factors=8" in doc["command"]
    assert doc["command"] in (tmp_path / "sweep.md").read_text() and "reproduce: mfvsdnn sweep" in res.output
    res = runner.invoke(app, ["sweep", str(data), "--w0", "-1", "--report-dir", str(tmp_path)])
    assert res.exit_code == 1 and "--w0" in res.output


def test_sweep_new_samplers_and_item_buckets_record_model_bytes(split, tmp_path):
    cfg = S.SweepConfig(**{**TINY, "w0": (), "negatives": (), "gravity": (), "sampler": ("in-batch", "mixed"),
                           "item_buckets": (0, 20), "hash_output": True})
    pts = cfg.points()
    assert [(p["knob"], p["value"]) for p in pts] == [("sampler", "in-batch"), ("sampler", "mixed"),
                                                      ("item_buckets", 0), ("item_buckets", 20)]
    assert "hash_output" not in pts[2]["params"] and pts[3]["params"]["hash_output"] is True
    doc = S.run_sweep(split, cfg, tmp_path)
    size = {p["value"]: p["model_bytes"] for p in doc["points"] if p["knob"] == "item_buckets"}
    assert 0 < size[20] < size[0]
    header, rows = sweep_rows(doc)
    assert header[-1] == "model bytes" and rows[-1][-1] == f"{size[20]:,}"
    with pytest.raises(Exception, match="item_buckets is swept"):
        S.SweepConfig(**{**TINY, "item_buckets": (10,), "softmax_params": {"item_buckets": 5}})


@pytest.mark.parametrize("b", [0.0, 1.0, 2.0, 1.37])
def test_growth_exponent_recovers_known_exponent(b):
    rng = np.random.default_rng(0)
    n = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    t = 0.002 * n ** b * np.exp(rng.normal(0, 0.03, len(n)))  # 3% multiplicative noise
    f = fit_growth(n, t)
    assert f.exponent == pytest.approx(b, abs=0.05)
    assert f.r2 > 0.95 or b == 0.0
    assert np.isnan(fit_growth(n[:1], t[:1]).exponent)
    assert fit_growth(n, np.where(np.arange(5) == 2, np.nan, t)).points == 4


def test_scale_cli_tiny(tmp_path):
    res = runner.invoke(app, ["scale", "--sizes", "150,300", "--users-per-item", "1", "--examples-timed", "500",
                              "--latency-queries", "3", "--factors", "8", "--report-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "scale.json").read_text())
    assert doc["command"].startswith("mfvsdnn scale ") and "--sizes 150,300" in doc["command"]
    assert [p["items"] <= s for p, s in zip(doc["points"], (150, 300))] == [True, True]
    for key in ("wals_seconds_per_iteration", "softmax_full_seconds_per_epoch", "softmax_sampled_seconds_per_epoch",
                "wals_query_ms_p50", "softmax_query_ms_p50"):
        assert all(p[key] > 0 for p in doc["points"]), key
        assert np.isfinite(doc["fits"][key]["exponent"])
    assert all(0 < p["softmax_hashed_seconds_per_epoch"] and p["softmax_hashed_buckets"] == p["items"] // 8
               and p["softmax_hashed_model_bytes"] < p["softmax_model_bytes"] for p in doc["points"])
    assert (tmp_path / "scale.html").read_text().count("data:image/png;base64,") == 2


def test_scale_times_exactly_one_epoch_whatever_the_catalogue(split):
    # the default step budget (~50 updates per item) would stretch a timing fit to thousands of steps
    from mfvsdnn.experiment.scale import one_epoch_softmax

    model = one_epoch_softmax({"dim": 8, "hidden": (16,), "negatives": 10, "batch_size": 64})
    train = split.train_set()
    model.fit(train, np.random.default_rng(0))
    assert model.steps_ == model.steps_per_epoch_ == -(-int(train.matrix.nnz) // 64)
    assert len(model.history_) == 1
