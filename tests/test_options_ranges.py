"""Every option of every command with an out-of-range value: exit 1, one line naming the option, no
traceback, and nothing read or written (the DATA file / run directory given does not exist, and the
loaders fail the test if they are called)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
WIDE = CliRunner(env={"COLUMNS": "300", "NO_COLOR": "1"})

MISSING = "no-such-dir/never.csv"  # reading it would fail with a different message
RUN = "no-such-dir/run"

DATA_CASES = [  # the shared data and split options (same code in info, train-*, compare, sweep)
    (["--seed", "-1"], "--seed"),
    (["--seed", "4294967296"], "--seed"),
    (["--seed", "1.5"], "--seed"),
    (["--cold-users", "1"], "--cold-users"),
    (["--cold-users", "-0.1"], "--cold-users"),
    (["--cold-users", "nan"], "--cold-users"),
    (["--test-frac", "1"], "--test-frac"),
    (["--test-frac", "inf"], "--test-frac"),
    (["--valid-frac", "1.5"], "--valid-frac"),
    (["--test-frac", "0.6", "--valid-frac", "0.5"], "test-frac + valid-frac < 1"),
    (["--min-weight", "nan"], "--min-weight"),
    (["--min-weight", "-inf"], "--min-weight"),
    (["--sep", "ab"], "--sep"),
    (["--split", "sideways"], "--split"),
    (["--revealed", "1,-1"], "--revealed"),
    (["--revealed", "one"], "--revealed"),
]

CASES = (
    [("info", [MISSING, *a], k) for a, k in DATA_CASES]
    + [(cmd, [MISSING, *a], k) for cmd in ("train-wals", "train-softmax", "compare", "sweep")
       for a, k in DATA_CASES[:4]]
    + [("make-data", ["{out}", *a], k) for a, k in [
        (["--users", "0"], "--users"),
        (["--users", "100000001"], "--users"),
        (["--items", "2"], "--items"),
        (["--items", "100000001"], "--items"),
        (["--groups", "0"], "--groups"),
        (["--items", "3", "--groups", "4"], "items must be >= groups"),
        (["--cross-rate", "1.5"], "--cross-rate"),
        (["--cross-rate", "nan"], "--cross-rate"),
        (["--mean-interactions", "2"], "--mean-interactions"),
        (["--mean-interactions", "inf"], "--mean-interactions"),
        (["--taste-dim", "0"], "--taste-dim"),
        (["--taste-dim", "1025"], "--taste-dim"),
        (["--zipf", "-1"], "--zipf"),
        (["--zipf", "11"], "--zipf"),
        (["--seed", "-1"], "--seed"),
        (["--users", "100000000", "--mean-interactions", "1000"], "not enough memory for make-data"),
    ]]
    + [("train-wals", [MISSING, "--out", "{out}", *a], k) for a, k in [
        (["--factors", "0"], "--factors"),
        (["--factors", "100000000"], "--factors"),
        (["--w0", "1"], "--w0"),
        (["--w0", "-0.1"], "--w0"),
        (["--w0", "nan"], "--w0"),
        (["--reg", "0"], "--reg"),
        (["--reg", "inf"], "--reg"),
        (["--reg", "nan"], "--reg"),
        (["--reg", "1e7"], "--reg"),
        (["--iterations", "0"], "--iterations"),
        (["--iterations", "10001"], "--iterations"),
        (["--solver", "lu"], "--solver"),
        (["--cg-steps", "0"], "--cg-steps"),
        (["--threads", "-1"], "--threads"),
        (["--min-support", "0"], "--min-support"),
        (["--fold-in-prior", "-1"], "--fold-in-prior"),
        (["--fold-in-prior", "inf"], "--fold-in-prior"),
        (["--engine", "mars"], "--engine"),
        (["--spark-reg-param", "-1"], "--spark-reg-param"),
        (["--spark-reg-param", "nan"], "--spark-reg-param"),
    ]]
    + [("train-softmax", [MISSING, "--out", "{out}", *a], k) for a, k in [
        (["--negatives", "lots"], "--negatives"),
        (["--negatives", "-1"], "--negatives"),
        (["--negatives", "1000001"], "--negatives"),
        (["--sampler", "best"], "--sampler"),
        (["--hard-pool", "0"], "--hard-pool"),
        (["--hard-pool", "10000001"], "--hard-pool"),
        (["--sampler", "hard", "--hard-pool", "3", "--negatives", "50"], "--hard-pool (3) must be >= --negatives"),
        (["--gravity", "-1"], "--gravity"),
        (["--gravity", "inf"], "--gravity"),
        (["--dim", "0"], "--dim"),
        (["--dim", "4097"], "--dim"),
        (["--hidden", "a"], "--hidden"),
        (["--hidden", "0"], "--hidden"),
        (["--hidden", "100000000"], "--hidden"),
        (["--hidden", ",".join(["8"] * 33)], "--hidden"),
        (["--feature-dim", "0"], "--feature-dim"),
        (["--feature-dim", "100000000"], "--feature-dim"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "1000001"], "--batch-size"),
        (["--lr", "0"], "--lr"),
        (["--lr", "1e30"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--optimizer", "sgd"], "--optimizer"),
        (["--l2", "-1"], "--l2"),
        (["--l2", "inf"], "--l2"),
        (["--patience", "-1"], "--patience"),
        (["--history-dropout", "1"], "--history-dropout"),
        (["--history-dropout", "-0.5"], "--history-dropout"),
        (["--mix-sampler", "hard"], "--mix-sampler"),
        (["--item-buckets", "-1"], "--item-buckets"),
        (["--item-buckets", "100000001"], "--item-buckets"),
        (["--item-hashes", "0"], "--item-hashes"),
        (["--item-hashes", "5"], "--item-hashes"),
        (["--hash-output"], "--hash-output needs --item-buckets"),
        (["--item-buckets", "10", "--tie-embeddings"], "--tie-embeddings"),
        (["--feature-buckets", "-1"], "--feature-buckets"),
    ]]
    + [(cmd, [*first, "--config", "no-such-dir/exp.toml"], "--config") for cmd, first in [
        ("info", [MISSING]), ("make-data", ["{out}"]), ("train-wals", [MISSING]), ("train-softmax", [MISSING]),
        ("recommend", [RUN]), ("compare", [MISSING]), ("sweep", [MISSING]), ("scale", [])]]
    + [("recommend", [RUN, *a], k) for a, k in [
        (["--user", "u1", "--k", "0"], "--k"),
        (["--user", "u1", "--k", "100001"], "--k"),
        (["--user", "u1", "--index", "annoy"], "--index"),
    ]]
    + [("compare", [MISSING, "--report-dir", "{out}", *a], k) for a, k in [
        (["--k", "0,5"], "--k"),
        (["--k", "10,x"], "--k"),
        (["--k", "100001"], "--k"),
        (["--bootstrap", "-1"], "--bootstrap"),
        (["--serving-sample", "-1"], "--serving-sample"),
        (["--serving-sample", "0"], "--serving-sample"),
        (["--repeats", "0"], "--repeats"),
        (["--repeats", "21"], "--repeats"),
        (["--tune", "0"], "--tune"),
        (["--tune", "201"], "--tune"),
        (["--growth-repeats", "-1"], "--growth-repeats"),
        (["--growth-repeats", "11"], "--growth-repeats"),
        (["--per-user", "out/x.csv"], "--per-user"),
        (["--per-user", "x.json"], "--per-user"),
        (["--index", "annoy"], "--index"),
        (["--ef-search", "0"], "--ef-search"),
        (["--ef-search", "a"], "--ef-search"),
        (["--nprobe", "100001"], "--nprobe"),
        (["--dim", "0"], "--dim"),
        (["--dim", "5000"], "--dim"),
        (["--w0", "1"], "--w0"),
        (["--w0", "inf"], "--w0"),
        (["--negatives", "lots"], "--negatives"),
        (["--wals-param", "nosuch=1"], "valid keys: factors, w0, reg"),
        (["--wals-param", "factors=0"], "--factors"),
        (["--wals-param", "factors=3.5"], "--factors"),
        (["--wals-param", "noequals"], "KEY=VALUE"),
        (["--softmax-param", "epoch=1"], "did you mean 'epochs'"),
        (["--softmax-param", "hidden=x"], "--hidden"),
        (["--softmax-param", "tie_embeddings=2"], "tie_embeddings"),
        (["--engine", "mars"], "--engine"),
        (["--candidates", "0"], "--candidates"),
        (["--candidates", "100001"], "--candidates"),
        (["--candidates", "10,x"], "--candidates"),
        (["--pipeline", "wals"], "RETRIEVER>SCORER"),
        (["--pipeline", "wals>nope"], "unknown model kind 'nope'"),
        (["--retriever-param", "factors=4"], "pass --pipeline"),
        (["--pipeline", "wals>softmax", "--scorer-param", "negativs=0"], "did you mean 'negatives'"),
        (["--pipeline", "wals>softmax", "--retriever-param", "factors=0"], "--factors"),
    ]]
    + [("sweep", [MISSING, "--report-dir", "{out}", *a], k) for a, k in [
        (["--w0", "1.5"], "--w0"),
        (["--w0", "nan"], "--w0"),
        (["--w0", "x"], "--w0"),
        (["--negatives", "lots"], "--negatives"),
        (["--sampler", "best"], "--sampler"),
        (["--gravity", "-1"], "--gravity"),
        (["--gravity", "inf"], "--gravity"),
        (["--sampler-negatives", "0"], "--sampler-negatives"),
        (["--item-buckets", "-5"], "--item-buckets"),
        (["--item-buckets", "x"], "--item-buckets"),
        (["--softmax-param", "item_buckets=5", "--item-buckets", "0,10"], "item_buckets is swept"),
        (["--softmax-param", "hash_output=true", "--item-buckets", "0,10", "--hash-output"], "hash_output is swept"),
        (["--gravity-negatives", "-1"], "--negatives"),
        (["--wals-param", "nosuch=1"], "valid keys"),
        (["--wals-param", "w0=0.3"], "w0 is swept"),
        (["--softmax-param", "sampler=hard"], "sampler is swept"),
        (["--softmax-param", "epochs=0"], "--epochs"),
        (["--k", "0"], "--k"),
        (["--bootstrap", "-1"], "--bootstrap"),
        (["--jobs", "-3"], "--jobs"),
        (["--jobs", "0"], "--jobs"),
        (["--jobs", "1000"], "--jobs"),
        (["--w0", "", "--negatives", "", "--sampler", "", "--gravity", ""], "nothing to sweep"),
    ]]
    + [("scale", ["--report-dir", "{out}", *a], k) for a, k in [
        (["--sizes", "1000"], "--sizes"),
        (["--sizes", "50,1000"], "--sizes"),
        (["--sizes", "1000,20000000"], "--sizes"),
        (["--sizes", "a,b"], "--sizes"),
        (["--users-per-item", "0"], "--users-per-item"),
        (["--users-per-item", "inf"], "--users-per-item"),
        (["--mean-interactions", "2"], "--mean-interactions"),
        (["--factors", "0"], "--factors"),
        (["--factors", "5000"], "--factors"),
        (["--negatives", "0"], "--negatives"),
        (["--examples-timed", "0"], "--examples-timed"),
        (["--latency-queries", "0"], "--latency-queries"),
        (["--seed", "-1"], "--seed"),
        (["--index", "flat"], "--index"),
        (["--sizes", "1000,10000000", "--users-per-item", "1000"], "not enough memory for scale"),
    ]]
)


@pytest.fixture
def nothing_is_read(monkeypatch):
    """Fail the test if any command reads a CSV, loads a run, or generates data."""
    import mfvsdnn.api as api
    import mfvsdnn.experiment.scale as scale
    import mfvsdnn.models.store as store

    calls = []

    def forbidden(name):
        def f(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")
        return f

    monkeypatch.setattr(api, "read_interactions", forbidden("read_interactions"))
    monkeypatch.setattr(api, "write_csv", forbidden("write_csv"))
    monkeypatch.setattr(store, "load_run", forbidden("load_run"))
    monkeypatch.setattr(scale, "generate", forbidden("generate"))
    return calls


@pytest.mark.parametrize("command, args, keyword", CASES,
                         ids=[f"{c}:{' '.join(a[1:] if a and a[0] in (MISSING, RUN, '{out}') else a)}"
                              for c, a, _ in CASES])
def test_out_of_range_option_exits_1_before_reading_anything(command, args, keyword, tmp_path, nothing_is_read):
    out = tmp_path / "out"
    argv = [command, *[str(out) if a == "{out}" else a for a in args]]
    res = runner.invoke(app, argv)
    assert res.exit_code == 1, res.output
    assert keyword in res.output, res.output
    assert "Traceback" not in res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output  # one line
    assert nothing_is_read == []
    assert not out.exists()


def test_every_option_of_every_command_is_in_the_table():
    """Each numeric (or otherwise checkable) option appears in CASES with a bad value."""
    unchecked = {"--help", "--json", "--out", "--report-dir", "--runs-dir", "--wals", "--softmax", "--user",
                 "--all", "--history", "--feature", "--user-col", "--item-col", "--weight-col", "--time-col",
                 "--item-group-col", "--user-group-col", "--user-features", "--test", "--user-file",
                 "--item-file", "--tie-embeddings",
                 "--spark-master", "--spark-conf", "--spark-reader", "--overwrite", "--models", "--no-baselines",
                 "--folding-contrasts", "--no-folding-contrasts", "--map-fold-in", "--no-map-fold-in"}  # names, paths, flags, free text
    covered = {(c, a) for c, args, _ in CASES for a in args if a.startswith("--")}
    shared = {a for args, _ in DATA_CASES for a in args if a.startswith("--")}
    missing = []
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__.replace("_", "-")
        res = WIDE.invoke(app, [name, "--help"])
        for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", res.output)):
            if opt in unchecked or (name, opt) in covered or (opt in shared and name != "make-data"):
                continue
            missing.append((name, opt))
    assert missing == []


@pytest.mark.parametrize("command, needles", [
    ("info", ["0<=x<1", "[default: 0.1]", "0<=x<=4294967295"]),
    ("make-data", ["1<=x<=100000000", "0.0<=x<=1.0", "[default: 3000]"]),
    ("train-wals", ["1<=x<=4096", "0<=x<1", "0<x<=1e+06", "1<=x<=10000", "[default: 32]"]),
    ("train-softmax", ["0<x<=10", "1<=x<=4096", "1<=x<=10000000", "x>=0", "[default: 0.002]", "65536"]),
    ("recommend", ["1<=x<=100000"]),
    ("compare", ["0<=x<=100000", "1<=x<=1000000", "Keys: factors, w0, reg", "Keys: dim, hidden"]),
    ("sweep", ["1<=x<=256", "Keys: factors", "[default: 200]"]),
    ("scale", ["0<x<=1000", "1<=x<=4096", "[default: 1000,3000,10000,30000,100000]"]),
])
def test_help_shows_ranges_and_defaults(command, needles):
    res = WIDE.invoke(app, [command, "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for n in needles:
        assert n in text, (n, text)
