"""Reading DATA for the Spark engine: the same :class:`Dataset` and split as the local loader.

Two routes (:func:`choose_reader`):

- ``"pandas"``: the local loader and split (``experiment.runner.prepare_split``); Spark only trains and
  scores. Runs for local plain CSV files up to :data:`PANDAS_MAX_BYTES` (and always with ``--test``).
- ``"spark"``: Spark parses, filters, deduplicates and indexes the rows (CSV, ``.csv.gz``, Parquet,
  directories, any URI Spark understands: ``hdfs://``, ``s3a://``, ...); the driver receives only
  integer codes (one string of item codes per user), and the same :func:`mfvsdnn.data.split.make_split`
  runs on them, so the split and fingerprint equal the local loader's for the same local file.
  Runs for URIs, directories, Parquet, compressed files and local files over PANDAS_MAX_BYTES.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...core.errors import DataError
from ...data import ColumnSpec, Dataset, parse_sep
from ...data.split import Split, SplitConfig, make_split
from ...experiment.runner import prepare_split
from ...experiment.spec import DataSpec
from .session import SparkError, first_line

PANDAS_MAX_BYTES = 2 << 30  # local CSV files above this are parsed by Spark, not pandas
READERS = ("auto", "pandas", "spark")
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_uri(source: str) -> bool:
    """True for ``scheme://...`` (hdfs, s3a, gs, abfss, file, ...)."""
    return bool(_URI_RE.match(str(source)))


def choose_reader(source: str | os.PathLike, reader: str = "auto", test_path: Any = None) -> str:
    """Which route reads DATA: "pandas" (the local loader) or "spark". See the module docstring."""
    if reader not in READERS:
        raise SparkError(f"--spark-reader must be one of {', '.join(READERS)}, got {reader!r}")
    s = str(source)
    local_csv = (not is_uri(s) and Path(s).is_file()
                 and not s.lower().endswith((".parquet", ".gz", ".bz2", ".zip", ".xz", ".zst", ".snappy")))
    if test_path is not None:
        if reader == "spark" or not local_csv:
            raise SparkError(f"--test needs a local plain CSV read by the local loader; {s} is read by Spark "
                             "(a URI, directory, Parquet or compressed file). Drop --test or convert the file")
        return "pandas"
    if reader != "auto":
        if reader == "pandas" and not local_csv:
            raise SparkError(f"--spark-reader pandas reads local plain CSV files only; {s} needs --spark-reader spark")
        return reader
    if local_csv and Path(s).stat().st_size <= PANDAS_MAX_BYTES:
        return "pandas"
    return "spark"


def restore_uri(data: os.PathLike | str, argv: list[str] | None = None) -> str:
    """The DATA argument as typed: a ``Path`` collapses ``hdfs://host/x`` to ``hdfs:/host/x``."""
    s = str(data)
    if is_uri(s):
        return s
    for a in argv if argv is not None else sys.argv[1:]:
        if is_uri(a) and str(Path(a)) == s:
            return a
    return s


def _resolve_header(source: str, header: list[str], spec: ColumnSpec) -> ColumnSpec:
    """:func:`mfvsdnn.data.resolve_header` on a header Spark read."""
    from ...data import resolve_header

    return resolve_header(Path(source), header, spec)


def _source_hash(spark: Any, source: str, frame: Any, cols: list[str]) -> str:
    """The input's hash for the split fingerprint: the file's SHA-256 for a local file (as the local
    loader), else an order-independent content hash of the used columns computed by Spark."""
    import hashlib

    from pyspark.sql import functions as sql

    from ...data import file_sha256

    local = source[len("file://"):] if source.startswith("file://") else source
    if not is_uri(local) and Path(local).is_file():
        return file_sha256(local)
    h = sql.xxhash64(*[sql.coalesce(sql.col(c).cast("string"), sql.lit("\u0000")) for c in cols])
    row = frame.agg(sql.count(sql.lit(1)).alias("n"), sql.sum((h % (1 << 40)).cast("decimal(38,0)")).alias("s"),
                    sql.sum((sql.shiftright(h, 24) % (1 << 40)).cast("decimal(38,0)")).alias("t")).collect()[0]
    return hashlib.sha256(f"spark-content:{row['n']}:{row['s']}:{row['t']}:{cols}".encode()).hexdigest()


def _analysis_error(source: str, e: Exception) -> DataError:
    msg = first_line(e)
    if "PATH_NOT_FOUND" in msg or "does not exist" in msg:
        return DataError(f"{source}: no such file or directory (as seen by Spark)")
    return DataError(f"{source}: Spark cannot read it: {msg}")


def _to_double(col: str) -> Any:
    """``try_cast(col AS DOUBLE)``: null for non-numbers, also under ANSI mode (Spark 4's default)."""
    from pyspark.sql import functions as sql

    c = col.replace("`", "``")
    return sql.expr(f"try_cast(`{c}` AS DOUBLE)")


def _distinct_values(frame: Any, cols: list[str]) -> dict[str, np.ndarray]:
    """Sorted distinct string values of every column, in one Spark job (sorted as the local loader)."""
    from pyspark.sql import functions as sql

    pairs = sql.explode(sql.array(*[sql.struct(sql.lit(k).alias("k"), sql.col(c).alias("v")) for k, c in enumerate(cols)]))
    got: dict[int, list[str]] = {k: [] for k in range(len(cols))}
    for row in frame.select(pairs.alias("p")).select("p.k", "p.v").distinct().toLocalIterator(True):
        got[row[0]].append(str(row[1]))
    return {c: np.asarray(sorted(got[k]), dtype=object) for k, c in enumerate(cols)}


MAP_MAX = 20_000  # columns with at most this many values are coded by a literal map, larger ones by a join


def _code_column(frame: Any, col: str, cats: np.ndarray, out_col: str, spark: Any) -> Any:
    """Replace ``col`` by its integer code (index into the sorted ``cats``)."""
    from pyspark.sql import functions as sql

    if len(cats) <= MAP_MAX:
        lookup = sql.create_map(*[x for i, v in enumerate(cats) for x in (sql.lit(str(v)), sql.lit(i))])
        return frame.withColumn(out_col, lookup[sql.col(col)]).drop(col)
    table = spark.createDataFrame([(str(v), i) for i, v in enumerate(cats)], f"`{col}` string, `{out_col}` int")
    return frame.join(table, on=col, how="inner").drop(col)


def read_dataset_spark(spark: Any, source: str, columns: ColumnSpec = ColumnSpec()) -> Dataset:
    """Read interactions with Spark into the :class:`Dataset` the local loader would build.

    CSV (plain or compressed; header row required, ``columns.sep``) or Parquet (a ``.parquet`` path or a
    directory of Parquet files). Rows are filtered (weight), deduplicated and coded in Spark; the driver
    receives one row per user: the user's code and a string of ``item|other codes`` per interaction.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as sql

    s = str(source)
    sep = parse_sep(columns.sep)
    low = s.lower().rstrip("/")
    try:
        is_parquet = low.endswith(".parquet") or (not is_uri(s) and Path(s).is_dir()
                                                  and any(Path(s).glob("*.parquet")))
        if is_parquet:
            df = spark.read.parquet(s)
        else:
            df = spark.read.csv(s, header=True, sep=sep, inferSchema=False, encoding="UTF-8", mode="FAILFAST",
                                ignoreLeadingWhiteSpace=True, nullValue="", emptyValue=None)
    except AnalysisException as e:
        raise _analysis_error(s, e) from None
    header = [c.strip() for c in df.columns]
    df = df.toDF(*header)
    if not header or all(not h for h in header):
        raise DataError(f"{s}: no header row; a header naming the columns is required")
    spec = _resolve_header(s, header, columns)
    cats_cols = list(dict.fromkeys(c for c in (spec.user_col, spec.item_col, spec.item_group_col,
                                                spec.user_group_col, *spec.user_features) if c))
    num_cols = [c for c in (spec.weight_col, spec.time_col) if c]
    sel = df.select(*[sql.col(f"`{c}`").cast("string").alias(c) for c in cats_cols],
                    *[sql.col(f"`{c}`").cast("string").alias(c) for c in num_cols if c not in cats_cols])
    try:
        checks = [sql.count(sql.lit(1)).alias("rows")]
        for c in (spec.user_col, spec.item_col, spec.item_group_col, spec.user_group_col):
            if c:
                checks.append(sql.sum(sql.col(c).isNull().cast("long")).alias(f"null:{c}"))
        if spec.weight_col:
            checks.append(sql.sum((sql.col(spec.weight_col).isNotNull()
                                 & _to_double(spec.weight_col).isNull()).cast("long")).alias("badw"))
        stats = sel.agg(*checks).collect()[0].asDict()
    except Exception as e:  # malformed CSV (FAILFAST), unreadable file
        raise _analysis_error(s, e) from None
    if stats["rows"] == 0:
        raise DataError(f"{s}: the file has a header but no interactions")
    for c in (spec.user_col, spec.item_col, spec.item_group_col, spec.user_group_col):
        if c and stats[f"null:{c}"]:
            raise DataError(f"{s}: column {c!r} is empty on {stats[f'null:{c}']:,} rows (required on every row)")
    if spec.weight_col and stats["badw"]:
        bad = sel.filter(sql.col(spec.weight_col).isNotNull() & _to_double(spec.weight_col).isNull()) \
            .select(spec.weight_col).first()[0]
        raise DataError(f"{s}: column {spec.weight_col!r} (the weight) is not a number: {bad!r}")
    file_hash = _source_hash(spark, s, sel, cats_cols + num_cols)
    kept = "__kept"  # 1 where the weight passes the filter: ids and per-user values come from all rows,
    if spec.weight_col:  # as in the local loader; only kept rows become interactions
        w = _to_double(spec.weight_col)
        keep = w >= sql.lit(float(spec.min_weight)) if spec.min_weight is not None else w > 0
        sel = sel.withColumn(kept, sql.coalesce(keep, sql.lit(False)).cast("int"))
        if sel.filter(sql.col(kept) == 1).limit(1).count() == 0:
            thr = f">= {spec.min_weight}" if spec.min_weight is not None else "> 0"
            raise DataError(f"{s}: no interaction left: no row has {spec.weight_col!r} {thr}; lower --min-weight")
    for f in spec.user_features:
        sel = sel.withColumn(f, sql.coalesce(sql.col(f), sql.lit("<missing>")))
    if spec.time_col:
        tc = spec.time_col.replace("`", "``")
        sel = sel.withColumn(spec.time_col, sql.coalesce(
            _to_double(spec.time_col), sql.expr(f"unix_micros(try_to_timestamp(`{tc}`))").cast("double") / 1e6))
        n_bad = sel.filter(sql.col(spec.time_col).isNull()).count()
        if n_bad:
            raise DataError(f"{s}: column {spec.time_col!r} (the time) is empty or neither a number nor a date "
                            f"on {n_bad:,} rows")
    keep_cols = cats_cols + ([spec.time_col] if spec.time_col else []) + ([kept] if spec.weight_col else [])
    sel = sel.select(*keep_cols).distinct()
    cats = _distinct_values(sel, cats_cols)
    code_cols = []
    for k, c in enumerate(cats_cols):
        sel = _code_column(sel, c, cats[c], f"_c{k}", spark)
        code_cols.append(f"_c{k}")
    # one row per user: "item:g:f...:t:kept,item:..." in any order (the Dataset sorts)
    rest = code_cols[1:] + ([spec.time_col] if spec.time_col else []) + ([kept] if spec.weight_col else [])
    enc = sql.concat_ws(":", *[sql.col(c).cast("string") for c in rest])
    per_user = sel.groupBy("_c0").agg(sql.concat_ws(",", sql.collect_list(enc)).alias("r"))
    ncol = len(rest)
    dtype = np.float64 if spec.time_col else np.int64
    user_blocks, count_blocks, val_blocks = [], [], []
    users, parts, pending = [], [], 0

    def flush() -> None:  # decode a batch of users' strings (bounded driver memory)
        if not parts:
            return
        count_blocks.append(np.array([p.count(",") + 1 for p in parts], dtype=np.int64))
        flat = ",".join(parts).replace(":", ",")
        val_blocks.append(np.array(flat.split(","), dtype=dtype).reshape(-1, ncol))
        user_blocks.append(np.asarray(users, dtype=np.int64))
        users.clear()
        parts.clear()

    for row in per_user.toLocalIterator(True):
        users.append(row[0])
        parts.append(row[1])
        pending += len(row[1])
        if pending > 64 << 20:
            flush()
            pending = 0
    flush()
    counts = np.concatenate(count_blocks)
    vals = np.concatenate(val_blocks)
    ucodes = np.repeat(np.concatenate(user_blocks), counts)
    frame: dict[str, Any] = {spec.user_col: pd.Categorical.from_codes(ucodes.astype(np.int32),
                                                                      categories=cats[spec.user_col])}
    for j, c in enumerate(cats_cols[1:]):
        frame[c] = pd.Categorical.from_codes(vals[:, j].astype(np.int32), categories=cats[c])
    if spec.time_col:
        frame[spec.time_col] = vals[:, len(cats_cols) - 1]
    if spec.weight_col:
        frame[kept] = vals[:, -1].astype(np.float64)
    from ...data.loader import _dataset_from_frame

    build_spec = ColumnSpec(**{**spec.__dict__, "weight_col": kept if spec.weight_col else None,
                               "min_weight": None})
    ds = _dataset_from_frame(pd.DataFrame(frame), build_spec, Path(s), file_hash, None)
    ds.columns = spec  # the fingerprint records the options as given, like the local loader's
    ds.source = s
    ds.rows_read = int(stats["rows"])
    return ds


def read_split(spark: Any, source: str, columns: ColumnSpec, split_cfg: SplitConfig, test_path: Any = None,
               reader: str = "auto") -> tuple[Split, str]:
    """The split of DATA by the chosen reader (see :func:`choose_reader`). Returns (split, reader used)."""
    route = choose_reader(source, reader, test_path)
    if route == "pandas":
        data = DataSpec(Path(source), columns, Path(test_path) if test_path is not None else None)
        return prepare_split(data, split_cfg), route
    return make_split(read_dataset_spark(spark, str(source), columns), split_cfg), route
