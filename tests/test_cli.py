"""CLI basics: every command's --help, info (table and JSON), make-data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
COMMANDS = sorted(c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands)


def test_expected_commands_exist():
    for name in ("info", "make-data"):
        assert name in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_explains_options(command):
    res = runner.invoke(app, [command, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and "--help" in res.output


def test_root_help_and_version():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "info" in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "mfvsdnn" in res.output


def test_make_data_then_info(tmp_path):
    out = tmp_path / "syn.csv"
    res = runner.invoke(app, ["make-data", str(out), "--users", "200", "--items", "60", "--groups", "3",
                              "--cross-rate", "0.1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and out.exists()
    header = out.read_text().splitlines()[0]
    assert header == "user_id,item_id,user_group,item_group,country,age_band"
    res = runner.invoke(app, ["info", str(out), "--json", "--user-features", "country,age_band"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["users"] == 200 and s["items"] <= 60
    assert abs(s["groups"]["natural_cross_group_rate"] - 0.1) < 0.04
    assert s["features"]["country"]["cardinality"] >= 3
    assert s["split"]["warm_users"] + s["split"]["cold_users"] == 200
    res = runner.invoke(app, ["info", str(out)])
    assert res.exit_code == 0 and "natural cross-group rate" in " ".join(res.output.split())


def test_make_data_bad_config_is_clear(tmp_path):
    res = runner.invoke(app, ["make-data", str(tmp_path / "x.csv"), "--cross-rate", "1.5"])
    assert res.exit_code == 1 and "--cross-rate" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.csv").exists()


README = Path(__file__).resolve().parents[1] / "README.md"
WIDE = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_documents_every_option_of_every_command(command):
    text = README.read_text(encoding="utf-8")
    res = WIDE.invoke(app, [command, "--help"])
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", res.output)) - {"--help"}
    assert options
    undocumented = sorted(o for o in options if f"`{o}" not in text and not (o.startswith("--spark-")
                                                                           and "`--spark-*`" in text))
    assert undocumented == []


@pytest.mark.parametrize("command, option, default", [
    ("train-wals", "--factors", "32"), ("train-wals", "--reg", "1.0"), ("train-softmax", "--lr", "0.002"),
    ("train-softmax", "--hard-pool", "500"), ("compare", "--serving-sample", "200"), ("sweep", "--jobs", "1"),
    ("scale", "--users-per-item", "2.0"), ("make-data", "--users", "3000"), ("info", "--seed", "42"),
    ("compare", "--index", "exact"), ("scale", "--index", "exact"), ("compare", "--repeats", "3"),
    ("compare", "--tune", "4"), ("compare", "--growth-repeats", "3"),
])
def test_readme_tables_give_the_same_default_as_help(command, option, default):
    res = WIDE.invoke(app, [command, "--help"])
    row = next(line for line in res.output.splitlines() if f" {option} " in line)
    assert f"[default: {default}]" in row
    rows = [line for line in README.read_text(encoding="utf-8").splitlines()
            if line.startswith(f"| `{option}") and f"| {default} |" in line]
    assert rows, (option, default)
