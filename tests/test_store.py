"""Run directories: round trip, contents, the manifest, and rejection of corrupt, truncated, edited,
inconsistent, old or foreign runs (always a clean exit 1 through the CLI, never a traceback)."""

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
from mfvsdnn.models.store import _manifest_hash, load_run

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    write_csv(SyntheticConfig(users=250, items=70, groups=3, seed=4), d / "s.csv")
    return d


@pytest.fixture(scope="module")
def split(data_dir):
    return api.prepare_split(data_dir / "s.csv", ColumnSpec(user_features=("country",)), SplitConfig(seed=2))


@pytest.fixture(scope="module")
def trained(split, data_dir):
    return api.train_model("wals", split, {"factors": 6, "iterations": 3}, seed=7, out=data_dir / "run")


@pytest.fixture(scope="module")
def trained_softmax(split, data_dir):
    return api.train_model("softmax", split, {"dim": 4, "hidden": [6], "feature_dim": 3, "epochs": 1,
                                              "negatives": 5}, seed=7, out=data_dir / "sm")


def _copy(run_dir, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run_dir, dst)
    return dst


def reseal(run):
    """Recompute the manifest after an edit, as a careful forger would: the checks behind it must hold."""
    man = json.loads((run / "manifest.json").read_text())
    files = {n: {"sha256": file_sha256(run / n), "bytes": (run / n).stat().st_size} for n in man["files"]}
    man["files"], man["entries_sha256"] = files, _manifest_hash(files)
    (run / "manifest.json").write_text(json.dumps(man))


def edit_json(run, edit, seal=False):
    meta = json.loads((run / "model.json").read_text())
    new = edit(meta)
    (run / "model.json").write_text(new if isinstance(new, str) else json.dumps(new))
    if seal:
        reseal(run)


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
    assert meta["format_version"] == 2
    assert meta["params"]["factors"] == 6 and meta["params"]["w0"] == 0.1
    assert meta["split"]["fingerprint"] == trained.split.fingerprint
    assert meta["train_seconds"] > 0
    assert [h["iteration"] for h in meta["history"]] == [1, 2, 3]
    assert all(h["objective"] > 0 for h in meta["history"])
    with np.load(trained.run_dir / "model.npz", allow_pickle=False) as z:
        assert {"user_factors", "item_factors"} <= set(z.files)
        assert z["item_factors"].dtype == np.float32


def test_manifest_covers_every_file_and_itself(trained):
    run = trained.run_dir
    man = json.loads((run / "manifest.json").read_text())
    assert set(man["files"]) == {"model.json", "model.npz", "data.npz"}
    for name, entry in man["files"].items():
        assert entry == {"sha256": file_sha256(run / name), "bytes": (run / name).stat().st_size}
    assert man["entries_sha256"] == _manifest_hash(man["files"])
    marker = json.loads((run / ".mfvsdnn.json").read_text())
    assert marker["what"] == "run" and set(marker["entries"]) == {"model.json", "model.npz", "data.npz",
                                                                   "manifest.json"}


def test_corrupted_model_npz_is_rejected(trained, tmp_path):
    run = _copy(trained.run_dir, tmp_path)
    raw = bytearray((run / "model.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (run / "model.npz").write_bytes(bytes(raw))
    _cli_rejects(run, "model.npz", "corrupt", "does not match the manifest")


def test_truncated_model_npz_with_matching_hash_is_rejected(trained, tmp_path):
    run = _copy(trained.run_dir, tmp_path)
    (run / "model.npz").write_bytes((run / "model.npz").read_bytes()[:200])
    reseal(run)
    _cli_rejects(run, "model.npz", "cannot be read")


def test_foreign_npz_is_rejected(trained, tmp_path):
    run = _copy(trained.run_dir, tmp_path)
    np.savez(run / "model.npz", weights=np.zeros(3))
    reseal(run)
    _cli_rejects(run, "foreign")


@pytest.mark.parametrize("edit", [
    lambda m: {**m, "dataset": {**m["dataset"], "feature_values": {"country": ["XX"] + m["dataset"]["feature_values"]
                                                                   ["country"][1:]}}},
    lambda m: {**m, "dataset": {**m["dataset"], "n_users": 10 ** 12}},
    lambda m: {**m, "seed": None},
    lambda m: {**m, "params": {**m["params"], "factors": 7}},
    lambda m: {**m, "train_seconds": m["train_seconds"] + 1},
], ids=["feature-label", "n_users", "null-seed", "factors", "train-seconds"])
def test_any_hand_edit_of_model_json_is_refused_by_the_manifest(trained, tmp_path, edit):
    run = _copy(trained.run_dir, tmp_path)
    edit_json(run, edit)
    _cli_rejects(run, "edited or corrupt run", "model.json does not match the manifest", "retrain")


@pytest.mark.parametrize("edit, needle", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: {**m, "kind": "forest"}, "kind must be a registered model kind"),
    (lambda m: {**m, "params": {**m["params"], "factors": 99}}, "factors=99"),
    (lambda m: {**m, "params": {**m["params"], "w0": 3}}, "--w0"),
    (lambda m: {**m, "params": {**m["params"], "depth": 3}}, "depth"),
    (lambda m: {k: v for k, v in m.items() if k != "dataset"}, "'dataset'"),
    (lambda m: {**m, "format": "other"}, "not an mfvsdnn run"),
    (lambda m: {**m, "dataset": {**m["dataset"], "n_users": 10 ** 12}}, "user_ids must be 1,000,000,000,000"),
    (lambda m: {**m, "dataset": {**m["dataset"], "n_items": None}}, "n_items must be a positive integer"),
    (lambda m: {**m, "dataset": {**m["dataset"], "n_users": "250"}}, "n_users must be a positive integer"),
    (lambda m: {**m, "seed": None}, "seed must be an integer"),
    (lambda m: {**m, "history": None}, "history must be a list"),
    (lambda m: {**m, "split": {**m["split"], "fingerprint": None}}, "fingerprint must be a non-empty string"),
    (lambda m: {**m, "dataset": {**m["dataset"], "feature_values": {}}}, "unexpected arrays ['feature__country']"),
    (lambda m: {**m, "dataset": {**m["dataset"], "feature_values": {
        "country": m["dataset"]["feature_values"]["country"][:1]}}}, "feature__country must be"),
    (lambda m: {**m, "dataset": {**m["dataset"], "group_names": ["g0"]}}, "item_groups must be"),
], ids=["syntax", "kind", "factors", "w0", "unknown-param", "no-dataset", "format", "huge-n_users",
        "null-n_items", "string-n_users", "null-seed", "null-history", "null-fingerprint", "features-dropped",
        "labels-dropped", "groups-dropped"])
def test_resealed_edits_are_still_validated(trained, tmp_path, edit, needle):
    run = _copy(trained.run_dir, tmp_path)
    edit_json(run, edit, seal=True)
    _cli_rejects(run, needle)


@pytest.mark.parametrize("edit, needle", [
    (lambda m: {**m, "params": {**m["params"], "tie_embeddings": True}}, "tie_embeddings is true"),
    (lambda m: {**m, "params": {**m["params"], "tie_embeddings": False}}, None),  # unchanged: loads
    (lambda m: {**m, "params": {**m["params"], "dim": 8}}, "dim=8"),
    (lambda m: {**m, "params": {**m["params"], "hidden": [7]}}, "hidden=[7]"),
    (lambda m: {**m, "params": {**m["params"], "hidden": []}}, "params do not use"),
    (lambda m: {**m, "params": {**m["params"], "feature_dim": 2}}, "feature_dim=2"),
    (lambda m: {**m, "dataset": {**m["dataset"], "n_items": 71}}, "item_ids must be 71"),
], ids=["tie-flipped", "tie-same", "dim", "hidden-width", "hidden-layers", "feature-dim", "n_items"])
def test_softmax_state_must_match_its_params(trained_softmax, tmp_path, edit, needle):
    run = _copy(trained_softmax.run_dir, tmp_path, "sm")
    edit_json(run, edit, seal=True)
    if needle is None:
        assert load_run(run).model.dim == 4
    else:
        _cli_rejects(run, needle)


def test_manifest_missing_or_edited(trained, tmp_path):
    run = _copy(trained.run_dir, tmp_path)
    man = json.loads((run / "manifest.json").read_text())
    man["files"]["model.npz"]["bytes"] += 1
    (run / "manifest.json").write_text(json.dumps(man))
    _cli_rejects(run, "manifest.json does not match its own hash")
    (run / "manifest.json").unlink()
    _cli_rejects(run, "manifest.json is missing", "retrain")


def test_run_of_the_previous_version_is_refused(trained, tmp_path):
    run = _copy(trained.run_dir, tmp_path)
    (run / "manifest.json").unlink()
    (run / ".mfvsdnn.json").unlink()
    edit_json(run, lambda m: {**m, "format_version": 1,
                              "files": {n: file_sha256(run / n) for n in ("model.npz", "data.npz")}})
    _cli_rejects(run, "written by an older mfvsdnn", "retrain")


def test_not_a_run_directory(tmp_path):
    _cli_rejects(tmp_path, "no model.json")
    _cli_rejects(tmp_path / "missing", "no such run directory")
    (tmp_path / "f").write_text("x")
    _cli_rejects(tmp_path / "f", "not a run directory")


def test_saving_again_replaces_atomically(trained, tmp_path):
    out = tmp_path / "r"
    api.train_model("wals", trained.split, {"factors": 4, "iterations": 1}, seed=1, out=out)
    api.train_model("wals", trained.split, {"factors": 5, "iterations": 1}, seed=1, out=out)
    assert load_run(out).model.factors == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary, old or lock file left
