"""train-wals and recommend through the CLI: known users, every user, new users, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.store import load_run

runner = CliRunner(env={"COLUMNS": "150", "NO_COLOR": "1"})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    write_csv(SyntheticConfig(users=300, items=80, groups=3, seed=5), d / "r.csv")
    res = invoke("train-wals", d / "r.csv", "--out", d / "run", "--factors", 8, "--iterations", 4,
                 "--user-features", "country,age_band", "--seed", 3)
    assert res.exit_code == 0, res.output
    return d / "run", res.output


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir[0])


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_train_wals_prints_summary_and_falling_objective(run_dir):
    out = run_dir[1]
    assert "Trained wals" in out and "validation recall@20" in out and "final objective" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("objective "))
    assert "→" in line and "over 4 iterations" in line and "(-" in line  # it fell


def test_train_wals_json_and_bad_option(tmp_path, run_dir):
    data = run_dir[0].parent / "r.csv"
    summary = _json(invoke("train-wals", data, "--out", tmp_path / "j", "--factors", 4, "--iterations", 2,
                           "--solver", "cholesky", "--json"))
    assert summary["kind"] == "wals" and summary["params"]["solver"] == "cholesky"
    assert summary["history"][0]["objective"] > summary["history"][-1]["objective"]
    res = invoke("train-wals", data, "--out", tmp_path / "bad", "--w0", "1.5")
    assert res.exit_code == 1 and "--w0" in res.output and not (tmp_path / "bad").exists()


def test_recommend_user_table_and_json_exclude_known_items(run_dir, run):
    user = str(run.user_ids[np.flatnonzero(np.diff(run.known.indptr) > 0)[0]])
    res = invoke("recommend", run_dir[0], "--user", user, "--k", 7)
    assert res.exit_code == 0, res.output
    assert f"user {user}" in res.output and "item group" in res.output
    out = _json(invoke("recommend", run_dir[0], "--user", user, "--k", 7, "--json"))
    recs = out["recommendations"]
    assert [r["rank"] for r in recs] == list(range(1, 8))
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    u = run.user_index()[user]
    known = {str(run.item_ids[j]) for j in run.known[u].indices}
    assert known and not known & {r["item_id"] for r in recs}
    assert all(r["item_id"] in res.output for r in recs)


def test_recommend_all_writes_every_training_user(run_dir, run, tmp_path):
    out = tmp_path / "recs.csv"
    res = invoke("recommend", run_dir[0], "--all", "--k", 5, "--out", out)
    assert res.exit_code == 0, res.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["user_id", "item_id", "rank", "score"]
    users = np.flatnonzero(np.diff(run.known.indptr) > 0)
    assert len(rows) == 5 * len(users)
    assert {r["user_id"] for r in rows} == {str(run.user_ids[u]) for u in users}
    idx, items = run.user_index(), run.item_index()
    for r in rows[:200]:
        assert run.known[idx[r["user_id"]], items[r["item_id"]]] == 0
    single = _json(invoke("recommend", run_dir[0], "--user", rows[0]["user_id"], "--k", 5, "--json"))
    assert [r["item_id"] for r in single["recommendations"]] == [r["item_id"] for r in rows[:5]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.csv"]  # no temporary file left


def test_recommend_new_user_from_history(run_dir, run):
    hist = [str(run.item_ids[j]) for j in (0, 5, 9)]
    out = _json(invoke("recommend", run_dir[0], "--history", ",".join(hist), "--k", 10, "--json"))
    assert len(out["recommendations"]) == 10
    assert not set(hist) & {r["item_id"] for r in out["recommendations"]}


def test_recommend_new_user_from_features(run_dir, run):
    country = run.feature_values["country"][0]
    out = _json(invoke("recommend", run_dir[0], "--feature", f"country={country}", "--k", 5, "--json"))
    assert len(out["recommendations"]) == 5
    assert any("mean embedding" in n and f"country={country}" in n for n in out["notes"])
    res = invoke("recommend", run_dir[0], "--feature", "country=atlantis", "--k", 5)
    assert res.exit_code == 0 and "not seen in training" in res.output


def test_recommend_held_out_user_uses_features(run_dir, run):
    cold = np.flatnonzero(np.diff(run.known.indptr) == 0)
    assert len(cold)
    out = _json(invoke("recommend", run_dir[0], "--user", str(run.user_ids[cold[0]]), "--json"))
    assert len(out["recommendations"]) == 10 and "cold user" in out["notes"][0]


@pytest.mark.parametrize("args, needles", [
    (["--user", "nobody"], ["'nobody'", "--history"]),
    (["--history", "i00001,zz1,zz2"], ["zz1", "zz2"]),
    (["--feature", "planet=mars"], ["planet", "age_band, country"]),
    (["--feature", "country"], ["NAME=VALUE"]),
    ([], ["exactly one"]),
    (["--user", "u000001", "--all"], ["exactly one"]),
    (["--all"], ["--out"]),
    (["--user", "u000001", "--k", "0"], ["--k"]),
], ids=["unknown-user", "unknown-items", "unknown-feature", "bad-feature", "no-mode", "two-modes", "all-no-out",
        "k0"])
def test_recommend_bad_input_is_a_clear_error(run_dir, args, needles):
    res = invoke("recommend", run_dir[0], *args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in res.output, res.output
