"""Config files (--config), the options compare takes from loaded runs, and the reproduction line."""

from __future__ import annotations

import json
import shlex

import pytest
from helpers import QUICK_COMPARE, cli_fails, runner

from mfvsdnn.cli import app
from mfvsdnn.core.config import ConfigError, OptionSlot, command_values, key_name
from mfvsdnn.data.synthetic import SyntheticConfig, generate
from mfvsdnn.experiment.results import Results

SLOTS = {"info": {"seed": OptionSlot("seed", False), "user-features": OptionSlot("user_features", False)},
         "compare": {"seed": OptionSlot("seed", False), "k": OptionSlot("k", False),
                     "wals-param": OptionSlot("wals_param", True), "json": OptionSlot("json_out", False)}}
#: compare as small as it goes: one seed, no tuning or contrasts, few resamples and timed users
TINY = QUICK_COMPARE + ["--wals-param", "iterations=2", "--softmax-param", "epochs=1", "--dim", "4",
                        "--bootstrap", "20", "--serving-sample", "3"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    df = generate(SyntheticConfig(users=160, items=50, groups=3, cross_rate=0.1, mean_interactions=8, seed=4))
    path = tmp_path_factory.mktemp("config") / "tiny.csv"
    df.to_csv(path, index=False)
    return path


def numbers(report_dir) -> dict:
    """Every metric mean and interval of every model and population (timings left out: they vary)."""
    results = Results.from_dict(json.loads((report_dir / "report.json").read_text()))
    return {(m.name, str(p.population), v.metric, v.k): (v.mean, v.ci)
            for m in results.models for p in m.populations for v in p.values}


def settings_command(report_dir) -> str:
    return json.loads((report_dir / "report.json").read_text())["settings"]["command"]


def info_split(args: list) -> dict:
    res = runner.invoke(app, ["info", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["split"]["config"]


# ---------------------------------------------------------------------------------------------
# reading a config


def test_key_spellings_are_one_key():
    assert key_name("user_features") == key_name("user-features") == key_name("--user-features") == "user-features"


def test_a_command_table_wins_over_the_top_level_and_other_tables_do_not_apply():
    doc = {"seed": 1, "user_features": ["a", "b"], "compare": {"seed": 2, "k": [10, 20]}}
    assert command_values(doc, "info", SLOTS, "x.toml") == {"seed": 1, "user_features": "a,b"}
    assert command_values(doc, "compare", SLOTS, "x.toml") == {"seed": 2, "k": "10,20"}


def test_repeatable_options_take_a_list_or_a_table():
    assert command_values({"compare": {"wals-param": {"iterations": 3, "solver": "cg"}}}, "compare", SLOTS,
                          "x.toml") == {"wals_param": ["iterations=3", 'solver="cg"']}
    assert command_values({"compare": {"wals_param": ["w0=0.1"]}}, "compare", SLOTS, "x.toml") == {
        "wals_param": ["w0=0.1"]}


@pytest.mark.parametrize("doc, words", [
    ({"bogus": 1}, ["unknown key 'bogus' at the top level", "seed", "compare"]),
    ({"info": {"k": "10"}}, ["unknown key 'k' in [info]", "valid keys: seed, user-features"]),
    ({"compare": {"kk": 1}}, ["unknown key 'kk' in [compare]"]),  # checked even when info runs
    ({"info": 3}, ["[info] must be a table"]),
    ({"seed": [1, [2]]}, ["expects a single value"]),
])
def test_unknown_keys_and_bad_shapes_are_named(doc, words):
    with pytest.raises(ConfigError) as err:
        command_values(doc, "info", SLOTS, "x.toml")
    for word in words:
        assert word in str(err.value)


# ---------------------------------------------------------------------------------------------
# the command line


def test_precedence_command_line_then_table_then_top_level_then_default(csv, tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text("seed = 7\ncold-users = 0.3\n[info]\nseed = 8\n")
    assert info_split([csv])["seed"] == 42
    split = info_split([csv, "--config", cfg])
    assert split["seed"] == 8 and split["cold_users"] == 0.3  # table over top level; top level over default
    split = info_split([csv, "--config", cfg, "--seed", "3"])
    assert split["seed"] == 3 and split["cold_users"] == 0.3  # the command line over both
    cfg.write_text("seed = 7\n")
    assert info_split([csv, "--config", cfg])["seed"] == 7


@pytest.mark.parametrize("text, words", [
    ("cold_users = 1.0\n", ["--cold-users", "0<=x<1", "from --config"]),  # the range of the option
    ("[info]\nseed = -1\n", ["--seed", "from --config"]),
    ("[info]\nbootstrap = 10\n", ["unknown key 'bootstrap' in [info]", "valid keys:", "cold-users"]),
    ("seed = \n", ["not valid TOML"]),
])
def test_config_values_meet_the_checks_of_typed_values(csv, tmp_path, text, words):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(text)
    out = cli_fails(["info", csv, "--config", cfg], *words)
    assert out.startswith("error: ") and out.count("\n") == 1


def test_the_reproduction_line_expands_the_config_and_recreates_the_numbers(csv, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"seed = 3\nuser-features = ['country', 'age_band']\n[compare]\nreport-dir = '{first}'\n"
                   "revealed = [0, 2]\nmap-fold-in = false\nwals-param = {iterations = 2}\n")
    res = runner.invoke(app, ["compare", str(csv), "--config", str(cfg), *TINY])
    assert res.exit_code == 0, res.output
    command = settings_command(first)
    assert "--config" not in command
    for part in ("--seed 3", "--user-features country,age_band", "--revealed 0,2", "--no-map-fold-in",
                 f"--report-dir {first}"):
        assert part in command, (part, command)
    cfg.unlink()  # the line must not need the file
    args = shlex.split(command)
    assert args[0] == "mfvsdnn"
    args[args.index("--report-dir") + 1] = str(again)
    res = runner.invoke(app, args[1:])
    assert res.exit_code == 0, res.output
    assert numbers(again) == numbers(first) and numbers(first)


def test_compare_takes_the_data_and_split_options_of_loaded_runs(csv, tmp_path):
    from mfvsdnn.api import prepare_split, train_model
    from mfvsdnn.data import ColumnSpec
    from mfvsdnn.data.split import SplitConfig

    split = prepare_split(csv, ColumnSpec(user_features=("country",)), SplitConfig(seed=5, cold_users=0.2,
                                                                                   revealed=(0, 1)))
    train_model("wals", split, {"iterations": 2, "factors": 4}, 5, tmp_path / "wals")
    train_model("softmax", split, {"epochs": 1, "dim": 4, "min_steps": 0}, 5, tmp_path / "softmax")
    runs = ["--wals", str(tmp_path / "wals"), "--softmax", str(tmp_path / "softmax")]
    res = runner.invoke(app, ["compare", str(csv), "--report-dir", str(tmp_path / "rep"), *runs, *TINY])
    assert res.exit_code == 0, res.output
    assert "using the data and split options of the runs" in res.output
    for part in ("--seed 5", "--cold-users 0.2", "--revealed 0,1", "--user-features country"):
        assert part in res.output and part in settings_command(tmp_path / "rep")
    results = Results.from_dict(json.loads((tmp_path / "rep" / "report.json").read_text()))
    assert not results.model("wals").trained_here
    # an option given that differs from the runs' is refused, naming it
    cli_fails(["compare", csv, "--report-dir", tmp_path / "r2", *runs, *TINY, "--cold-users", "0.1"],
              "fingerprint", "cold_users=0.2 vs 0.1")
    cli_fails(["compare", csv, "--report-dir", tmp_path / "r3", *runs, *TINY, "--user-features", "age_band"],
              "fingerprint", "user_features=['country'] vs ['age_band']")
