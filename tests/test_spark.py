"""WALS on Spark: the parameter mapping and its refusals (no Spark), then one local Spark session that
trains a run, checks it against the local WALS and against Spark's own row equations, reads CSV,
.csv.gz and Parquet into the local loader's Dataset, and serves the run through recommend."""

from __future__ import annotations

import gzip
import shutil
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core.errors import MfvsdnnError, ModelError
from mfvsdnn.data import ColumnSpec, read_interactions
from mfvsdnn.data.split import SplitConfig, make_split
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.engines.spark import engine as S

# ---------------------------------------------------------------------------------------------
# the mapping, without Spark


@pytest.mark.parametrize("w0, alpha", [(0.1, 9.0), (0.5, 1.0), (1.0, 0.0), (0.01, 99.0)])
def test_alpha_gives_confidence_one_over_w0(w0, alpha):
    assert S.spark_alpha(w0) == pytest.approx(alpha)
    assert 1.0 + S.spark_alpha(w0) == pytest.approx(1.0 / w0)  # observed weight relative to unobserved


@pytest.mark.parametrize("w0, why", [(0.0, "infinite"), (-0.2, "infinite"), (1.5, "negative"),
                                     (float("nan"), "infinite")])
def test_w0_outside_spark_is_refused_with_the_reason(w0, why):
    with pytest.raises(ModelError, match=why) as e:
        S.spark_alpha(w0)
    assert "--w0" in str(e.value) and "spark" in str(e.value).lower()


def _toy_train() -> sp.csr_matrix:
    # 4 users x 5 items; user 3 and item 4 have no positives
    rows = [0, 0, 0, 1, 1, 2]
    cols = [0, 1, 2, 0, 3, 1]
    return sp.csr_matrix((np.ones(6, np.float32), (rows, cols)), shape=(4, 5))


def test_reg_param_known_answer_and_mean_effective_reg_equals_reg():
    m = _toy_train()
    # 3 users and 4 items with positives, nnz = 6: regParam = reg * 7 / (2 * w0 * 6)
    rp = S.spark_reg_param(2.0, 0.25, 3, 4, 6)
    assert rp == pytest.approx(2.0 * 7 / (2 * 0.25 * 6))
    nu = np.diff(m.indptr)
    ni = np.bincount(m.indices, minlength=5)
    counts = np.concatenate([nu[nu > 0], ni[ni > 0]])
    assert S.effective_reg(rp, 0.25, counts).mean() == pytest.approx(2.0)


def test_als_params_and_lambda_relation():
    m = _toy_train()
    p = S.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 11, m)
    assert p == {"implicitPrefs": True, "alpha": pytest.approx(4.0), "rank": 8, "maxIter": 7,
                 "regParam": pytest.approx(1.0 * 7 / (2 * 0.2 * 6)), "seed": 11, "nonnegative": False}
    assert S.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 11, m, 0.3)["regParam"] == 0.3
    rel = S.lambda_relation({"w0": 0.2, "reg": 1.0}, p, m, False)
    assert rel["exact"] is False
    # user 0 has 3 positives, users 1, 2 have 2 and 1: effective reg 0.2 * regParam * n
    assert rel["effective_reg_users"]["max"] == pytest.approx(0.2 * p["regParam"] * 3)
    assert rel["effective_reg_users"]["min"] == pytest.approx(0.2 * p["regParam"] * 1)
    with pytest.raises(ModelError, match="no interactions"):
        S.als_params({"factors": 8, "w0": 0.2, "reg": 1.0, "iterations": 7}, 1, sp.csr_matrix((3, 3)))


def test_reader_choice(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("user_id,item_id\nu,i\n")
    assert S.choose_reader(f) == "pandas"
    assert S.choose_reader(f, "spark") == "spark"
    assert S.choose_reader("hdfs://nn:8020/logs/a.csv") == "spark"
    assert S.choose_reader(tmp_path / "x.parquet") == "spark"
    assert S.choose_reader(tmp_path) == "spark"  # a directory (e.g. of Parquet parts)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert S.choose_reader(gz) == "spark"
    assert S.choose_reader(f, test_path=f) == "pandas"
    with pytest.raises(MfvsdnnError, match="--test"):
        S.choose_reader("s3a://bucket/a.csv", test_path=f)
    with pytest.raises(MfvsdnnError, match="--spark-reader"):
        S.choose_reader(f, "arrow")
    with pytest.raises(MfvsdnnError, match="local plain CSV"):
        S.choose_reader(gz, "pandas")


def test_conf_and_uri_helpers(tmp_path):
    assert S.parse_conf(["spark.executor.memory=8g", "a.b = x=y"]) == {"spark.executor.memory": "8g", "a.b": "x=y"}
    with pytest.raises(MfvsdnnError, match="KEY=VALUE"):
        S.parse_conf(["spark.executor.memory"])
    from pathlib import Path

    assert S.restore_uri(Path("hdfs://nn:8020/x/a.csv"), ["train-wals", "hdfs://nn:8020/x/a.csv"]) == \
        "hdfs://nn:8020/x/a.csv"
    assert S.restore_uri(tmp_path / "a.csv", []) == str(tmp_path / "a.csv")
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


def test_w0_refused_before_spark_starts(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("Spark must not start for a refused w0")

    monkeypatch.setattr(S, "spark_session", boom)
    f = tmp_path / "a.csv"
    f.write_text("user_id,item_id\nu,i\n")
    for w0, why in ((0.0, "infinite"), (1.0, r"\[0, 1\)")):  # w0 = 1: our WALS itself needs w0 < 1
        with pytest.raises(ModelError, match=why):
            S.train_wals_spark(f, ColumnSpec(), SplitConfig(), None, {"w0": w0}, tmp_path / "run")


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
    res = S.train_wals_spark(data / "g.csv", FEATS, SplitConfig(seed=5), None, PARAMS, data / "run", spark=spark)
    return res


def test_spark_run_loads_in_the_local_format(trained, data):
    from mfvsdnn.models.store import load_run

    run = load_run(data / "run")
    assert run.kind == "wals" and run.meta["engine"] == "spark"
    sm = run.meta["spark"]
    assert sm["reader"] == "pandas" and sm["master"].startswith("local")
    assert sm["als_params"]["alpha"] == pytest.approx(9.0) and sm["als_params"]["rank"] == 16
    assert sm["als_params"]["maxIter"] == 8 and sm["lambda_relation"]["exact"] is False
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
    R = trained.split.train
    w0 = PARAMS["w0"]
    rp = trained.summary["spark"]["als_params"]["regParam"]
    G = V.T @ V
    checked = 0
    for u in np.flatnonzero(np.diff(R.indptr) > 0)[:60]:
        Vo = V[R.indices[R.indptr[u]:R.indptr[u + 1]]]
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
    ds = S.read_dataset_spark(spark, str(src), FEATS)
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
        o = S.read_dataset_spark(spark, str(other), FEATS)
        assert list(o.user_ids) == list(local.user_ids) and (o.matrix != local.matrix).nnz == 0, other
        np.testing.assert_array_equal(o.features["country"], local.features["country"])


def test_spark_reader_bad_input(spark, tmp_path):
    from mfvsdnn.core.errors import DataError

    with pytest.raises(DataError, match="no such file"):
        S.read_dataset_spark(spark, str(tmp_path / "nope.csv"))
    f = tmp_path / "w.csv"
    f.write_text("user_id,item_id,rating\nu1,i1,5\nu2,i2,oops\n")
    with pytest.raises(DataError, match="'rating'.*not a number: 'oops'"):
        S.read_dataset_spark(spark, str(f), ColumnSpec(weight_col="rating"))
    f.write_text("who,what\nu1,i1\n")
    with pytest.raises(DataError, match="no user column"):
        S.read_dataset_spark(spark, str(f))
    f.write_text("user_id,item_id,rating\nu1,i1,1\nu2,i2,2\n")
    spec = ColumnSpec(weight_col="rating", min_weight=2)
    ds, local = S.read_dataset_spark(spark, str(f), spec), read_interactions(f, spec)
    assert list(ds.user_ids) == list(local.user_ids) == ["u1", "u2"]  # ids from every row, as locally
    assert ds.nnz == local.nnz == 1 and (ds.matrix != local.matrix).nnz == 0
    with pytest.raises(DataError, match="no interaction left"):
        S.read_dataset_spark(spark, str(f), ColumnSpec(weight_col="rating", min_weight=9))


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


def test_compare_spark_equals_the_local_evaluator(spark, trained, data, tmp_path):
    from mfvsdnn.evaluation.evaluator import evaluate_model

    report, paths = S.compare_spark(data / "g.csv", FEATS, SplitConfig(seed=5), None, runs={"wals": data / "run"},
                                    ks=(10, 20), report_dir=tmp_path / "rep", spark=spark)
    warm = report["models"]["wals"]["warm"]
    local = evaluate_model(trained.model, trained.split, (10, 20))["warm"]
    assert warm["users"] == len(local.users) and "softmax" not in report["models"]
    for name in ("recall@10", "recall@20", "ndcg@20", "leakage@20", "natural_cross_rate"):
        assert warm["means"][name] == pytest.approx(float(np.nanmean(local.per_user[name])), abs=1e-9), name
    assert paths["json"].exists() and "recall@20" in paths["md"].read_text()
    with pytest.raises(MfvsdnnError, match="split fingerprint"):  # a run of another split is refused
        S.compare_spark(data / "g.csv", FEATS, SplitConfig(seed=6), None, runs={"wals": data / "run"},
                        report_dir=tmp_path / "rep2", spark=spark)
