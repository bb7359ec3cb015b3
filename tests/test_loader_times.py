"""Times as Unix seconds (float64) and weights as numbers, parsed explicitly, with messages naming the line."""

from __future__ import annotations

import pytest
from helpers import cli_fails

from mfvsdnn.data import ColumnSpec, read_interactions

T = ColumnSpec(time_col="t")


def times_of(tmp_path, values: list[str]) -> list[float]:
    p = tmp_path / "t.csv"
    rows = "".join(f"u{k},i{k},{v}\n" for k, v in enumerate(values))
    p.write_text("user_id,item_id,t\n" + rows)
    ds = read_interactions(p, T)
    # one row per user, users sorted u0, u1, ...: times come back in the order written
    return [float(x) for x in ds.times]



def test_numbers_are_taken_as_given(tmp_path):
    assert times_of(tmp_path, ["1577836800", " 1.5e9 ", "-3", "+2.25", ".5", "5.", "1E+3"]) == \
        [1577836800.0, 1.5e9, -3.0, 2.25, 0.5, 5.0, 1000.0]


def test_iso_timestamps_with_zone_are_exact_unix_seconds(tmp_path):
    got = times_of(tmp_path, ["2020-01-01T00:00:00Z", "2020-01-01T01:00:00+01:00", "2019-12-31T19:00:00-05:00"])
    assert got == [1577836800.0] * 3


def test_naive_dates_and_timestamps_are_utc(tmp_path):
    assert times_of(tmp_path, ["2020-01-01", "2020-01-01 00:00:00", "2020-01-02T00:00"]) == \
        [1577836800.0, 1577836800.0, 1577923200.0]


def test_sub_second_parts_are_kept(tmp_path):
    got = times_of(tmp_path, ["2020-01-01T00:00:00.25Z", "2020-01-01T00:00:00.000001", "1970-01-01T00:00:00.5"])
    assert got == [1577836800.25, 1577836800.000001, 0.5]


def test_a_column_mixing_numbers_and_dates_is_refused_naming_the_minority_line(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("user_id,item_id,t\na,x,1577836800\n\nb,y,2020-01-01\nc,z,1577836900\n")
    cli_fails(["info", p, "--time-col", "t"], "mixes numbers and dates", "line 4", "'2020-01-01'")
    q = tmp_path / "n.csv"
    q.write_text("user_id,item_id,t\na,x,2020-01-01\nb,y,2020-01-02\nc,z,17\n")
    cli_fails(["info", q, "--time-col", "t"], "mixes numbers and dates", "line 4", "'17'")


@pytest.mark.parametrize("bad", ["yesterday", "inf", "nan", "2020-13-45", "01/02/2020", "1,5"])
def test_unparseable_times_name_the_line(tmp_path, bad):
    p = tmp_path / "g.csv"
    p.write_text(f'user_id,item_id,t\na,x,2020-01-01\n\nb,y,"{bad}"\n')
    cli_fails(["info", p, "--time-col", "t"], "line 4", "'t'", "neither a number nor", repr(bad))


def test_an_empty_time_names_the_line(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("user_id,item_id,t\na,x,5\nb,y, \n")
    cli_fails(["info", p, "--time-col", "t"], "line 3", "'t'", "empty")


def test_duplicates_keep_their_earliest_time(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("user_id,item_id,t\na,x,2020-01-02\na,x,2020-01-01T12:00:00Z\n")
    ds = read_interactions(p, T)
    assert ds.nnz == 1 and list(ds.times) == [1577880000.0]


@pytest.mark.parametrize("bad,words", [("lots", ["not a number", "'lots'"]), ("inf", ["not a number"]),
                                       ("1e999", ["not a finite number"]), ("", ["empty"])])
def test_bad_weights_name_the_line(tmp_path, bad, words):
    p = tmp_path / "w.csv"
    p.write_text(f"user_id,item_id,w\na,x,1\n\nb,y,{bad}\n")
    cli_fails(["info", p, "--weight-col", "w"], "line 4", "'w'", *words)


def test_weights_are_parsed_after_the_whitespace_rule(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("user_id,item_id,w\na,x, 4 \nb,y,\t3.5\nc,z,+5\n")
    ds = read_interactions(p, ColumnSpec(weight_col="w", min_weight=4))
    assert list(ds.user_ids) == ["a", "b", "c"] and ds.nnz == 2
