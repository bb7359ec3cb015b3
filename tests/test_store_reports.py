"""Report sets: compare switches report.json/md/html and the runs it trained into place as one set,
keeps the runs it loaded from inside the report folder (and other mfvsdnn folders there), and sweep
refuses to resume from (or overwrite) a sweep.json it did not write."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import QUICK_COMPARE
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.core import fsutil
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.store import load_run

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
FAST = ["--wals-param", "iterations=1", "--softmax-param", "epochs=1", "--softmax-param", "hidden=[4]",
        "--dim", "4", "--bootstrap", "0", "--serving-sample", "3", "--revealed", "0,1", *QUICK_COMPARE]
SWEEP = ["--w0", "0.1", "--negatives", "", "--sampler", "", "--gravity", "", "--wals-param", "factors=2",
         "--wals-param", "iterations=1", "--bootstrap", "0"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("rep") / "tiny.csv"
    write_csv(SyntheticConfig(users=150, items=50, groups=2, mean_interactions=8, seed=2), p)
    return p


@pytest.fixture
def reports(csv, tmp_path):
    rep = tmp_path / "reports"
    res = invoke("compare", csv, "--report-dir", rep, *FAST)
    assert res.exit_code == 0, res.output
    return rep


def test_compare_writes_one_owned_set(reports):
    marker = json.loads((reports / fsutil.MARKER).read_text())
    assert marker["what"] == "compare"
    assert marker["entries"] == ["report.html", "report.json", "report.md", "runs"]
    assert load_run(reports / "runs" / "wals").kind == "wals"
    assert load_run(reports / "runs" / "softmax").kind == "softmax"
    rep = json.loads((reports / "report.json").read_text())
    models = {m["name"]: m for m in rep["models"]}
    assert models["wals"]["run_dir"] == str(reports / "runs" / "wals")  # the final path, not the staging
    assert sorted(os.listdir(reports.parent)) == ["reports"]


@pytest.mark.parametrize("step", ["staged", "swapped"])
def test_an_interrupted_compare_leaves_the_whole_old_or_new_set(csv, reports, monkeypatch, step):
    before = snapshot(reports)

    def interrupt(s):
        if s == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(fsutil, "_fault", interrupt)
    res = invoke("compare", csv, "--report-dir", reports, "--seed", "7", *FAST)
    assert res.exit_code != 0 and "Traceback" not in res.output  # Ctrl-C: the CLI says "Aborted"
    after = snapshot(reports)
    assert sorted(os.listdir(reports.parent)) == ["reports"]
    new = json.loads((reports / "report.json").read_text())["settings"]["seed"] == 7
    assert new == (step == "swapped")
    if not new:
        assert after == before  # every byte of the old set, runs included
    else:  # the new set: the runs were trained on the new split, like the reports
        fp = json.loads((reports / "report.json").read_text())["split"]["fingerprint"]
        assert load_run(reports / "runs" / "wals").fingerprint == fp == load_run(reports / "runs" / "softmax").fingerprint
        assert "report.html" in after and (reports / "report.md").read_text().count("seed") >= 1


def test_a_run_loaded_from_inside_the_report_dir_survives(csv, reports):
    wals = reports / "runs" / "wals"
    before = snapshot(wals)
    old_softmax = (reports / "runs" / "softmax" / "model.npz").stat().st_ino
    (reports / "sweep").mkdir()
    res = invoke("sweep", csv, "--report-dir", reports / "sweep", *SWEEP)  # another output inside: kept too
    assert res.exit_code == 0, res.output
    sweep_before = snapshot(reports / "sweep")
    res = invoke("compare", csv, "--report-dir", reports, "--wals", wals, *FAST)
    assert res.exit_code == 0, res.output
    assert snapshot(wals) == before and load_run(wals).kind == "wals"
    assert snapshot(reports / "sweep") == sweep_before
    assert (reports / "runs" / "softmax" / "model.npz").stat().st_ino != old_softmax  # trained again
    rep = json.loads((reports / "report.json").read_text())
    models = {m["name"]: m for m in rep["models"]}
    assert models["wals"]["trained_here"] is False and models["wals"]["run_dir"] == str(wals)
    assert sorted(os.listdir(reports.parent)) == ["reports"]


def test_a_run_is_never_trained_over_the_run_compare_loads(csv, tmp_path):
    odd = tmp_path / "runs" / "softmax"  # a WALS run in a folder named softmax
    assert invoke("train-wals", csv, "--out", odd, "--factors", "4", "--iterations", "1").exit_code == 0
    before = snapshot(odd)
    res = invoke("compare", csv, "--report-dir", tmp_path / "rep", "--runs-dir", tmp_path / "runs", "--wals", odd,
                 *FAST)
    assert res.exit_code == 1 and "over the run it loads" in res.output and "Traceback" not in res.output
    assert snapshot(odd) == before and not (tmp_path / "rep").exists()


def test_compare_with_runs_outside_the_report_dir(csv, tmp_path):
    res = invoke("compare", csv, "--report-dir", tmp_path / "rep", "--runs-dir", tmp_path / "models", *FAST)
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(tmp_path / "rep")) == [".mfvsdnn.json", "report.html", "report.json", "report.md"]
    assert load_run(tmp_path / "models" / "wals").kind == "wals"
    assert sorted(os.listdir(tmp_path)) == ["models", "rep"]


def test_sweep_json_that_is_not_a_sweep_is_never_resumed_or_replaced(csv, tmp_path):
    rep = tmp_path / "sw"
    assert invoke("sweep", csv, "--report-dir", rep, *SWEEP).exit_code == 0
    assert json.loads((rep / fsutil.MARKER).read_text())["entries"] == ["sweep.html", "sweep.json", "sweep.md"]
    for junk, why in (("[1, 2, 3]", "holds a JSON list"), ("{not json", "not valid JSON"),
                      ('{"format": "other"}', "has format 'other'"),
                      ('{"format": "mfvsdnn-sweep", "results": 3, "split": {}}', "malformed results")):
        (rep / "sweep.json").write_text(junk)
        before = snapshot(rep)
        res = invoke("sweep", csv, "--report-dir", rep, *SWEEP)
        assert res.exit_code == 1 and why in res.output and "resume refused" in res.output, res.output
        assert "Traceback" not in res.output and snapshot(rep) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "sweep.json").write_text("[]")
    res = invoke("sweep", csv, "--report-dir", foreign, *SWEEP)
    assert res.exit_code == 1 and "not written by mfvsdnn" in res.output


def test_a_sweep_on_another_split_starts_afresh_in_its_own_folder(csv, tmp_path):
    rep = tmp_path / "sw"
    assert invoke("sweep", csv, "--report-dir", rep, *SWEEP).exit_code == 0
    first = json.loads((rep / "sweep.json").read_text())["split"]["fingerprint"]
    assert invoke("sweep", csv, "--report-dir", rep, "--seed", "5", *SWEEP).exit_code == 0
    doc = json.loads((rep / "sweep.json").read_text())
    assert doc["split"]["fingerprint"] != first and doc["complete"] and not doc["points"][0]["resumed"]


def test_a_plain_folder_holding_only_mfvsdnn_folders_becomes_a_report_set(csv, tmp_path):
    rep = tmp_path / "reports"  # make sweep first: reports/ is then a plain folder holding reports/sweep
    assert invoke("sweep", csv, "--report-dir", rep / "sweep", *SWEEP).exit_code == 0
    sweep = snapshot(rep / "sweep")
    res = invoke("train-wals", csv, "--out", rep, "--factors", "2", "--iterations", "1")
    assert res.exit_code == 1 and "holds other mfvsdnn folders (sweep)" in res.output  # not as a run
    res = invoke("compare", csv, "--report-dir", rep, *FAST)
    assert res.exit_code == 0, res.output
    assert snapshot(rep / "sweep") == sweep and (rep / "report.json").exists()
    (rep.parent / "plain").mkdir()
    (rep.parent / "plain" / "empty").mkdir()  # an empty folder of yours is not the tool's either
    res = invoke("compare", csv, "--report-dir", rep.parent / "plain", *FAST)
    assert res.exit_code == 1 and "not written by mfvsdnn (holds empty)" in res.output
