"""The loader's input formats: compressed CSV (by content and by name), one-file zip, Parquet, --test."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import cli_fails, pairs
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.core.errors import DataError
from mfvsdnn.data import ColumnSpec, read_header, read_interactions

runner = CliRunner()
CSV = b"user_id,item_id,t\n007,a,5\n7,b,6\n1.0,a,7\n1,c,8\n"
USERS = ["007", "1", "1.0", "7"]  # sorted text, nothing read as a number




COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_csv_reads_like_the_plain_file(tmp_path, suffix):
    plain = tmp_path / "d.csv"
    plain.write_bytes(CSV)
    packed = tmp_path / f"d.csv{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](CSV))
    before = packed.read_bytes()
    a, b = read_interactions(plain, ColumnSpec(time_col="t")), read_interactions(packed, ColumnSpec(time_col="t"))
    assert list(b.user_ids) == USERS and pairs(a) == pairs(b)
    np.testing.assert_array_equal(a.times, b.times)
    assert packed.read_bytes() == before  # the input is only read
    assert b.file_hash == hashlib.sha256(before).hexdigest()  # the fingerprint hashes the bytes on disk


def test_zstd_csv_when_pyarrow_has_the_codec(tmp_path):
    if not pa.Codec.is_available("zstd"):
        pytest.skip("this pyarrow build has no zstd codec")
    p = tmp_path / "d.csv.zst"
    p.write_bytes(pa.compress(CSV, codec="zstd", asbytes=True))
    # pa.compress writes a raw frame, which is what the zstd tool writes too
    assert list(read_interactions(p).user_ids) == USERS


def test_content_decides_a_gzip_named_csv_is_read(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(gzip.compress(CSV))
    assert list(read_interactions(p).user_ids) == USERS


def test_a_name_promising_another_format_is_refused(tmp_path):
    p = tmp_path / "d.csv.gz"
    p.write_bytes(CSV)
    with pytest.raises(DataError, match=r"name says gzip data \(.gz\) but the content is plain text"):
        read_interactions(p)
    q = tmp_path / "d.parquet"
    q.write_bytes(gzip.compress(CSV))
    cli_fails(["info", str(q)], "Parquet", "gzip data")


def test_zip_with_exactly_one_member(tmp_path):
    p = tmp_path / "d.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("folder/", "")  # directory entries do not count
        z.writestr("folder/d.csv", CSV)
    assert list(read_interactions(p).user_ids) == USERS


def test_zip_with_no_or_several_members_is_refused_naming_them(tmp_path):
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    cli_fails(["info", str(empty)], "empty.zip", "holds no file", "exactly one")
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", CSV)
        z.writestr("b.csv", CSV)
    cli_fails(["info", str(two)], "holds 2 files", "a.csv", "b.csv", "exactly one")
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as z:
        z.writestr("d.csv.gz", gzip.compress(CSV))
    cli_fails(["info", str(nested)], "d.csv.gz", "gzip data", "not a CSV")


def test_corrupt_or_truncated_compressed_data_is_one_message(tmp_path):
    whole = gzip.compress(CSV * 2000)
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(whole[: len(whole) // 2])
    cli_fails(["info", str(p)], "cut.csv.gz", "corrupt or truncated")
    q = tmp_path / "bad.zip"
    q.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    cli_fails(["info", str(q)], "bad.zip", "zip")


def test_lines_in_a_compressed_csv_are_lines_of_the_decompressed_text(tmp_path):
    p = tmp_path / "d.csv.gz"
    p.write_bytes(gzip.compress(b"user_id,item_id\r\na,x\r\n\r\n\"b\nc\",y\r\n,z\r\n"))
    cli_fails(["info", str(p)], "line 6", "'user_id'", "empty")


def test_invalid_utf8_inside_gzip_names_the_line(tmp_path):
    p = tmp_path / "d.csv.gz"
    p.write_bytes(gzip.compress(b"user_id,item_id\na,x\n\nb,\xff\xfe\nc,y\n"))
    cli_fails(["info", str(p)], "d.csv.gz", "line 4", "UTF-8")


# ----------------------------------------------------------------------------------------------
# Parquet


def write_parquet(path, **columns) -> None:
    pq.write_table(pa.table(columns), path)


def test_parquet_integer_ids_become_their_decimal_text(tmp_path):
    p = tmp_path / "d.parquet"
    big = 2**53 + 1  # not representable as a float64: the text must come from the integer
    write_parquet(p, user_id=pa.array([7, big, big - 1, -3], pa.int64()),
                  item_id=pa.array([" x", "y", "x", "007"]), item_group=pa.array([1, 2, 1, 3], pa.uint8()))
    ds = read_interactions(p)
    assert list(ds.user_ids) == sorted(["7", str(big), str(big - 1), "-3"])
    assert list(ds.item_ids) == ["007", "x", "y"]  # strings as stored, under the whitespace rule
    assert ds.group_names == ["1", "2", "3"]
    assert pairs(ds) == {("7", "x"), (str(big), "y"), (str(big - 1), "x"), ("-3", "007")}


def test_parquet_dictionary_and_pandas_columns(tmp_path):
    p = tmp_path / "d.pq"
    frame = pd.DataFrame({"userId": pd.Categorical(["b", "a", "b"]), "movieId": [10, 20, 10],
                          "rating": [4.5, 3.0, 5.0], "country": ["fr", None, "fr"],
                          "smoker": [True, False, True]})
    frame.to_parquet(p, index=False)
    ds = read_interactions(p, ColumnSpec(weight_col="rating", min_weight=4, user_features=("country", "smoker")))
    assert list(ds.user_ids) == ["a", "b"] and list(ds.item_ids) == ["10", "20"]
    assert pairs(ds) == {("b", "10")}
    assert [ds.feature_values["country"][c] for c in ds.features["country"]] == ["<missing>", "fr"]
    assert [ds.feature_values["smoker"][c] for c in ds.features["smoker"]] == ["false", "true"]


def test_parquet_timestamps_and_dates_are_unix_seconds(tmp_path):
    p = tmp_path / "d.parquet"
    stamps = pa.array([pd.Timestamp("2020-01-01T00:00:00.25Z"), pd.Timestamp("2020-01-01T00:00:00Z")],
                      pa.timestamp("us", tz="UTC"))
    write_parquet(p, user_id=["a", "b"], item_id=["x", "x"], t=stamps,
                  d=pa.array([18262, 18263], pa.date32()), n=pa.array([pd.Timestamp("2020-01-01")] * 2,
                                                                     pa.timestamp("ns")))
    assert list(read_interactions(p, ColumnSpec(time_col="t")).times) == [1577836800.25, 1577836800.0]
    assert list(read_interactions(p, ColumnSpec(time_col="d")).times) == [1577836800.0, 1577923200.0]
    assert list(read_interactions(p, ColumnSpec(time_col="n")).times) == [1577836800.0] * 2  # naive = UTC


def test_parquet_float_ids_and_missing_columns_are_refused(tmp_path):
    p = tmp_path / "f.parquet"
    write_parquet(p, user_id=pa.array([1.0, 2.0]), item_id=["x", "y"])
    cli_fails(["info", str(p)], "f.parquet", "'user_id'", "double", "text or integers")
    q = tmp_path / "m.parquet"
    write_parquet(q, person=[1, 2], item_id=["x", "y"])
    assert read_header(q, ",") == ["person", "item_id"]
    cli_fails(["info", str(q)], "m.parquet", "no user column", "person", "--user-col")
    cli_fails(["info", str(q), "--user-col", "persn"], "no column 'persn'", "Did you mean 'person'")


def test_parquet_nulls_name_the_row(tmp_path):
    p = tmp_path / "n.parquet"
    write_parquet(p, user_id=["a", None, "c"], item_id=["x", "y", "z"])
    cli_fails(["info", str(p)], "n.parquet", "row 2", "'user_id'", "empty")


def test_broken_parquet_is_one_message(tmp_path):
    p = tmp_path / "b.parquet"
    p.write_bytes(b"PAR1" + b"\x00" * 30)
    cli_fails(["info", str(p)], "b.parquet", "Parquet")


# ----------------------------------------------------------------------------------------------
# --test takes the same formats


@pytest.mark.parametrize("kind", ["gz", "parquet"])
def test_explicit_test_file_in_gzip_or_parquet(tmp_path, kind):
    train = tmp_path / "train.csv"
    train.write_text("user_id,item_id\nu1,a\nu1,b\nu2,a\n")
    if kind == "gz":
        test = tmp_path / "test.csv.gz"
        test.write_bytes(gzip.compress(b"user_id,item_id\nu1,c\nu3,a\n"))
    else:
        test = tmp_path / "test.parquet"
        write_parquet(test, user_id=["u1", "u3"], item_id=["c", "a"])
    ds = read_interactions(train, test_path=test)
    assert list(ds.user_ids) == ["u1", "u2", "u3"]
    m = ds.matrix.tocoo()
    flagged = {(ds.user_ids[u], ds.item_ids[i]) for u, i, t in zip(m.row, m.col, ds.is_test) if t}
    assert flagged == {("u1", "c"), ("u3", "a")}
    res = runner.invoke(app, ["info", str(train), "--test", str(test), "--json"])
    assert res.exit_code == 0, res.output


def test_errors_in_the_test_file_name_the_test_file(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("user_id,item_id,country\nu1,a,fr\nu2,b,de\n")
    test = tmp_path / "test.csv.gz"
    test.write_bytes(gzip.compress(b"user_id,item_id,country\nu3,a,fr\n\nu1,c,es\n"))
    out = cli_fails(["info", str(train), "--test", str(test), "--user-features", "country"],
                    "constant per user", "line 2", f"line 4 of {test}")
    assert "Traceback" not in out
    bad = tmp_path / "bad.parquet"
    write_parquet(bad, user_id=["u1", ""], item_id=["x", "y"])
    cli_fails(["info", str(train), "--test", str(bad)], "bad.parquet", "row 2", "empty")
