"""The CSV loader: round trips, column detection, options, and every bad input as a clear exit-1 error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.core.errors import DataError
from mfvsdnn.data import ColumnSpec, dataset_from_frame, read_interactions, summarize

runner = CliRunner()

BLANKS = " \t"  # the loader's whitespace rule: spaces and tabs around every field are removed
# Text-like ids (with separators, quotes, line breaks and blanks inside), digit-only ids, and ids that
# a type-inferring reader would turn into numbers or missing values.
text_ids = st.text(alphabet="abcxyz019_-.+é ,\"\n\t", min_size=1, max_size=6)
digit_ids = st.from_regex(r"[0-9]{1,4}", fullmatch=True)
number_like = st.one_of(st.integers(-(2**64), 2**64).map(str), st.floats(allow_nan=True).map(str),
                        st.sampled_from(["nan", "NA", "null", "None", "NaN", "N/A", "#N/A", "inf", "-0",
                                         "1e3", "True", "false", "00", "+1", "1.0"]))
ids = st.one_of(text_ids, digit_ids, number_like).filter(lambda s: s.strip(BLANKS) != "")

DIGITS = [("0", "x"), ("00", "x"), ("000", "y")]
FLOAT_LIKE = [("1.0", "a"), ("1", "a"), ("+1", "b"), ("01", "b")]
BIG = [(str(2**53 + 1), "a"), (str(2**53), "a"), (str(2**63 + 1), "b"), (str(-(2**63) - 1), "b")]
HALF_AMONG_INTS = [("1", "10"), ("2", "20"), ("1.5", "10"), ("3", "30")]
MISSING_WORDS = [("nan", "NA"), ("null", "None"), ("NaN", "null"), ("None", "nan"), ("N/A", "#N/A")]
SPACES = [(" a", "x"), ("a ", "x "), ("\tb\t", " y"), ("a b", "y")]


@example(rows=DIGITS)
@example(rows=FLOAT_LIKE)
@example(rows=BIG)
@example(rows=HALF_AMONG_INTS)
@example(rows=MISSING_WORDS)
@example(rows=SPACES)
@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(ids, ids), min_size=1, max_size=40))
def test_round_trip_holds_exactly_the_unique_pairs(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rt") / "x.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id"], dtype=object).to_csv(path, index=False)
    expected = {(u.strip(BLANKS), i.strip(BLANKS)) for u, i in rows}
    ds = read_interactions(path)
    m = ds.matrix.tocoo()
    got = {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(m.row, m.col)}
    assert got == expected
    assert ds.nnz == len(expected)
    assert all(type(u) is str for u in ds.user_ids) and all(type(i) is str for i in ds.item_ids)
    assert np.all(ds.matrix.data == 1.0)
    assert list(ds.user_ids) == sorted(ds.user_ids)  # index <-> id independent of row order
    assert list(ds.item_ids) == sorted(ds.item_ids)


def write(tmp_path, text: str, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_aliases_are_detected(tmp_path):
    ds = read_interactions(write(tmp_path, "userId,movieId,rating\n1,10,5\n1,11,3\n2,10,4\n"))
    assert ds.columns.user_col == "userId" and ds.columns.item_col == "movieId"
    assert ds.n_users == 2 and ds.n_items == 2 and ds.nnz == 3


def test_weight_filter_and_duplicates_collapse(tmp_path):
    p = write(tmp_path, "user,item,rating\na,x,5\na,x,4\na,y,2\nb,y,4\n")
    ds = read_interactions(p, ColumnSpec(weight_col="rating", min_weight=4))
    pairs = {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(*ds.matrix.nonzero())}
    assert pairs == {("a", "x"), ("b", "y")}
    assert ds.n_items == 2  # y survives through b; item ids come from every row


def test_tab_separator_groups_features_and_time(tmp_path):
    p = write(tmp_path, "u\ti\tt\tcountry\titem_group\n"
                        "a\tx\t2020-01-02\tfr\tg1\na\ty\t2020-01-01\tfr\tg2\nb\tx\t2020-01-03\tde\tg1\n")
    ds = read_interactions(p, ColumnSpec(user_col="u", item_col="i", time_col="t", user_features=("country",),
                                         sep="tab"))
    assert ds.group_names == ["g1", "g2"]
    assert list(ds.item_groups) == [0, 1]
    assert [ds.feature_values["country"][c] for c in ds.features["country"]] == ["fr", "de"]
    assert ds.times is not None and ds.times[0] > ds.times[1]  # (a,x) later than (a,y)


def test_summary_natural_cross_rate(tmp_path):
    p = write(tmp_path, "user_id,item_id,user_group,item_group\n"
                        "a,x,A,A\na,y,A,A\na,z,A,B\nb,z,B,B\n")
    s = summarize(read_interactions(p))
    assert s["groups"]["natural_cross_group_rate"] == pytest.approx(1 / 4)
    assert s["interactions"] == 4


BAD = [
    ("missing", None, ["no such file"]),
    ("empty", "", ["empty"]),
    ("header-only", "user_id,item_id\n", ["no interactions"]),
    ("no-user-col", "person,item_id\na,x\n", ["no user column", "user_id"]),
    ("ragged", "user_id,item_id\na,x\nb,y,z\n", ["line 3", "number of fields"]),
    ("bad-weight", "user_id,item_id,w\na,x,1\nb,y,lots\n", ["line 3", "'w'", "not a number"]),
    ("feature-clash", "user_id,item_id,country\na,x,fr\na,y,de\n", ["country", "constant per user", "line 3"]),
    ("all-filtered", "user_id,item_id,w\na,x,1\nb,y,2\n", ["no interaction left", "--min-weight"]),
    ("empty-user", "user_id,item_id\n,x\n", ["line 2", "user_id", "empty"]),
]


@pytest.mark.parametrize("name,text,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_error(tmp_path, name, text, words):
    path = str(tmp_path / "missing.csv") if text is None else write(tmp_path, text)
    args = ["info", path]
    if name == "bad-weight":
        args += ["--weight-col", "w"]
    if name == "feature-clash":
        args += ["--user-features", "country"]
    if name == "all-filtered":
        args += ["--weight-col", "w", "--min-weight", "5"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w in res.output, (w, res.output)


def test_directory_invalid_utf8_and_suggestions(tmp_path):
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert res.exit_code == 1 and "is a directory" in res.output
    p = tmp_path / "bin.csv"
    p.write_bytes(b"user_id,item_id\na,x\nb,\xff\xfe\n")
    res = runner.invoke(app, ["info", str(p)])
    assert res.exit_code == 1 and "line 3" in res.output and "UTF-8" in res.output
    q = write(tmp_path, "user_id,item_id\na,x\n")
    res = runner.invoke(app, ["info", q, "--item-col", "itemid"])
    assert res.exit_code == 1 and "Did you mean 'item_id'" in res.output
    res = runner.invoke(app, ["info", q, "--split", "sideways"])
    assert res.exit_code == 1 and "'random' or 'temporal'" in res.output
    res = runner.invoke(app, ["info", q, "--no-such-option"])
    assert res.exit_code == 1 and "Traceback" not in res.output


def test_library_raises_data_error_not_pandas_errors(tmp_path):
    with pytest.raises(DataError, match="line 3"):
        read_interactions(write(tmp_path, "user_id,item_id\na,x\nb,y,z,w\n"))


def test_frames_follow_the_file_rules():
    frame = pd.DataFrame({"u": pd.Series([7, 2**53 + 1, 7], dtype="int64"), "i": pd.Categorical(["b", "a", "a"]),
                          "t": [3.0, 1.0, 2.0]})
    ds = dataset_from_frame(frame, ColumnSpec(user_col="u", item_col="i", time_col="t"), name="frame")
    assert list(ds.user_ids) == sorted(["7", str(2**53 + 1)]) and list(ds.item_ids) == ["a", "b"]
    assert ds.nnz == 3 and sorted(ds.times) == [1.0, 2.0, 3.0]
    floats = pd.DataFrame({"u": [1.0, 2.0], "i": ["a", "b"]})
    with pytest.raises(DataError, match="frame: column 'u' holds double values"):
        dataset_from_frame(floats, ColumnSpec(user_col="u", item_col="i"), name="frame")
    with pytest.raises(DataError, match="frame: the frame has no column 'w'"):
        dataset_from_frame(floats, ColumnSpec(user_col="u", item_col="i", weight_col="w"), name="frame")
    holes = pd.DataFrame({"u": ["a", None], "i": ["x", "y"]})
    with pytest.raises(DataError, match="frame: row 2: column 'u' is empty"):
        dataset_from_frame(holes, ColumnSpec(user_col="u", item_col="i"), name="frame")
