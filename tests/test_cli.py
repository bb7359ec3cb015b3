"""CLI basics: every command's --help, info (table and JSON), make-data."""

from __future__ import annotations

import json

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
