"""How the CLI reads: usage lines, flags, --quiet, completion, progress bars, the best epoch, tables at
80 and 120 columns (no number cut, no label in an interval line), piped output without trailing spaces,
and recommend saying whether a WALS run uses the features beside a history."""

from __future__ import annotations

import io
import json
import re

import pytest
from helpers import QUICK_COMPARE
from rich.console import Console
from typer.testing import CliRunner

from mfvsdnn import api
from mfvsdnn.cli import app
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.experiment.results import Results
from mfvsdnn.report import terminal

COMMANDS = ["info", "make-data", "train-wals", "train-softmax", "recommend", "compare", "sweep", "scale"]
NARROW = CliRunner(env={"COLUMNS": "80", "NO_COLOR": "1"})
WIDE = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
#: a number as the tables print it: 0.4354, 3.27e-05, 1,234, 12.3 ms, [0.423, 0.449]
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ux")
    write_csv(SyntheticConfig(users=220, items=70, groups=3, cross_rate=0.1, mean_interactions=10, seed=2),
              d / "d.csv")
    return d


@pytest.mark.parametrize("command, argument", [("train-softmax", "DATA"), ("info", "DATA"), ("compare", "DATA"),
                                               ("recommend", "RUN"), ("make-data", "OUT")])
def test_usage_line_names_the_argument_in_capitals(command, argument):
    res = invoke(WIDE, command, "--help")
    usage = next(line for line in res.output.splitlines() if "Usage:" in line)
    assert usage.rstrip().endswith(f"{command} [OPTIONS] {argument}"), usage
    assert "{" not in res.output.split("Arguments")[0]


def test_root_usage_keeps_the_command_placeholder():
    usage = next(line for line in invoke(WIDE, "--help").output.splitlines() if "Usage:" in line)
    assert usage.rstrip().endswith("[OPTIONS] COMMAND [ARGS]...")


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_value_type(command):
    out = invoke(WIDE, command, "--help").output
    assert "<bool>" not in out
    json_row = next((line for line in out.splitlines() if "--json" in line), None)
    if json_row is not None:
        assert re.search(r"--json\s+Print machine-readable JSON", json_row), json_row


@pytest.mark.parametrize("command", ["compare", "recommend", "scale"])
def test_help_keeps_bracketed_extra_names(command):
    # rich reads an unescaped "[ann]" as a style tag and drops it from the help text
    out = " ".join(invoke(CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1"}), command, "--help").output.split())
    assert "mfvsdnn[ann]" in out.replace("│ ", "").replace(" │", "")


def test_flags_still_take_no_value(data):
    res = invoke(WIDE, "info", data / "d.csv", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["users"] > 0


def test_root_has_quiet_and_completion(monkeypatch):
    out = invoke(WIDE, "--help").output
    for option in ("--quiet", "--install-completion", "--show-completion", "--version"):
        assert option in out
    # without a detectable parent shell (a job started in the background) typer makes --show-completion
    # a flag and "bash" a stray argument; its own switch makes the shell an explicit value
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    res = invoke(WIDE, "--show-completion", "bash")
    assert res.exit_code == 0 and "complete" in res.output


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in COMMANDS), ["datasets", "list"]])
def test_piped_output_has_no_trailing_spaces(args):
    res = invoke(NARROW, *args)
    assert res.exit_code == 0, res.output
    bad = [line for line in res.output.splitlines() if line != line.rstrip()]
    assert bad == []


def test_trimmed_stream_drops_only_trailing_spaces():
    sink = io.StringIO()
    stream = terminal.TrimmedStream(sink)
    for chunk in ("a table  ", "\n", "split ", "word\n", "\x1b[1mbold   \x1b[0m\n", "keep  inner  spaces\n", "end  "):
        stream.write(chunk)
    assert sink.getvalue() == "a table\nsplit word\n\x1b[1mbold\x1b[0m\nkeep  inner  spaces\nend"


def test_progress_bar_appears_with_its_first_step_and_its_total():
    sink = io.StringIO()
    console = Console(file=sink, width=80, no_color=True)
    with terminal.progress_bar("nothing ran", console):
        pass
    assert sink.getvalue() == ""  # a refusal before any step prints no "0/?"
    with terminal.progress_bar("epochs", console) as bar:
        bar(3, 12, {"loss": 3.2745e-05, "valid recall@20": 0.4262})
    text = sink.getvalue()
    assert "3/12" in text and "?" not in text
    assert "3.274e-05" in text and "0.4262" in text  # numbers whole at 80 columns


def test_refusal_prints_the_error_alone(data):
    res = invoke(NARROW, "train-wals", data / "d.csv", "--user-features", "no_such_column", "--out",
                 data / "never")
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output


def _summary(best_epoch):
    history = [{"epoch": e, "loss": 3.0 - 0.1 * e, "valid_recall@20": r}
               for e, r in enumerate([0.30, 0.41, 0.4262, 0.42, 0.40], start=1)]
    return {"kind": "softmax", "run_dir": "runs/x", "train_seconds": 1.0, "history": history,
            "best_epoch": best_epoch, "valid_recall@20": 0.4262, "seed": 1,
            "split": {"fingerprint": "abc"}, "params": {"dim": 8}}


def test_best_epoch_line_and_the_summary_report_the_kept_epoch():
    summary = _summary(3)
    assert terminal.best_epoch_line(summary) == "best epoch 3 restored: valid recall 0.4262 (ran 5 epochs)"
    sink = io.StringIO()
    terminal.render_train(summary, Console(file=sink, width=80, no_color=True))
    table = sink.getvalue()
    assert re.search(r"best epoch \(kept\)\s+│\s+3 ", table)
    assert re.search(r"loss at the best epoch\s+│\s+2\.7 ", table)  # epoch 3's loss, not the last (2.5)
    assert "2.5" not in table
    assert terminal.best_epoch_line(_summary(5)) is None  # the last epoch kept: nothing was restored


def test_train_softmax_says_which_epoch_it_restored(data):
    res = invoke(NARROW, "train-softmax", data / "d.csv", "--out", data / "sm", "--epochs", 8, "--patience", 1,
                 "--dim", 8, "--hidden", "16", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    kept = summary["best_epoch"]
    assert 1 <= kept <= len(summary["history"])
    expected = terminal.best_epoch_line(summary)
    if kept < len(summary["history"]):
        assert expected == (f"best epoch {kept} restored: valid recall "
                            f"{summary['history'][kept - 1]['valid_recall@20']:.4f} "
                            f"(ran {len(summary['history'])} epochs)")
        assert expected in " ".join(res.stderr.split())
    else:
        assert expected is None and "restored" not in res.stderr


def test_quiet_shows_no_progress_bar(data):
    loud = invoke(NARROW, "train-wals", data / "d.csv", "--out", data / "w1", "--iterations", 2, "--factors", 4)
    quiet = invoke(NARROW, "--quiet", "train-wals", data / "d.csv", "--out", data / "w2", "--iterations", 2,
                   "--factors", 4)
    assert loud.exit_code == 0 and quiet.exit_code == 0, quiet.output
    assert "2/2" in loud.output and "2/2" not in quiet.output
    assert "Trained wals" in quiet.output  # the results are still printed


@pytest.mark.parametrize("prior, says", [(0.0, "the features are ignored when a history is given"),
                                         (5.0, "MAP fold-in")])
def test_recommend_says_whether_wals_uses_features_with_a_history(data, prior, says):
    columns = ColumnSpec(user_features=("country", "age_band"))
    out = data / f"wals-{prior:g}"
    api.train_from_csv("wals", data / "d.csv", columns, SplitConfig(seed=1), None,
                       {"factors": 4, "iterations": 2, "fold_in_prior": prior}, out)
    items = [line.split(",")[1] for line in (data / "d.csv").read_text().splitlines()[1:3]]
    country = (data / "d.csv").read_text().splitlines()[1].split(",")[4]
    res = invoke(NARROW, "recommend", out, "--history", ",".join(items), "--feature", f"country={country}")
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert f"WALS run with fold_in_prior = {prior:g}" in flat and says in flat
    only_history = invoke(NARROW, "recommend", out, "--history", ",".join(items))
    assert "fold_in_prior" not in only_history.output  # no features given: nothing to say


@pytest.fixture(scope="module")
def compared(data):
    res = invoke(NARROW, "compare", data / "d.csv", "--report-dir", data / "report", "--runs-dir", data / "runs",
                 *QUICK_COMPARE, "--softmax-param", "epochs=3", "--wals-param", "iterations=3")
    assert res.exit_code == 0, res.output
    return res.stdout, Results.from_dict(json.loads((data / "report" / "report.json").read_text()))


def _numbers(text):
    return set(NUMBER.findall(text))


def test_compare_at_80_columns_cuts_no_number_and_wraps_no_label_into_an_interval(compared):
    narrow, results = compared
    sink = io.StringIO()
    terminal.render_compare(results, Console(file=sink, width=200, no_color=True))
    wide = sink.getvalue()
    assert "…" not in narrow
    cut = _numbers(narrow) - _numbers(wide)  # a number cut in two leaves pieces the wide output lacks
    assert cut == set(), cut
    for line in narrow.splitlines():
        if re.search(r"\[-?\d\.\d+, -?\d\.\d+\]", line) and "natural cross-group rate" not in line:
            assert line.lstrip().startswith("["), line  # an interval line holds no piece of a label


def test_compare_tables_are_not_stretched_at_120_columns(compared):
    _, results = compared
    widths = {}
    for width in (120, 160):
        sink = io.StringIO()
        terminal.render_compare(results, Console(file=sink, width=width, no_color=True))
        # a table's width is its rule under the header (paragraphs below the tables fill the line)
        widths[width] = max(len(line.rstrip()) for line in sink.getvalue().splitlines() if "──" in line)
    assert widths[120] == widths[160] < 120  # as wide as the content, not as the terminal


def test_spark_startup_noise_is_dropped_and_errors_kept():
    from mfvsdnn.engines.spark.session import _relay

    jvm_stderr = io.BytesIO(b"WARNING: Using incubator modules: jdk.incubator.vector\n"
                            b'Setting default log level to "WARN".\n'
                            b"To adjust logging level use sc.setLogLevel(newLevel). For SparkR, use setLogLevel(newLevel).\n"
                            b'Setting Spark log level to "ERROR".\n'
                            b"netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed: libblas.so.3: cannot open\n"
                            b"12:00:01 ERROR Executor: Exception in task 0.0\n")
    sink = io.StringIO()
    _relay(jvm_stderr, sink)
    assert sink.getvalue() == "12:00:01 ERROR Executor: Exception in task 0.0\n"
