"""Output folders and files belong to the tool: what --out / --report-dir / make-data / recommend --all
accept, what they refuse (exit 1, one line, no traceback), and that the user's files stay byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.core import fsutil
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.store import load_run

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
TRAIN = ["--factors", "2", "--iterations", "1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (hidden ones included) and folder under ``folder`` -> hash of its bytes ('dir')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(res, *needles):
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit), res.output
    for n in needles:
        assert n in res.output, res.output
    return res.output


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("own") / "small.csv"
    write_csv(SyntheticConfig(users=120, items=40, groups=2, seed=3), p)
    return p


@pytest.fixture
def user_folder(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my notes\n")
    (d / "data.csv").write_text("a,b\n1,2\n")
    (d / "sub").mkdir()
    (d / "sub" / "x.bin").write_bytes(b"\x00\x01")
    (d / ".hidden").write_text("h")
    return d


def test_out_folder_with_user_files_is_refused_and_untouched(csv, user_folder):
    before = snapshot(user_folder)
    out = refused(invoke("train-wals", csv, "--out", user_folder, *TRAIN), "not empty and not written by mfvsdnn",
                  "choose a new or empty folder")
    assert "holds .hidden, data.csv and 2 more" in out
    assert snapshot(user_folder) == before
    assert sorted(p.name for p in user_folder.parent.iterdir()) == ["mine"]  # no lock or staging left


def test_out_the_data_files_own_folder_is_refused(tmp_path):
    data = tmp_path / "d"
    write_csv(SyntheticConfig(users=120, items=40, groups=2, seed=3), data / "small.csv")
    before = snapshot(tmp_path)
    refused(invoke("train-wals", data / "small.csv", "--out", data, *TRAIN), "holds the input file", "small.csv")
    refused(invoke("train-wals", data / "small.csv", "--out", tmp_path, *TRAIN), "holds the input file")
    assert snapshot(tmp_path) == before


def test_out_test_file_folder_is_refused(csv, tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / "held.csv").write_text(csv.read_text().split("\n", 1)[0] + "\n")
    refused(invoke("train-wals", csv, "--test", t / "held.csv", "--out", t, *TRAIN), "holds the input file", "held.csv")


@pytest.mark.parametrize("how", ["dot", "absolute"])
def test_out_the_working_directory_is_refused(csv, user_folder, monkeypatch, how):
    monkeypatch.chdir(user_folder)
    before = snapshot(user_folder)
    refused(invoke("train-wals", csv, "--out", "." if how == "dot" else os.getcwd(), *TRAIN),
            "current working directory")
    refused(invoke("train-wals", csv, "--out", "..", *TRAIN), "current working directory")
    assert snapshot(user_folder) == before


def test_out_an_empty_folder_works_and_an_existing_run_is_replaced(csv, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert invoke("train-wals", csv, "--out", out, *TRAIN).exit_code == 0
    assert load_run(out).model.factors == 2
    res = invoke("train-wals", csv, "--out", out, "--factors", "3", "--iterations", "1")
    assert res.exit_code == 0, res.output
    assert load_run(out).model.factors == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_out_a_file_or_under_a_file_is_refused(csv, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("keep me")
    refused(invoke("train-wals", csv, "--out", f, *TRAIN), "exists and is a file")
    refused(invoke("train-wals", csv, "--out", f / "run", *TRAIN), "is a file, not a folder")
    refused(invoke("train-wals", csv, "--out", csv, *TRAIN), "exists and is a file")
    assert f.read_text() == "keep me"


def test_out_a_symlink_is_refused(csv, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    refused(invoke("train-wals", csv, "--out", tmp_path / "link", *TRAIN), "symbolic link")
    assert not any((tmp_path / "real").iterdir())


def test_a_run_of_the_previous_version_may_be_replaced(csv, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "model.json").write_text(json.dumps({"format": "mfvsdnn-run", "format_version": 1}))
    (out / "model.npz").write_bytes(b"x")
    (out / "data.npz").write_bytes(b"y")
    assert invoke("train-wals", csv, "--out", out, *TRAIN).exit_code == 0
    assert load_run(out).model.factors == 2
    (out / "notes.txt").write_text("mine")  # the tool's folder, but with a user file in it now
    refused(invoke("train-wals", csv, "--out", out, *TRAIN), "also holds files it did not write", "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_report_dir_a_file_foreign_or_a_run_is_refused_before_any_work(csv, tmp_path, user_folder, monkeypatch):
    from mfvsdnn import api

    def no_work(*a, **k):
        raise AssertionError("the data was read before the output was checked")

    (tmp_path / "run").mkdir()
    assert invoke("train-wals", csv, "--out", tmp_path / "run", *TRAIN).exit_code == 0
    monkeypatch.setattr(api, "prepare_split", no_work)
    f = tmp_path / "r.txt"
    f.write_text("keep")
    before = snapshot(tmp_path)
    refused(invoke("compare", csv, "--report-dir", f), "exists and is a file")
    refused(invoke("compare", csv, "--report-dir", user_folder), "not empty and not written by mfvsdnn")
    refused(invoke("compare", csv, "--report-dir", tmp_path / "run"), "is a run folder", "not a compare report")
    refused(invoke("sweep", csv, "--report-dir", tmp_path / "run"), "is a run folder", "not a sweep report")
    refused(invoke("scale", "--report-dir", user_folder), "not empty and not written by mfvsdnn")
    user_folder.rename(tmp_path / "wals")  # where --runs-dir TMP would save the WALS run
    refused(invoke("compare", csv, "--report-dir", tmp_path / "r2", "--runs-dir", tmp_path),
            "wals: not empty and not written by mfvsdnn")
    (tmp_path / "wals").rename(user_folder)
    assert snapshot(tmp_path) == before


def test_a_report_folder_is_not_a_run_folder(csv, tmp_path):
    rep = tmp_path / "reports"
    rep.mkdir()
    (rep / fsutil.MARKER).write_text(json.dumps({"format": "mfvsdnn-output", "what": "compare",
                                                 "entries": ["report.json"]}))
    (rep / "report.json").write_text("{}")
    before = snapshot(rep)
    refused(invoke("train-wals", csv, "--out", rep, *TRAIN), "is a compare report folder", "not a run folder")
    (rep / "extra.txt").write_text("mine")
    refused(invoke("compare", csv, "--report-dir", rep), "also holds files it did not write", "extra.txt")
    assert snapshot(rep) == {**before, "extra.txt": snapshot(rep)["extra.txt"]}


def test_make_data_replaces_only_its_own_files(tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("id,value\n1,2\n")
    res = invoke("make-data", mine, "--users", 60, "--items", 20, "--groups", 2)
    refused(res, "exists and was not written by mfvsdnn", "--overwrite")
    assert mine.read_text() == "id,value\n1,2\n"
    ours = tmp_path / "ours.csv"
    assert invoke("make-data", ours, "--users", 60, "--items", 20, "--groups", 2).exit_code == 0
    assert invoke("make-data", ours, "--users", 70, "--items", 20, "--groups", 2).exit_code == 0  # its own: replaced
    assert invoke("make-data", mine, "--users", 60, "--items", 20, "--groups", 2, "--overwrite").exit_code == 0
    assert mine.read_text().startswith("user_id,item_id,")
    refused(invoke("make-data", tmp_path, "--users", 60), "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv", "ours.csv"]


def test_recommend_all_replaces_only_its_own_files(csv, tmp_path):
    run = tmp_path / "run"
    assert invoke("train-wals", csv, "--out", run, *TRAIN).exit_code == 0
    mine = tmp_path / "mine.csv"
    mine.write_text("do not lose\n")
    refused(invoke("recommend", run, "--all", "--out", mine), "not written by mfvsdnn", "--overwrite")
    assert mine.read_text() == "do not lose\n"
    refused(invoke("recommend", run, "--all", "--out", run / "recs.csv"), "run folder", "write the file elsewhere")
    recs = tmp_path / "recs.csv"
    assert invoke("recommend", run, "--all", "--out", recs).exit_code == 0
    assert invoke("recommend", run, "--all", "--out", recs, "--k", 3).exit_code == 0  # its own: replaced
    assert recs.read_text().startswith("user_id,item_id,rank,score\n")
    assert invoke("recommend", run, "--all", "--out", mine, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv", "recs.csv", "run"]
    assert sorted(p.name for p in run.iterdir()) == sorted([".mfvsdnn.json", "data.npz", "manifest.json",
                                                            "model.json", "model.npz"])
