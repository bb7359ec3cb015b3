"""Run directories: round trip, contents, and rejection of corrupt, truncated, edited or foreign files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mfvsdnn import api
from mfvsdnn.cli import app
from mfvsdnn.core.topk import top_k_with_scores
from mfvsdnn.data import ColumnSpec, file_sha256
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.store import load_run

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    write_csv(SyntheticConfig(users=250, items=70, groups=3, seed=4), d / "s.csv")
    split = api.prepare_split(d / "s.csv", ColumnSpec(user_features=("country",)), SplitConfig(seed=2))
    res = api.train_model("wals", split, {"factors": 6, "iterations": 3}, seed=7, out=d / "run")
    return res


def _copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained.run_dir, dst)
    return dst


def _cli_rejects(run_dir, *needles):
    res = runner.invoke(app, ["recommend", str(run_dir), "--user", "u000001"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)  # a clean exit, not an uncaught error
    for n in needles:
        assert n in res.output, res.output
    return res.output


def test_round_trip_gives_identical_recommendations(trained):
    run = load_run(trained.run_dir)
    model, split = trained.model, trained.split
    for k, v in model.state().items():
        np.testing.assert_array_equal(run.model.state()[k], v, err_msg=k)
    users = split.warm_users
    known = split.known()[users]
    feats = {f: c[users] for f, c in split.dataset.features.items()}
    a = top_k_with_scores(model.query_vectors(known, feats, users=users), model.item_vectors, known, 10)
    b = top_k_with_scores(run.model.query_vectors(run.known[users], {f: c[users] for f, c in run.features.items()},
                                                  users=users), run.model.item_vectors, run.known[users], 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(run.user_ids, split.dataset.user_ids)
    assert (run.known != split.known()).nnz == 0


def test_model_json_records_what_the_issue_lists(trained):
    meta = json.loads((trained.run_dir / "model.json").read_text())
    assert meta["kind"] == "wals" and meta["seed"] == 7 and meta["package_version"]
    assert meta["params"]["factors"] == 6 and meta["params"]["w0"] == 0.1
    assert meta["split"]["fingerprint"] == trained.split.fingerprint
    assert meta["train_seconds"] > 0
    assert [h["iteration"] for h in meta["history"]] == [1, 2, 3]
    assert all(h["objective"] > 0 for h in meta["history"])
    with np.load(trained.run_dir / "model.npz", allow_pickle=False) as z:
        assert {"user_factors", "item_factors"} <= set(z.files)
        assert z["item_factors"].dtype == np.float32


def test_corrupted_model_npz_is_rejected(trained, tmp_path):
    run = _copy(trained, tmp_path)
    raw = bytearray((run / "model.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (run / "model.npz").write_bytes(bytes(raw))
    _cli_rejects(run, "model.npz", "corrupt")


def test_truncated_model_npz_with_matching_hash_is_rejected(trained, tmp_path):
    run = _copy(trained, tmp_path)
    (run / "model.npz").write_bytes((run / "model.npz").read_bytes()[:200])
    meta = json.loads((run / "model.json").read_text())
    meta["files"]["model.npz"] = file_sha256(run / "model.npz")
    (run / "model.json").write_text(json.dumps(meta))
    _cli_rejects(run, "model.npz", "cannot be read")


def test_foreign_npz_is_rejected(trained, tmp_path):
    run = _copy(trained, tmp_path)
    np.savez(run / "model.npz", weights=np.zeros(3))
    meta = json.loads((run / "model.json").read_text())
    meta["files"]["model.npz"] = file_sha256(run / "model.npz")
    (run / "model.json").write_text(json.dumps(meta))
    _cli_rejects(run, "foreign")


@pytest.mark.parametrize("edit, needle", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: {**m, "kind": "forest"}, "forest"),
    (lambda m: {**m, "params": {**m["params"], "factors": 99}}, "factors=99"),
    (lambda m: {**m, "params": {**m["params"], "w0": 3}}, "--w0"),
    (lambda m: {**m, "params": {**m["params"], "depth": 3}}, "depth"),
    (lambda m: {k: v for k, v in m.items() if k != "files"}, "files"),
    (lambda m: {**m, "format": "other"}, "not an mfvsdnn run"),
], ids=["syntax", "kind", "factors", "w0", "unknown-param", "no-files", "format"])
def test_edited_model_json_is_rejected(trained, tmp_path, edit, needle):
    run = _copy(trained, tmp_path)
    meta = json.loads((run / "model.json").read_text())
    new = edit(meta)
    (run / "model.json").write_text(new if isinstance(new, str) else json.dumps(new))
    _cli_rejects(run, needle)


def test_not_a_run_directory(tmp_path):
    _cli_rejects(tmp_path, "no model.json")
    _cli_rejects(tmp_path / "missing", "no such run directory")


def test_saving_again_replaces_atomically(trained, tmp_path):
    out = tmp_path / "r"
    api.train_model("wals", trained.split, {"factors": 4, "iterations": 1}, seed=1, out=out)
    api.train_model("wals", trained.split, {"factors": 5, "iterations": 1}, seed=1, out=out)
    assert load_run(out).model.factors == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary or old directories left
