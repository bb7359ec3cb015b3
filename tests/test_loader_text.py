"""CSV text: line ends, BOM, the whitespace rule, header names, field counts and physical line numbers."""

from __future__ import annotations

import io

import pytest
from helpers import cli_fails, pairs
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mfvsdnn.core.errors import DataError
from mfvsdnn.data import ColumnSpec, read_header, read_interactions, sources


def write(tmp_path, data: bytes | str, name: str = "d.csv"):
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p




EXPECTED = {("a", "x"), ("b", "y"), ("c", "x")}


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["plain", "BOM"])
def test_every_line_end_and_a_bom_read_the_same(tmp_path, end, bom):
    text = bom + end.join(["user_id,item_id,t", "a,x,1", "b,y,2", "", "c,x,3"]) + end
    ds = read_interactions(write(tmp_path, text), ColumnSpec(time_col="t"))
    assert ds.columns.user_col == "user_id"  # the BOM is not part of the first name
    assert pairs(ds) == EXPECTED and sorted(ds.times) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_numbers_count_physical_lines_for_every_line_end(tmp_path, end):
    text = end.join(["user_id,item_id", "a,x", "", '"b', 'c",y', ",z"]) + end
    cli_fails(["info", write(tmp_path, text)], "line 6", "'user_id'", "empty")


def test_blank_line_then_empty_user_id_says_the_physical_line(tmp_path):
    p = write(tmp_path, "user_id,item_id\na,x\n\nb,y\n,z\n")
    with pytest.raises(DataError, match=r"line 5: column 'user_id' is empty"):
        read_interactions(p)


def test_quoted_line_breaks_are_part_of_the_id_and_count_as_lines(tmp_path):
    p = write(tmp_path, 'user_id,item_id\n"a\nb",x\n"c,d",y\n"say ""hi""",z\n')
    ds = read_interactions(p)
    assert list(ds.user_ids) == ["a\nb", "c,d", 'say "hi"']
    q = write(tmp_path, 'user_id,item_id,w\n"a\nb",x,1\n"c\n\nd",y,2\ne,z,lots\n', "w.csv")
    cli_fails(["info", q, "--weight-col", "w"], "line 7", "'w'", "not a number", "'lots'")


def test_header_names_with_spaces_and_the_whitespace_rule(tmp_path):
    p = write(tmp_path, " user_id ,\titem_id\t, country \n a ,x\t, fr\nb\t, y ,fr \n a b ,x,de\n")
    before = p.read_bytes()
    assert read_header(p, ",") == ["user_id", "item_id", "country"]
    ds = read_interactions(p, ColumnSpec(user_features=("country",)))
    assert list(ds.user_ids) == ["a", "a b", "b"]  # around each field only; inner spaces stay
    assert list(ds.item_ids) == ["x", "y"]
    assert ds.feature_values["country"] == ["de", "fr"]
    assert p.read_bytes() == before
    ds = read_interactions(p, ColumnSpec(user_col="user_id", item_col="item_id"))
    assert ds.n_users == 3


def test_a_field_of_only_blanks_is_empty(tmp_path):
    cli_fails(["info", write(tmp_path, "user_id,item_id\na,x\nb, \t \n")], "line 3", "'item_id'", "empty")


def test_only_an_empty_field_is_missing(tmp_path):
    p = write(tmp_path, "user_id,item_id,user_group\nnan,NA,null\nNone,N/A,NaN\n")
    ds = read_interactions(p)
    assert list(ds.user_ids) == ["None", "nan"] and list(ds.item_ids) == ["N/A", "NA"]
    assert ds.group_names == ["NaN", "null"]


@pytest.mark.parametrize("row,n", [("b", 1), ("b,y,z", 3), ("   ", 1)])
def test_rows_with_too_few_or_too_many_fields_are_refused(tmp_path, row, n):
    p = write(tmp_path, f"user_id,item_id\na,x\n\n{row}\nc,z\n")
    cli_fails(["info", p], "line 4", "number of fields", f"({n}, the header has 2)")


def test_a_quote_left_open_is_named(tmp_path):
    p = write(tmp_path, 'user_id,item_id\na,x\n"b,y\nc,z\nd,w\n')
    cli_fails(["info", p], "line 3", "number of fields", "line 5", "quote left open")


def test_a_header_name_given_twice_is_refused_when_used(tmp_path):
    cli_fails(["info", write(tmp_path, "user_id,item_id, user_id\na,x,b\n")],
              "'user_id' 2 times", "columns 1, 3")
    ds = read_interactions(write(tmp_path, "user_id,item_id,c,c\na,x,1,2\n", "ok.csv"))
    assert pairs(ds) == {("a", "x")}  # a repeated name nobody uses is harmless


def test_invalid_utf8_names_the_physical_line(tmp_path):
    p = write(tmp_path, b"user_id,item_id\r\na,x\r\n\r\nb,\xe9t\xe9\r\n")
    cli_fails(["info", p], "line 4", "UTF-8")
    q = write(tmp_path, b"user_id,it\xe9m_id\na,x\n", "h.csv")
    cli_fails(["info", q], "line 1", "UTF-8")


def test_only_used_columns_must_be_utf8_and_the_message_names_their_line(tmp_path):
    latin1_note = b"user_id,item_id,note\na,x,caf\xe9\nb,y,ok\n"
    ds = read_interactions(write(tmp_path, latin1_note))  # "note" is never decoded
    assert pairs(ds) == {("a", "x"), ("b", "y")}
    p = write(tmp_path, b"user_id,item_id,note\na,x,caf\xe9\n\nb,\xff,ok\n", "both.csv")
    out = cli_fails(["info", p], "line 4", "UTF-8")
    assert "line 2" not in out  # whose bad byte is in the unused column


def test_header_problems(tmp_path):
    cli_fails(["info", write(tmp_path, "\nuser_id,item_id\na,x\n")], "line 1 is blank", "header")
    cli_fails(["info", write(tmp_path, "user_id;item_id\na;x\n", "semi.csv")], "no user column", "--sep")
    ds = read_interactions(write(tmp_path, "user_id;item_id\na;x\n", "semi2.csv"), ColumnSpec(sep="semicolon"))
    assert pairs(ds) == {("a", "x")}
    # a quote left open in the header: still one line, however far the "name" runs
    out = cli_fails(["info", write(tmp_path, '"user_id,item_id\na,x\n', "q.csv")], "no user column")
    assert out.strip().count("\n") == 0
    cli_fails(["info", write(tmp_path, '"user_id,item_id\n' + "a,x\n" * 40000, "q2.csv")],
              "header row", "quote left open")


def test_long_header_listing_is_capped(tmp_path):
    header = ",".join(f"c{k}" for k in range(60))
    out = cli_fails(["info", write(tmp_path, header + "\n" + ",".join("1" * 60) + "\n")], "no user column",
                    "and 40 more")
    assert "c59" not in out


@example(data=b"\r\r\n", chunk=1)  # a \r\n after a run of \r split across reads
@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b",", b'"']), max_size=30).map(b"".join),
       chunk=st.integers(1, 5))
def test_physical_lines_split_on_every_line_end_across_read_boundaries(data, chunk):
    lines = list(sources.physical_lines(io.BytesIO(data), chunk))
    assert b"".join(lines) == data
    assert lines == data.splitlines(keepends=True)  # bytes.splitlines: \n, \r\n and a lone \r


record = st.one_of(st.just(None),  # a blank line
                   st.tuples(st.sampled_from(["a", "b c", "x\ny", "p\r\nq\nr"]), st.sampled_from(["i", "j,k"])))


@settings(max_examples=60, deadline=None)
@given(records=st.lists(record, max_size=8), end=st.sampled_from(["\n", "\r\n", "\r"]))
def test_the_line_in_a_message_is_the_physical_line(tmp_path_factory, records, end):
    def field(text: str) -> str:
        return f'"{text}"' if any(c in text for c in ',\r\n"') else text

    lines = ["user_id,item_id"]
    for rec in records:
        lines.append("" if rec is None else f"{field(rec[0])},{field(rec[1])}")
    text = end.join(lines) + end
    expected = len(text.splitlines()) + 1  # the line after all of them (text ends with a line end)
    text += ",z" + end  # the bad row: an empty user id
    p = tmp_path_factory.mktemp("lines") / "d.csv"
    p.write_bytes(text.encode())
    with pytest.raises(DataError, match=rf"line {expected}: column 'user_id' is empty"):
        read_interactions(p)
