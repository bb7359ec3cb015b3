"""The Spark engine: the parameter mapping and its refusals (no Spark), then one local Spark session that
trains a run, checks it against the local WALS and against Spark's own row equations, reads CSV,
.csv.gz and Parquet into the local loader's Dataset, serves the run through recommend, scores top-k in
Spark tasks exactly as locally, and runs ``compare --engine spark`` through the one experiment runner."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import QUICK_COMPARE

from mfvsdnn.core.errors import MfvsdnnError, ModelError
from mfvsdnn.data import ColumnSpec, read_interactions
from mfvsdnn.data.split import SplitConfig, make_split
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.engines.spark import evaluate as E
from mfvsdnn.engines.spark import mapping as M
from mfvsdnn.engines.spark import reader as R
from mfvsdnn.engines.spark import session as S
from mfvsdnn.engines.spark import train as T

# ---------------------------------------------------------------------------------------------
# the mapping, without Spark


@pytest.mark.parametrize("w0, alpha", [(0.1, 9.0), (0.5, 1.0), (1.0, 0.0), (0.01, 99.0)])
def test_alpha_gives_confidence_one_over_w0(w0, alpha):
    assert M.spark_alpha(w0) == pytest.approx(alpha)
    assert 1.0 + M.spark_alpha(w0) == pytest.approx(1.0 / w0)  # observed weight relative to unobserved


@pytest.mark.parametrize("w0, why", [(0.0, "infinite"), (-0.2, "infinite"), (1.5, "negative"),
                                     (float("nan"), "infinite")])
def test_w0_outside_spark_is_refused_with_the_reason(w0, why):
    with pytest.raises(ModelError, match=why) as e:
        M.spark_alpha(w0)
    assert "--w0" in str(e.value) and "spark" in str(e.value).lower()


def _toy_train() -> sp.csr_matrix:
    # 4 users x 5 items; user 3 and item 4 have no positives
    rows = [0, 0, 0, 1, 1, 2]
    cols = [0, 1, 2, 0, 3, 1]
    return sp.csr_matrix((np.ones(6, np.float32), (rows, cols)), shape=(4, 5))


def test_reg_param_known_answer_and_mean_effective_reg_equals_reg():
    m = _toy_train()
    # 3 users and 4 items with positives, nnz = 6: regParam = reg * 7 / (2 * w0 * 6)
    rp = M.spark_reg_param(2.0, 0.25, 3, 4, 6)
    assert rp == pytest.approx(2.0 * 7 / (2 * 0.25 * 6))
    nu = np.diff(m.indptr)
    ni = np.bincount(m.indices, minlength=5)
    counts = np.concatenate([nu[nu > 0], ni[ni > 0]])
    assert M.effective_reg(rp, 0.25, counts).mean() == pytest.approx(2.0)


def test_als_params_and_lambda_relation():
    m = _toy_train()
    p = M.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 11, m)
    assert p == {"implicitPrefs": True, "alpha": pytest.approx(4.0), "rank": 8, "maxIter": 7,
                 "regParam": pytest.approx(1.0 * 7 / (2 * 0.2 * 6)), "seed": 11, "nonnegative": False}
    assert M.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 11, m, 0.3)["regParam"] == 0.3
    rel = M.lambda_relation({"w0": 0.2, "reg": 1.0}, p, m, False)
    assert rel["exact"] is False
    # user 0 has 3 positives, users 1, 2 have 2 and 1: effective reg 0.2 * regParam * n
    assert rel["effective_reg_users"]["max"] == pytest.approx(0.2 * p["regParam"] * 3)
    assert rel["effective_reg_users"]["min"] == pytest.approx(0.2 * p["regParam"] * 1)
    with pytest.raises(ModelError, match="no interactions"):
        M.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 1, sp.csr_matrix((3, 3)))


def test_reader_choice(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("user_id,item_id\nu,i\n")
    assert R.choose_reader(f) == "pandas"
    assert R.choose_reader(f, "spark") == "spark"
    assert R.choose_reader("hdfs://nn:8020/logs/a.csv") == "spark"
    assert R.choose_reader(tmp_path / "x.parquet") == "spark"
    assert R.choose_reader(tmp_path) == "spark"  # a directory (e.g. of Parquet parts)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert R.choose_reader(gz) == "spark"
    assert R.choose_reader(f, test_path=f) == "pandas"
    with pytest.raises(MfvsdnnError, match="--test"):
        R.choose_reader("s3a://bucket/a.csv", test_path=f)
    with pytest.raises(MfvsdnnError, match="--spark-reader"):
        R.choose_reader(f, "arrow")
    with pytest.raises(MfvsdnnError, match="local plain CSV"):
        R.choose_reader(gz, "pandas")


def test_conf_and_uri_helpers(tmp_path):
    assert S.parse_conf(["spark.executor.memory=8g", "a.b = x=y"]) == {"spark.executor.memory": "8g", "a.b": "x=y"}
    with pytest.raises(MfvsdnnError, match="KEY=VALUE"):
        S.parse_conf(["spark.executor.memory"])
    assert R.restore_uri(Path("hdfs://nn:8020/x/a.csv"), ["train-wals", "hdfs://nn:8020/x/a.csv"]) == \
        "hdfs://nn:8020/x/a.csv"
    assert R.restore_uri(tmp_path / "a.csv", []) == str(tmp_path / "a.csv")
    assert S.session_conf("local[2]", {"spark.driver.memory": "6g"})["spark.driver.memory"] == "6g"
    assert S.session_conf("yarn")["spark.ui.enabled"] == "false"
    assert "spark.sql.shuffle.partitions" not in S.session_conf("yarn")


def test_missing_pyspark_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    with pytest.raises(S.SparkError) as e:
        S.require_pyspark()
    assert "pip install 'mfvsdnn[spark]'" in str(e.value) and "Java 17" in str(e.value)


def test_missing_java_says_what_to_install(monkeypatch):
    pytest.importorskip("pyspark", reason="pyspark not installed; the Java check runs after the import")
    monkeypatch.setattr(S, "java_major", lambda: None)
    with pytest.raises(S.SparkError, match="no java was found.*Java 17 or newer"):
        S.require_pyspark()
    monkeypatch.setattr(S, "java_major", lambda: 11)
    with pytest.raises(S.SparkError, match="Java 17 or newer, found Java 11"):
        S.require_pyspark()


def _no_spark(*a, **k):
    raise AssertionError("Spark must not start for a refused option")


def test_w0_refused_before_spark_starts(monkeypatch, tmp_path):
    from mfvsdnn.api import compare, train_wals_spark

    monkeypatch.setattr(S, "spark_session", _no_spark)
    f = tmp_path / "a.csv"
    f.write_text("user_id,item_id\nu,i\n")
    for w0, why in ((0.0, "infinite"), (1.0, r"\[0, 1\)")):  # w0 = 1: our WALS itself needs w0 < 1
        with pytest.raises(ModelError, match=why):
            train_wals_spark(f, ColumnSpec(), SplitConfig(), None, {"w0": w0}, tmp_path / "run")
        with pytest.raises(ModelError, match=why):
            compare(f, ColumnSpec(), SplitConfig(), None, params={"wals": {"w0": w0}}, engine="spark",
                    report_dir=tmp_path / "rep")
    assert not (tmp_path / "run").exists() and not (tmp_path / "rep").exists()


def test_spark_fit_trains_other_kinds_locally_like_the_runner(monkeypatch, tmp_path):
    from mfvsdnn.experiment.runner import fit_model
    from mfvsdnn.experiment.spec import ModelSpec

    monkeypatch.setattr(S, "spark_session", _no_spark)  # nothing but WALS may touch Spark
    f = tmp_path / "a.csv"
    write_csv(SyntheticConfig(users=60, items=30, groups=2, mean_interactions=6, seed=1), f)
    split = make_split(read_interactions(f), SplitConfig(seed=3))
    spec = ModelSpec("softmax", {"epochs": 1, "dim": 4})
    fit = T.fit_on_spark(master="local[1]")
    got, want = fit(spec, split, 3, save_to=tmp_path / "run"), fit_model(spec, split, 3)
    np.testing.assert_array_equal(got.model.item_vectors, want.model.item_vectors)
    assert got.trained_here and got.run_dir == tmp_path / "run" and fit.meta == {}
    assert got.validation_recall == want.validation_recall


def test_spark_fit_refuses_w0_spark_cannot_express():
    from mfvsdnn.experiment.spec import ModelSpec

    T.check_models([ModelSpec("wals", {"w0": 0.5}), ModelSpec("softmax"), ModelSpec("wals", {"w0": 0.0},
                                                                                   run_dir=Path("loaded"))])
    with pytest.raises(ModelError, match="infinite at w0 = 0"):
        T.check_models([ModelSpec("wals", {"w0": 0.0})])


# ---------------------------------------------------------------------------------------------
# with Spark (local[2], one session for the module)


def _spark_or_skip():
    try:
        S.require_pyspark()
    except S.SparkError as e:
        pytest.skip(f"Spark integration tests skipped: {e}")


PARAMS = {"factors": 16, "w0": 0.1, "reg": 1.0, "iterations": 8, "solver": "cholesky"}
FEATS = ColumnSpec(user_features=("country", "age_band"))
RECALL_TOLERANCE = 0.05  # |recall@20 Spark - recall@20 local| on the tiny data's warm test users


@pytest.fixture(scope="module")
def spark():
    _spark_or_skip()
    with S.spark_session("local[2]", {"spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "4"}) as s:
        yield s


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("spark")
    write_csv(SyntheticConfig(users=500, items=150, groups=3, mean_interactions=15, seed=3), d / "g.csv")
    return d


@pytest.fixture(scope="module")
def trained(spark, data):
    from mfvsdnn.api import train_wals_spark

    return train_wals_spark(data / "g.csv", FEATS, SplitConfig(seed=5), None, PARAMS, data / "run", spark=spark)


def test_spark_run_loads_in_the_local_format(trained, data):
    from mfvsdnn.models.store import load_run

    run = load_run(data / "run")
    assert run.kind == "wals" and run.meta["engine"] == "spark"
    sm = run.meta["spark"]
    assert sm["reader"] == "pandas" and sm["master"].startswith("local")
    assert sm["als_params"]["alpha"] == pytest.approx(9.0) and sm["als_params"]["rank"] == 16
    assert sm["als_params"]["maxIter"] == 8 and sm["lambda_relation"]["exact"] is False
    assert sm["als_params"]["seed"] == T.als_seed(5) and run.meta["seed"] == 5
    assert sm == json.loads(json.dumps(trained.summary["spark"]))  # train-wals prints what model.json holds
    assert run.meta["params"]["w0"] == 0.1 and run.meta["params"]["reg"] == 1.0
    np.testing.assert_array_equal(run.model.user_factors_, trained.model.user_factors_)
    assert run.fingerprint == trained.split.fingerprint
    assert len(run.meta["history"]) == 8 and "objective" in run.meta["history"][-1]
    # users with no training row (cold) and items never trained have zero factors, like local WALS
    cold = np.diff(trained.split.train.indptr) == 0
    assert cold.any() and not run.model.user_factors_[cold].any()
    assert np.abs(run.model.user_factors_[~cold]).sum(axis=1).min() > 0


def test_spark_factors_solve_our_row_equation_with_als_wr_reg(trained):
    """Spark's last half-step solves users against its final items: each user row must satisfy
    (w0 V^T V + (1 - w0) sum_Omega v v^T + w0 regParam n_u I) u = sum_Omega v  (alpha = 1/w0 - 1)."""
    m = trained.model
    U, V = m.user_factors_.astype(np.float64), m.item_factors_.astype(np.float64)
    train = trained.split.train
    w0 = PARAMS["w0"]
    rp = trained.summary["spark"]["als_params"]["regParam"]
    G = V.T @ V
    checked = 0
    for u in np.flatnonzero(np.diff(train.indptr) > 0)[:60]:
        Vo = V[train.indices[train.indptr[u]:train.indptr[u + 1]]]
        n_u = Vo.shape[0]
        A = w0 * G + (1 - w0) * Vo.T @ Vo + w0 * rp * n_u * np.eye(V.shape[1])
        x = np.linalg.solve(A, Vo.sum(axis=0))
        np.testing.assert_allclose(U[u], x, rtol=2e-3, atol=2e-4)
        # and a constant reg (no n_u scaling) would not match for users with n_u != mean
        checked += 1
    assert checked == 60


def test_spark_recall_close_to_local_wals(trained):
    from mfvsdnn.evaluation.evaluator import evaluate_model
    from mfvsdnn.models.wals import WALS

    split = trained.split
    local = WALS(**PARAMS).fit(split.train_set(), np.random.default_rng(5))
    r_spark = np.nanmean(evaluate_model(trained.model, split, (20,))["warm"].per_user["recall", 20])
    r_local = np.nanmean(evaluate_model(local, split, (20,))["warm"].per_user["recall", 20])
    pop = np.bincount(split.train.indices, minlength=split.train.shape[1])
    assert r_spark > 0.2  # far above chance (20 of ~150 items, most excluded targets in-group)
    assert abs(r_spark - r_local) <= RECALL_TOLERANCE, (r_spark, r_local, pop.max())


def test_spark_run_recommends(trained, data):
    from mfvsdnn.api import recommend_new, recommend_user

    run_dir = data / "run"
    split = trained.split
    warm = split.dataset.user_ids[split.warm_users[0]]
    out = recommend_user(run_dir, warm, k=10)
    recs = [r["item_id"] for r in out["recommendations"]]
    known = set(split.dataset.item_ids[split.known()[split.warm_users[0]].indices])
    assert len(recs) == 10 and not known & set(recs)
    new = recommend_new(run_dir, [], {"country": split.dataset.feature_values["country"][0]}, k=5)
    assert len(new["recommendations"]) == 5 and new["notes"]


def test_spark_reader_matches_the_local_loader(spark, data, tmp_path):
    src = data / "g.csv"
    local = read_interactions(src, FEATS)
    ds = R.read_dataset_spark(spark, str(src), FEATS)
    assert list(ds.user_ids) == list(local.user_ids) and list(ds.item_ids) == list(local.item_ids)
    assert (ds.matrix != local.matrix).nnz == 0
    np.testing.assert_array_equal(ds.item_groups, local.item_groups)
    np.testing.assert_array_equal(ds.user_groups, local.user_groups)
    for f in FEATS.user_features:
        np.testing.assert_array_equal(ds.features[f], local.features[f])
    cfg = SplitConfig(seed=5)
    a, b = make_split(ds, cfg), make_split(local, cfg)
    assert a.fingerprint == b.fingerprint and (a.train != b.train).nnz == 0 and (a.test != b.test).nnz == 0
    # the same rows gzipped, and as Parquet (written by Spark): same ids and matrix
    gz = tmp_path / "g.csv.gz"
    with open(src, "rb") as fi, gzip.open(gz, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    pq = tmp_path / "g.parquet"
    spark.read.csv(str(src), header=True).write.parquet(str(pq))
    for other in (gz, pq):
        o = R.read_dataset_spark(spark, str(other), FEATS)
        assert list(o.user_ids) == list(local.user_ids) and (o.matrix != local.matrix).nnz == 0, other
        np.testing.assert_array_equal(o.features["country"], local.features["country"])


def test_spark_reader_bad_input(spark, tmp_path):
    from mfvsdnn.core.errors import DataError

    with pytest.raises(DataError, match="no such file"):
        R.read_dataset_spark(spark, str(tmp_path / "nope.csv"))
    f = tmp_path / "w.csv"
    f.write_text("user_id,item_id,rating\nu1,i1,5\nu2,i2,oops\n")
    with pytest.raises(DataError, match="'rating'.*not a number: 'oops'"):
        R.read_dataset_spark(spark, str(f), ColumnSpec(weight_col="rating"))
    f.write_text("who,what\nu1,i1\n")
    with pytest.raises(DataError, match="no user column"):
        R.read_dataset_spark(spark, str(f))
    f.write_text("user_id,item_id,rating\nu1,i1,1\nu2,i2,2\n")
    spec = ColumnSpec(weight_col="rating", min_weight=2)
    ds, local = R.read_dataset_spark(spark, str(f), spec), read_interactions(f, spec)
    assert list(ds.user_ids) == list(local.user_ids) == ["u1", "u2"]  # ids from every row, as locally
    assert ds.nnz == local.nnz == 1 and (ds.matrix != local.matrix).nnz == 0
    with pytest.raises(DataError, match="no interaction left"):
        R.read_dataset_spark(spark, str(f), ColumnSpec(weight_col="rating", min_weight=9))


def test_cli_engine_refusals_without_spark(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mfvsdnn.cli import app

    monkeypatch.setattr(S, "spark_session", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no Spark")))
    f = tmp_path / "a.csv"
    f.write_text("user_id,item_id\nu,i\n")
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    for args, why in ((["--engine", "spark", "--w0", "0"], "infinite at w0 = 0"),
                      (["--engine", "spark", "--w0", "1.5"], "0<=x<1"),  # --w0 range, before the engine
                      (["--engine", "spark", "--spark-conf", "nokey"], "KEY=VALUE"),
                      (["--engine", "dask"], "'local' or 'spark'")):
        res = runner.invoke(app, ["train-wals", str(f), "--out", str(tmp_path / "r"), *args])
        assert res.exit_code == 1 and why in res.output, (args, res.output)
        assert not (tmp_path / "r").exists()
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    for data, args, why in ((f, ["--w0", "0"], "infinite at w0 = 0"),
                            (f, ["--wals-param", "w0=1.5"], "w0"),
                            (f, ["--spark-conf", "nokey"], "KEY=VALUE"),
                            (f, ["--spark-reader", "arrow"], "--spark-reader must be one of"),
                            (gz, ["--spark-reader", "pandas"], "local plain CSV"),
                            (gz, ["--test", str(f)], "--test needs a local plain CSV")):
        res = runner.invoke(app, ["compare", str(data), "--engine", "spark", "--report-dir", str(tmp_path / "rep"),
                                  *args])
        assert res.exit_code == 1 and why in res.output, (args, res.output)
        assert "Traceback" not in res.output and not (tmp_path / "rep").exists()
    assert f.read_bytes() == b"user_id,item_id\nu,i\n"




# ---------------------------------------------------------------------------------------------
# scoring in Spark tasks, and compare --engine spark through the runner


def _exclusions(rng: np.random.Generator, q: int, n: int, density: float) -> sp.csr_matrix:
    mask = rng.random((q, n)) < density
    mask[3] = False  # one query excludes nothing
    mask[5] = np.arange(n) < n - 2  # one has 2 eligible items, fewer than k: -1 and -inf fill the rest
    return sp.csr_matrix(mask.astype(np.float32))


@pytest.mark.parametrize("users_per_task", [1, 7, 2048])
def test_spark_topk_equals_the_local_topk_exactly(spark, users_per_task):
    from mfvsdnn.core.topk import top_k_with_scores

    rng = np.random.default_rng(users_per_task)
    q, n, d, k = 30, 40, 5, 8
    # small integers: every product and sum is exact in float32 whatever the summation order, and
    # many scores tie, so the order among ties (lower index first) is checked too
    Q = rng.integers(-2, 3, (q, d)).astype(np.float32)
    V = rng.integers(-2, 3, (n, d)).astype(np.float32)
    ex = _exclusions(rng, q, n, 0.2)
    backend = E.SparkTopK(spark, users_per_task=users_per_task)
    for exclude in (ex, None):
        idx, scores = backend(Q, V, exclude, k)
        want_idx, want_scores = top_k_with_scores(Q, V, exclude, k)
        assert idx.dtype == np.int64 and scores.dtype == np.float32 and idx.shape == (q, k)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(scores, want_scores)
        assert len([r for r in range(q) if len(set(want_scores[r])) < k]) > q // 2  # the data does tie
    idx, scores = backend(Q, V, ex, k)
    assert (idx[5, 2:] == -1).all() and np.isneginf(scores[5, 2:]).all() and (idx[5, :2] >= 0).all()


def test_spark_topk_on_float_data_agrees_to_rounding(spark):
    from mfvsdnn.core.topk import top_k_with_scores

    rng = np.random.default_rng(0)
    Q, V = rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal((30, 8)).astype(np.float32)
    ex = _exclusions(rng, 50, 30, 0.1)
    idx, scores = E.SparkTopK(spark, users_per_task=16)(Q, V, ex, 5)
    want_idx, want_scores = top_k_with_scores(Q, V, ex, 5)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    empty = E.SparkTopK(spark)(Q[:0], V, None, 5)
    assert empty[0].shape == (0, 5)


def test_spark_topk_refuses_bad_arguments(spark):
    with pytest.raises(ValueError, match="users_per_task"):
        E.SparkTopK(spark, users_per_task=0)
    with pytest.raises(ValueError, match="exclude has shape"):
        E.SparkTopK(spark)(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32), sp.csr_matrix((3, 3)), 1)


CMP_FAST = ["--user-features", "country,age_band", "--seed", "5", "--k", "10,20", "--bootstrap", "30",
            "--serving-sample", "5", "--softmax-param", "epochs=2", "--softmax-param", "dim=8", *QUICK_COMPARE]


@pytest.fixture
def cli_uses_the_test_session(monkeypatch, spark):
    """The CLI's Spark session is the module's (starting a second JVM per test would be slow, and
    stopping it at the end of a command would stop the module's)."""
    import contextlib

    @contextlib.contextmanager
    def same_session(master="local[*]", conf=None, app_name="mfvsdnn"):
        yield spark

    monkeypatch.setattr(S, "spark_session", same_session)


def test_compare_on_spark_gives_the_full_report_and_the_local_numbers(cli_uses_the_test_session, trained, data,
                                                                       tmp_path):
    import jsonschema
    from typer.testing import CliRunner

    from mfvsdnn.cli import app
    from mfvsdnn.experiment.results import Results, schema

    runner = CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1"})
    args = ["--wals", str(data / "run")] + CMP_FAST
    before = (data / "g.csv").read_bytes()
    res = runner.invoke(app, ["compare", str(data / "g.csv"), "--engine", "spark", "--report-dir",
                              str(tmp_path / "spark")] + args)
    assert res.exit_code == 0, res.output
    assert "recall@20" in res.output and "folding" in res.output and "Traceback" not in res.output
    local = runner.invoke(app, ["compare", str(data / "g.csv"), "--report-dir", str(tmp_path / "local")] + args)
    assert local.exit_code == 0, local.output
    docs = {}
    for where in ("spark", "local"):
        doc = json.loads((tmp_path / where / "report.json").read_text())
        jsonschema.validate(doc, schema())
        docs[where] = Results.from_dict(doc)
        assert (tmp_path / where / "report.md").stat().st_size and (tmp_path / where / "report.html").stat().st_size
    on_spark, here = docs["spark"], docs["local"]
    assert on_spark.settings.engine == "spark" and here.settings.engine == "local"
    assert on_spark.model_names == ["wals", "softmax", "popularity", "group-popularity", "random"]
    assert not on_spark.model("wals").trained_here and on_spark.model("softmax").trained_here
    assert any("serving latencies" in n and "locally" in n for n in on_spark.notes)
    assert {p.kind for p in on_spark.population_ids()} == {"warm", "cold"}
    assert on_spark.paired and on_spark.verdicts
    for name in on_spark.model_names:  # the same evaluator: every model's recall equals the local run's
        for pid in here.population_ids():
            for k in (10, 20):
                a = on_spark.model(name).population(pid).get("recall", k)
                b = here.model(name).population(pid).get("recall", k)
                assert a.mean == pytest.approx(b.mean, abs=1e-9), (name, pid, k)
        assert on_spark.model(name).warm.get("recall", 20).ci is not None
    assert (data / "g.csv").read_bytes() == before


def test_compare_on_spark_trains_wals_on_spark_and_refuses_another_split(spark, trained, data, tmp_path):
    from mfvsdnn.api import compare
    from mfvsdnn.models.store import load_run

    wals = {"factors": 8, "iterations": 3}
    out = compare(data / "g.csv", FEATS, SplitConfig(seed=5), models=["wals"], baselines=False,
                  params={"wals": wals}, ks=(10,), n_boot=0, serving_sample=0, report_dir=tmp_path / "rep",
                  engine="spark", spark=spark)
    m = out.results.model("wals")
    assert m.trained_here and out.results.settings.engine == "spark"
    run = load_run(m.run_dir)
    assert run.meta["engine"] == "spark" and run.meta["spark"]["als_params"]["rank"] == 8
    assert run.fingerprint == trained.split.fingerprint
    assert any("Spark MLlib implicit ALS" in n for n in out.results.notes)
    assert m.warm.mean("recall", 10) > 0.1 and m.training.iterations == 3
    assert spark.sparkContext._jsc is not None  # a session passed in is left running
    with pytest.raises(MfvsdnnError, match="split fingerprint"):  # a run of another split is refused
        compare(data / "g.csv", FEATS, SplitConfig(seed=6), runs={"wals": data / "run"}, models=["wals"],
                baselines=False, n_boot=0, serving_sample=0, report_dir=tmp_path / "rep2", engine="spark",
                spark=spark)
    assert not (tmp_path / "rep2").exists()
