"""WALS on Apache Spark: ``train-wals --engine spark`` and ``compare --engine spark``.

Spark MLlib's implicit ALS (``pyspark.ml.recommendation.ALS(implicitPrefs=True)``) minimises, over ALL
(user, item) pairs (unobserved ones have p = 0, r = 0),

    sum_{u,i} c_ui (p_ui - x_u.y_i)^2 + regParam (sum_u n_u ||x_u||^2 + sum_i n_i ||y_i||^2)

with confidence c = 1 + alpha r and n_u, n_i the number of positives of the row (ALS-WR scaling; in
``computeFactors`` of Spark's ALS.scala the solve uses ``numExplicits * regParam`` in implicit mode
too, and ``tests/test_spark.py`` checks it on the installed Spark). Our objective

    sum_Omega (1 - u.v)^2 + w0 sum_{not Omega} (u.v)^2 + reg (||U||^2 + ||V||^2)

divided by w0 has confidence 1/w0 on observed pairs and 1 on unobserved ones, so

    alpha = 1/w0 - 1                      (exact; w0 = 0 and w0 > 1 cannot be expressed)
    reg/w0 = regParam * n_u               (per row: no single regParam matches every row)

Row by row, Spark solves (V^T V + alpha sum_Omega v v^T + regParam n_u I) x = (1 + alpha) sum_Omega v,
which is our row solve with reg replaced by w0 * regParam * n_u. The default mapping
:func:`spark_reg_param` picks regParam = reg (n_users + n_items) / (2 w0 nnz), so the mean effective
regularisation over the trained user and item rows equals ``reg``; rows with more positives than the
mean are regularised more than locally, rows with fewer less. ``model.json`` records the mapping and
the spread of the effective per-row reg.

Two ways to read DATA (``reader``):

- ``"pandas"``: the local loader (:func:`mfvsdnn.data.read_interactions`) and split; Spark only trains.
  Runs for local CSV files under :data:`PANDAS_MAX_BYTES` (and always with ``--test``).
- ``"spark"``: Spark parses, filters, deduplicates and indexes the rows (CSV, ``.csv.gz``, Parquet,
  directories, any URI Spark understands: ``hdfs://``, ``s3a://``, ...); the driver receives only
  integer codes (one string of item codes per user), and the same :func:`mfvsdnn.data.split.make_split`
  runs on them, so the split and fingerprint equal the local loader's for the same local file.
  Runs for URIs, directories, Parquet, compressed files and local files over PANDAS_MAX_BYTES.

Everything else in the run (fold-in, cold-start feature heuristic, recommend, compare, sweep) is the
local WALS model built by :meth:`mfvsdnn.models.wals.WALS.from_factors` from Spark's factors.

The parameter mapping (:func:`spark_alpha`, :func:`spark_reg_param`, :func:`als_params`) imports
nothing from pyspark; pyspark is imported lazily by :func:`require_pyspark`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...core.errors import DataError, MfvsdnnError, ModelError
from ...data import ColumnSpec, Dataset, parse_sep
from ...data.split import Split, SplitConfig, make_split
from ...models.base import ProgressFn, no_progress

INSTALL_HINT = ("install the Spark extra with  pip install 'mfvsdnn[spark]'  (it brings pyspark) and Java 17 "
                "or newer (java on PATH, or JAVA_HOME set)")
PANDAS_MAX_BYTES = 2 << 30  # local CSV files above this are parsed by Spark, not pandas
READERS = ("auto", "pandas", "spark")
ENGINES = ("local", "spark")
MIN_JAVA = 17
_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class SparkError(MfvsdnnError):
    """Spark is unavailable, cannot start, or failed on the data."""


# ---------------------------------------------------------------------------------------------
# the parameter mapping (pure; no pyspark)


def spark_alpha(w0: float) -> float:
    """Spark's ``alpha`` for our unobserved weight: confidence 1 + alpha = 1/w0 on observed pairs.

    Refuses w0 <= 0 (alpha would be infinite: Spark always weights unobserved pairs by 1, so an
    objective that ignores them cannot be written with a finite alpha) and w0 > 1 (alpha < 0, which
    Spark rejects: observed pairs would weigh less than unobserved ones).
    """
    w0 = float(w0)
    if not np.isfinite(w0) or w0 <= 0.0:
        raise ModelError(
            f"--w0 {w0:g} cannot run on --engine spark: Spark's implicit ALS weights every unobserved pair "
            "by 1 and observed pairs by 1 + alpha, so matching our w0 needs alpha = 1/w0 - 1, which is "
            "infinite at w0 = 0. Use --engine local for w0 = 0 (the folding demonstration) or a w0 > 0")
    if w0 > 1.0:
        raise ModelError(
            f"--w0 {w0:g} cannot run on --engine spark: alpha = 1/w0 - 1 = {1.0 / w0 - 1.0:g} would be "
            "negative (observed pairs weighted below unobserved ones), which Spark's ALS rejects; "
            "use 0 < w0 <= 1")
    return 1.0 / w0 - 1.0


# regParam = reg (n_users + n_items) / (2 w0 nnz)  =  reg / (w0 * mean positives per trained row)
def spark_reg_param(reg: float, w0: float, n_user_rows: int, n_item_rows: int, nnz: int) -> float:
    """Spark's ``regParam`` so that the mean effective per-row reg over trained rows equals ``reg``.

    Spark regularises a row with n positives by regParam * n (in Spark's units, i.e. ours / w0), so
    the effective reg of that row in our objective is w0 * regParam * n. Averaging over the
    ``n_user_rows`` users and ``n_item_rows`` items with positives (their counts sum to 2 nnz) and
    setting the mean to ``reg`` gives the formula above.
    """
    spark_alpha(w0)
    if nnz <= 0 or n_user_rows + n_item_rows <= 0:
        raise ModelError("the training matrix has no interactions; nothing to learn")
    if not reg > 0:
        raise ModelError(f"--reg must be > 0, got {reg!r}")
    return float(reg) * (n_user_rows + n_item_rows) / (2.0 * float(w0) * nnz)


def effective_reg(reg_param: float, w0: float, counts: np.ndarray) -> np.ndarray:
    """Effective reg of each row in our objective's units: w0 * regParam * n (n = the row's positives)."""
    return float(w0) * float(reg_param) * np.asarray(counts, dtype=np.float64)


def als_params(params: dict[str, Any], seed: int, train: sp.csr_matrix, reg_param: float | None = None) -> dict:
    """Keyword arguments of ``pyspark.ml.recommendation.ALS`` for WALS ``params`` on ``train``.

    Parameters
    ----------
    params : WALS hyper-parameters (``factors``, ``w0``, ``reg``, ``iterations``).
    seed : our seed (Spark's initialisation is its own: the factors differ from the local ones).
    train : csr (n_users, n_items), the training positives.
    reg_param : explicit ``regParam`` (overrides :func:`spark_reg_param`).
    """
    train = sp.csr_matrix(train)
    n_u = int(np.count_nonzero(np.diff(train.indptr)))
    n_i = int(np.count_nonzero(np.bincount(train.indices, minlength=train.shape[1])))
    alpha = spark_alpha(params["w0"])
    rp = spark_reg_param(params["reg"], params["w0"], n_u, n_i, int(train.nnz)) if reg_param is None \
        else float(reg_param)
    if not rp > 0:
        raise ModelError(f"--spark-reg-param must be > 0, got {reg_param!r}")
    return {"implicitPrefs": True, "alpha": alpha, "rank": int(params["factors"]),
            "maxIter": int(params["iterations"]), "regParam": rp, "seed": int(seed), "nonnegative": False}


def lambda_relation(params: dict[str, Any], spark_params: dict, train: sp.csr_matrix,
                    reg_param_given: bool) -> dict:
    """What model.json records about the regularisation: the formula and the effective per-row spread."""
    train = sp.csr_matrix(train)
    nu = np.diff(train.indptr)
    ni = np.bincount(train.indices, minlength=train.shape[1])
    nu, ni = nu[nu > 0], ni[ni > 0]
    w0, rp = float(params["w0"]), float(spark_params["regParam"])

    def spread(c: np.ndarray) -> dict:
        e = effective_reg(rp, w0, c)
        return {"min": float(e.min()), "median": float(np.median(e)), "mean": float(e.mean()),
                "max": float(e.max())} if len(e) else {}

    return {
        "exact": False,
        "alpha": "alpha = 1/w0 - 1 (exact for binary data)",
        "regParam": ("given by --spark-reg-param" if reg_param_given else
                     "regParam = reg * (n_users + n_items) / (2 * w0 * nnz): the mean effective per-row reg "
                     "over trained rows equals reg"),
        "effective_reg": "Spark regularises each row by regParam * n (n = its positives, ALS-WR); in our "
                         "objective that is reg_row = w0 * regParam * n, not one constant reg",
        "reg": float(params["reg"]), "w0": w0, "regParam_value": rp,
        "effective_reg_users": spread(nu), "effective_reg_items": spread(ni),
    }


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings of ``--spark-conf`` -> dict (the value may contain '=')."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = str(p).partition("=")
        if not sep or not key.strip():
            raise SparkError(f"--spark-conf expects KEY=VALUE (e.g. spark.executor.memory=8g), got {p!r}")
        out[key.strip()] = value.strip()
    return out


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


# ---------------------------------------------------------------------------------------------
# pyspark and Java: lazy import, session


def java_major() -> int | None:
    """Major version of the ``java`` Spark would use (JAVA_HOME first, else PATH), or None if absent."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def require_pyspark() -> Any:
    """Import pyspark, or raise :class:`SparkError` saying exactly what to install."""
    try:
        import pyspark
        from pyspark.ml.recommendation import ALS  # noqa: F401
    except ImportError:
        raise SparkError(f"--engine spark needs pyspark, which is not installed: {INSTALL_HINT}") from None
    major = java_major()
    if major is None:
        raise SparkError(f"--engine spark needs Java, and no java was found: {INSTALL_HINT}")
    if major < MIN_JAVA:
        raise SparkError(f"--engine spark needs Java {MIN_JAVA} or newer, found Java {major}: {INSTALL_HINT}")
    return pyspark


def session_conf(master: str, conf: dict[str, str] | None = None) -> dict[str, str]:
    """The configuration :func:`spark_session` starts with: quiet, no UI, modest driver memory."""
    out = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.log.level": "ERROR",
           "spark.driver.memory": "2g", "spark.sql.adaptive.enabled": "true",
           "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_quiet_log4j()}"}
    if master.startswith("local"):
        out["spark.sql.shuffle.partitions"] = "8"
    out.update(conf or {})
    return out


_LOG4J = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def _quiet_log4j() -> str:
    """A log4j2 configuration (errors only) for the driver JVM, so Spark's start-up chatter stays quiet."""
    import tempfile

    path = Path(tempfile.gettempdir()) / "mfvsdnn-spark-log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J:
        path.write_text(_LOG4J)
    return str(path)


@contextlib.contextmanager
def spark_session(master: str = "local[*]", conf: dict[str, str] | None = None,
                  app_name: str = "mfvsdnn") -> Iterator[Any]:
    """A SparkSession for ``master`` with :func:`session_conf`; stopped on exit.

    The Python workers run this interpreter (``PYSPARK_PYTHON`` defaults to ``sys.executable``).
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for k, v in session_conf(master, conf).items():
        builder = builder.config(k, v)
    import warnings

    try:
        with warnings.catch_warnings():  # pyspark warns about pandas 3; mfvsdnn does not use pandas UDFs
            warnings.simplefilter("ignore", FutureWarning)
            spark = builder.getOrCreate()
    except Exception as e:  # the JVM did not start (bad master, bad conf, no Java)
        raise SparkError(f"cannot start Spark with --spark-master {master}: {str(e).strip().splitlines()[0]} "
                         f"({INSTALL_HINT})") from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


@contextlib.contextmanager
def _session_or(spark: Any, master: str, conf: dict[str, str] | None) -> Iterator[Any]:
    if spark is not None:
        yield spark
    else:
        with spark_session(master, conf) as s:
            yield s


# ---------------------------------------------------------------------------------------------
# reading with Spark: the same Dataset as the local loader, built from integer codes


def _resolve_header(source: str, header: list[str], spec: ColumnSpec) -> ColumnSpec:
    """:func:`mfvsdnn.data.resolve_header` on a header Spark read."""
    from ...data import resolve_header

    return resolve_header(Path(source), header, spec)


def _source_hash(spark: Any, source: str, frame: Any, cols: list[str]) -> str:
    """The input's hash for the split fingerprint: the file's SHA-256 for a local file (as the local
    loader), else an order-independent content hash of the used columns computed by Spark."""
    import hashlib

    from pyspark.sql import functions as F

    from ...data import file_sha256

    local = source[len("file://"):] if source.startswith("file://") else source
    if not is_uri(local) and Path(local).is_file():
        return file_sha256(local)
    h = F.xxhash64(*[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in cols])
    row = frame.agg(F.count(F.lit(1)).alias("n"), F.sum((h % (1 << 40)).cast("decimal(38,0)")).alias("s"),
                    F.sum((F.shiftright(h, 24) % (1 << 40)).cast("decimal(38,0)")).alias("t")).collect()[0]
    return hashlib.sha256(f"spark-content:{row['n']}:{row['s']}:{row['t']}:{cols}".encode()).hexdigest()


def _analysis_error(source: str, e: Exception) -> DataError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "PATH_NOT_FOUND" in msg or "does not exist" in msg:
        return DataError(f"{source}: no such file or directory (as seen by Spark)")
    return DataError(f"{source}: Spark cannot read it: {msg}")


def _to_double(col: str) -> Any:
    """``try_cast(col AS DOUBLE)``: null for non-numbers, also under ANSI mode (Spark 4's default)."""
    from pyspark.sql import functions as F

    c = col.replace("`", "``")
    return F.expr(f"try_cast(`{c}` AS DOUBLE)")


def _distinct_values(frame: Any, cols: list[str]) -> dict[str, np.ndarray]:
    """Sorted distinct string values of every column, in one Spark job (sorted as the local loader)."""
    from pyspark.sql import functions as F

    pairs = F.explode(F.array(*[F.struct(F.lit(k).alias("k"), F.col(c).alias("v")) for k, c in enumerate(cols)]))
    got: dict[int, list[str]] = {k: [] for k in range(len(cols))}
    for row in frame.select(pairs.alias("p")).select("p.k", "p.v").distinct().toLocalIterator(True):
        got[row[0]].append(str(row[1]))
    return {c: np.asarray(sorted(got[k]), dtype=object) for k, c in enumerate(cols)}


MAP_MAX = 20_000  # columns with at most this many values are coded by a literal map, larger ones by a join


def _code_column(frame: Any, col: str, cats: np.ndarray, out_col: str, spark: Any) -> Any:
    """Replace ``col`` by its integer code (index into the sorted ``cats``)."""
    from pyspark.sql import functions as F

    if len(cats) <= MAP_MAX:
        lookup = F.create_map(*[x for i, v in enumerate(cats) for x in (F.lit(str(v)), F.lit(i))])
        return frame.withColumn(out_col, lookup[F.col(col)]).drop(col)
    table = spark.createDataFrame([(str(v), i) for i, v in enumerate(cats)], f"`{col}` string, `{out_col}` int")
    return frame.join(table, on=col, how="inner").drop(col)


def read_dataset_spark(spark: Any, source: str, columns: ColumnSpec = ColumnSpec()) -> Dataset:
    """Read interactions with Spark into the :class:`Dataset` the local loader would build.

    CSV (plain or compressed; header row required, ``columns.sep``) or Parquet (a ``.parquet`` path or a
    directory of Parquet files). Rows are filtered (weight), deduplicated and coded in Spark; the driver
    receives one row per user: the user's code and a string of ``item|other codes`` per interaction.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

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
    sel = df.select(*[F.col(f"`{c}`").cast("string").alias(c) for c in cats_cols],
                    *[F.col(f"`{c}`").cast("string").alias(c) for c in num_cols if c not in cats_cols])
    try:
        checks = [F.count(F.lit(1)).alias("rows")]
        for c in (spec.user_col, spec.item_col, spec.item_group_col, spec.user_group_col):
            if c:
                checks.append(F.sum(F.col(c).isNull().cast("long")).alias(f"null:{c}"))
        if spec.weight_col:
            checks.append(F.sum((F.col(spec.weight_col).isNotNull()
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
        bad = sel.filter(F.col(spec.weight_col).isNotNull() & _to_double(spec.weight_col).isNull()) \
            .select(spec.weight_col).first()[0]
        raise DataError(f"{s}: column {spec.weight_col!r} (the weight) is not a number: {bad!r}")
    file_hash = _source_hash(spark, s, sel, cats_cols + num_cols)
    kept = "__kept"  # 1 where the weight passes the filter: ids and per-user values come from all rows,
    if spec.weight_col:  # as in the local loader; only kept rows become interactions
        w = _to_double(spec.weight_col)
        keep = w >= F.lit(float(spec.min_weight)) if spec.min_weight is not None else w > 0
        sel = sel.withColumn(kept, F.coalesce(keep, F.lit(False)).cast("int"))
        if sel.filter(F.col(kept) == 1).limit(1).count() == 0:
            thr = f">= {spec.min_weight}" if spec.min_weight is not None else "> 0"
            raise DataError(f"{s}: no interaction left: no row has {spec.weight_col!r} {thr}; lower --min-weight")
    for f in spec.user_features:
        sel = sel.withColumn(f, F.coalesce(F.col(f), F.lit("<missing>")))
    if spec.time_col:
        tc = spec.time_col.replace("`", "``")
        sel = sel.withColumn(spec.time_col, F.coalesce(
            _to_double(spec.time_col), F.expr(f"unix_micros(try_to_timestamp(`{tc}`))").cast("double") / 1e6))
        n_bad = sel.filter(F.col(spec.time_col).isNull()).count()
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
    enc = F.concat_ws(":", *[F.col(c).cast("string") for c in rest])
    per_user = sel.groupBy("_c0").agg(F.concat_ws(",", F.collect_list(enc)).alias("r"))
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
        from ...api import prepare_split

        return prepare_split(source, columns, split_cfg, test_path), route
    return make_split(read_dataset_spark(spark, str(source), columns), split_cfg), route


# ---------------------------------------------------------------------------------------------
# training


def ratings_frame(spark: Any, train: sp.csr_matrix) -> Any:
    """The training positives as a Spark DataFrame (user int, item int, rating float = 1).

    Sent through the driver as one string of item indices per user (no Arrow needed), exploded in Spark.
    """
    from pyspark.sql import functions as F

    m = sp.csr_matrix(train)
    ptr, idx = m.indptr, m.indices
    users = np.flatnonzero(np.diff(ptr) > 0)
    rows = [(int(u), ",".join(map(str, idx[ptr[u]:ptr[u + 1]].tolist()))) for u in users]
    # a local list (not an RDD): rows are unpickled in the JVM, so no Python worker has to start
    df = spark.createDataFrame(rows, "user int, items string", verifySchema=False)
    return df.select("user", F.explode(F.split("items", ",")).alias("item")) \
        .select("user", F.col("item").cast("int").alias("item"), F.lit(1.0).cast("float").alias("rating"))


def _factors(df: Any, n: int, d: int) -> np.ndarray:
    """Spark's (id, features) factor frame -> (n, d) float32; rows Spark never saw stay 0."""
    out = np.zeros((n, d), dtype=np.float32)
    for row in df.toLocalIterator():
        out[row[0]] = row[1]
    return out


def fit_als(spark: Any, train: sp.csr_matrix, params: dict,
            timings: dict | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit Spark's implicit ALS with ``params`` (:func:`als_params`) on ``train``.

    ``numBlocks`` in ``params`` sets numUserBlocks = numItemBlocks (default: the default parallelism,
    at least 2). ``timings`` (if given) receives the seconds spent moving data in and out of Spark.

    Returns (user factors (n_users, d), item factors (n_items, d), fit seconds). Users and items with
    no training positive get zero rows (so does the local WALS: their row solve has a zero right side).
    """
    from pyspark.ml.recommendation import ALS

    timings = timings if timings is not None else {}
    t_in = time.perf_counter()
    ratings = ratings_frame(spark, train).cache()
    ratings.count()  # materialise: the fit time below is ALS only
    params = dict(params)
    blocks = params.pop("numBlocks", None) or max(2, spark.sparkContext.defaultParallelism)
    als = ALS(userCol="user", itemCol="item", ratingCol="rating", coldStartStrategy="nan",
              numUserBlocks=blocks, numItemBlocks=blocks, **params)
    timings["transfer_in_seconds"] = time.perf_counter() - t_in
    t0 = time.perf_counter()
    try:
        model = als.fit(ratings)
        model.userFactors.count()  # force the last iteration
    except Exception as e:
        raise SparkError(f"Spark ALS failed: {str(e).strip().splitlines()[0]}") from None
    secs = time.perf_counter() - t0
    n_users, n_items = train.shape
    d = int(params["rank"])
    t_out = time.perf_counter()
    U = _factors(model.userFactors, n_users, d)
    V = _factors(model.itemFactors, n_items, d)
    timings["transfer_out_seconds"] = time.perf_counter() - t_out
    timings["blocks"] = blocks
    ratings.unpersist()
    return U, V, secs


def train_wals_spark(data: str | os.PathLike, columns: ColumnSpec, split_cfg: SplitConfig,
                     test_path: str | os.PathLike | None, params: dict[str, Any], out: str | os.PathLike | None,
                     *, master: str = "local[*]", conf: dict[str, str] | None = None, reader: str = "auto",
                     reg_param: float | None = None, num_blocks: int | None = None, spark: Any = None,
                     progress: ProgressFn = no_progress) -> Any:
    """``train-wals --engine spark``: read and split DATA, fit Spark ALS, save a WALS run.

    The run is the local format (kind "wals", :meth:`WALS.from_factors`), plus ``engine: "spark"`` and a
    ``spark`` entry in model.json (master, ALS parameters, reader, the lambda relation). Returns an
    :class:`mfvsdnn.api.TrainResult`.

    Parameters
    ----------
    params : WALS hyper-parameters (validated first; w0 is checked against Spark before Spark starts).
    master, conf : Spark master URL and extra configuration (ignored when ``spark`` is given).
    reader : "auto", "pandas" or "spark" (:func:`choose_reader`).
    reg_param : explicit Spark ``regParam`` instead of :func:`spark_reg_param`.
    num_blocks : ALS numUserBlocks = numItemBlocks (default: Spark's default parallelism, at least 2).
    """
    from ...core.fsutil import claim_unless_staged
    from ...models.wals import WALS

    wp = WALS(**params).get_params()  # our validation first (w0 in [0, 1), reg > 0, ...)
    spark_alpha(wp["w0"])
    choose_reader(str(data), reader, test_path)  # refuse bad combinations before starting Spark
    with claim_unless_staged(out, "run", option="--out", inputs=(data, test_path)):  # before Spark starts
        return _train_wals_spark(data, columns, split_cfg, test_path, wp, out, master, conf, reader, reg_param,
                                 num_blocks, spark, progress)


def _train_wals_spark(data: Any, columns: ColumnSpec, split_cfg: SplitConfig, test_path: Any, wp: dict,
                      out: Any, master: str, conf: Any, reader: str, reg_param: float | None,
                      num_blocks: int | None, spark: Any, progress: ProgressFn) -> Any:
    from ...api import TrainResult
    from ...evaluation.evaluator import validation_recall
    from ...models.store import save_run
    from ...models.wals import WALS, objective

    source = str(data)
    total = 4
    t_start = time.perf_counter()
    with _session_or(spark, master, conf) as s:
        progress(0, total, {})
        split, route = read_split(s, source, columns, split_cfg, test_path, reader)
        progress(1, total, {})
        train = split.train_set()
        ap = als_params(wp, split_cfg.seed, train.matrix, reg_param)
        progress(2, total, {})
        timings: dict = {}
        U, V, fit_secs = fit_als(s, train.matrix, {**ap, "numBlocks": num_blocks}, timings)
        progress(3, total, {})
        sc = s.sparkContext
        spark_info = {"master": sc.master, "version": s.version, "default_parallelism": sc.defaultParallelism,
                      "conf": dict(conf or {}) if spark is None else {}}
    R = sp.csr_matrix(train.matrix)
    f = objective(R.indptr.astype(np.int64), R.indices.astype(np.int32), U, V, wp["w0"], wp["reg"])
    n_it = wp["iterations"]
    # Spark does not report per-iteration times: each entry carries the mean (fit seconds / iterations)
    history = [{"iteration": i, "seconds": fit_secs / n_it, "seconds_is_mean": 1.0} for i in range(1, n_it + 1)]
    history[-1]["objective"] = f
    model = WALS.from_factors(wp, U, V, train, {"train_seconds": fit_secs, "history": history})
    vr = validation_recall(model, train, k=20, rng=np.random.default_rng(split_cfg.seed + 1))
    spark_meta = {
        **spark_info, "reader": route, "als_params": ap,
        "lambda_relation": lambda_relation(wp, ap, train.matrix, reg_param is not None),
        "fit_seconds": fit_secs, **timings, "total_seconds": time.perf_counter() - t_start,
        "objective_note": "objective = our WALS objective at Spark's final factors (Spark reports none per "
                          "iteration); history seconds are fit_seconds / iterations",
    }
    extra = {"valid_recall@20": vr, "engine": "spark", "spark": spark_meta}
    run_dir = save_run(out, model, split, split_cfg.seed, extra=extra) if out else None
    summary = {
        "kind": "wals", "engine": "spark", "run_dir": str(run_dir) if run_dir else None, "params": wp,
        "seed": split_cfg.seed, "train_seconds": fit_secs, "valid_recall@20": vr, "history": history,
        "split": split.summary(), "spark": spark_meta,
    }
    return TrainResult(model, split, run_dir, fit_secs, vr, summary)


# ---------------------------------------------------------------------------------------------
# compare --engine spark: warm-user metrics scored in Spark


def _score_chunk(chunk: tuple, V: np.ndarray, item_groups: np.ndarray | None, ks: tuple[int, ...],
                 item_percentile: np.ndarray) -> list[tuple]:
    """One chunk of warm users, on an executor: top-max(k) and the local evaluator's metric functions.

    chunk = (user indices (q,), Q (q, d), exclude indptr/indices, target indptr/indices, user_group (q,)).
    Returns one tuple per user: (user, recall@k, ndcg@k, leakage@k for each k ..., natural cross rate).
    """
    from ...core.topk import top_k
    from ...evaluation.evaluator import metric_arrays

    users, Q, ex_ptr, ex_idx, tg_ptr, tg_idx, ug = chunk
    n_items = V.shape[0]
    exclude = sp.csr_matrix((np.ones(len(ex_idx), np.float32), ex_idx, ex_ptr), shape=(len(users), n_items))
    targets = sp.csr_matrix((np.ones(len(tg_idx), np.float32), tg_idx, tg_ptr), shape=(len(users), n_items))
    tk = top_k(Q, V, exclude, max(ks))
    per, _ = metric_arrays(tk, targets, ks, item_percentile, item_groups, ug)
    names = metric_names(ks, item_groups is not None and ug is not None)
    cols = [per[n] for n in names]
    return [(int(u), *[float(c[i]) for c in cols]) for i, u in enumerate(users)]


def metric_names(ks: tuple[int, ...], groups: bool) -> list[str]:
    """The warm-user metrics ``compare --engine spark`` computes, in column order."""
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    if groups:
        names += [f"leakage@{k}" for k in ks] + ["natural_cross_rate"]
    return names


def warm_metrics_spark(spark: Any, model: Any, split: Split, ks: tuple[int, ...] = (10, 20, 50),
                       users_per_task: int = 2048) -> dict:
    """Warm-user recall@k, NDCG@k and leakage@k with the scoring in Spark.

    The driver embeds the warm test users (``model.query_vectors``, as the local evaluator) and ships
    them in chunks of ``users_per_task``; each Spark task scores its chunk against the broadcast item
    vectors with the local evaluator's ``top_k`` and ``metric_arrays`` (so the definitions are the
    same), and Spark averages the per-user values (NaN = undefined, left out, as ``nanmean``).
    Returns {"users": q, "means": {metric: mean}, "seconds": ...}.
    """
    from pyspark.sql import functions as F

    from ...evaluation.evaluator import item_popularity
    from ...evaluation.populations import populations

    t0 = time.perf_counter()
    pop = populations(split)[0]
    Q = np.asarray(model.query_vectors(pop.histories, pop.features, users=pop.model_users), dtype=np.float32)
    V = np.asarray(model.item_vectors, dtype=np.float32)
    groups = split.dataset.item_groups if pop.user_group is not None else None
    pct = item_popularity(split)
    chunks = []
    for s in range(0, len(pop.users), users_per_task):
        e = min(len(pop.users), s + users_per_task)
        ex, tg = pop.exclude[s:e], pop.targets[s:e]
        ug = pop.user_group[s:e] if pop.user_group is not None else None
        chunks.append((pop.users[s:e], Q[s:e], ex.indptr, ex.indices, tg.indptr, tg.indices, ug))
    sc = spark.sparkContext
    bV, bG, bP = sc.broadcast(V), sc.broadcast(groups), sc.broadcast(pct)
    ks_ = tuple(ks)
    rows = sc.parallelize(chunks, max(1, len(chunks))).flatMap(
        lambda c: _score_chunk(c, bV.value, bG.value, ks_, bP.value))
    names = metric_names(ks_, groups is not None)
    schema = "user long, " + ", ".join(f"`{n}` double" for n in names)
    df = spark.createDataFrame(rows, schema)
    aggs = [F.avg(F.when(~F.isnan(F.col(f"`{n}`")), F.col(f"`{n}`"))).alias(n) for n in names]
    res = df.agg(F.count(F.lit(1)).alias("users"), *aggs).collect()[0].asDict()
    for b in (bV, bG, bP):
        b.unpersist()
    return {"users": int(res.pop("users")), "means": {k: (float(v) if v is not None else float("nan"))
                                                       for k, v in res.items()},
            "seconds": time.perf_counter() - t0}


def compare_spark(data: str | os.PathLike, columns: ColumnSpec, split_cfg: SplitConfig,
                  test_path: str | os.PathLike | None, *, runs: dict[str, Any] | None = None,
                  params: dict[str, dict] | None = None, ks: tuple[int, ...] = (10, 20, 50),
                  report_dir: str | os.PathLike = "reports", runs_dir: str | os.PathLike | None = None,
                  master: str = "local[*]", conf: dict[str, str] | None = None, reader: str = "auto",
                  spark: Any = None) -> tuple[dict, dict[str, Path]]:
    """``compare --engine spark``: warm-user recall@k, NDCG@k, leakage@k of each run, scored in Spark.

    Runs given in ``runs`` (kind -> run directory) are loaded and checked against DATA's split
    fingerprint; without a WALS run, WALS is trained here on Spark (``params["wals"]``) into
    ``runs_dir/wals``. The softmax DNN is evaluated only when its run is given (it is not trained on
    Spark). Writes report.json and report.md to ``report_dir``; returns (report, paths).
    """
    import contextlib

    from ...core.errors import EvaluationError
    from ...core.fsutil import claim_output

    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise EvaluationError(f"--k must be positive integers, got {ks}")
    with contextlib.ExitStack() as held:
        claim = held.enter_context(claim_output(report_dir, "compare", option="--report-dir",
                                                inputs=(data, test_path)))
        return _compare_spark(claim, held, data, columns, split_cfg, test_path, runs, params, ks, report_dir,
                              runs_dir, master, conf, reader, spark)


def _compare_spark(claim: Any, held: Any, data: Any, columns: ColumnSpec, split_cfg: SplitConfig, test_path: Any,
                   runs: Any, params: Any, ks: tuple[int, ...], report_dir: Any, runs_dir: Any, master: str,
                   conf: Any, reader: str, spark: Any) -> tuple[dict, dict[str, Path]]:
    from ...api import _check_runs, run_outputs
    from ...core.fsutil import os_errors, write_new
    from ...data import summarize
    from ...models.store import json_text, load_run

    runs = {k: v for k, v in (runs or {}).items() if v}
    params = dict(params or {})
    loaded = {kind: load_run(runs[kind]) if kind in runs else None for kind in ("wals", "softmax")}
    _check_runs(loaded, None, data)
    if loaded["wals"] is None:  # validate before Spark starts
        from ...models.wals import WALS

        spark_alpha(WALS(**params.get("wals", {})).w0)
    choose_reader(data, reader, test_path)
    stage = claim.staging()
    outs = run_outputs(claim, stage, held, loaded, ["wals"] if loaded["wals"] is None else [],
                       Path(runs_dir) if runs_dir else Path(report_dir) / "runs", (data, test_path))
    models: dict[str, dict] = {}
    with _session_or(spark, master, conf) as s:
        split, route = read_split(s, str(data), columns, split_cfg, test_path, reader)
        _check_runs(loaded, split, data)
        for kind in ("wals", "softmax"):
            info: dict[str, Any]
            if loaded[kind] is not None:
                r = loaded[kind]
                model = r.model
                info = {"run_dir": str(r.path), "trained_here": False, "engine": r.meta.get("engine", "local"),
                        "params": r.meta["params"], "train_seconds": r.meta.get("train_seconds")}
            elif kind == "wals":
                res = train_wals_spark(data, columns, split_cfg, test_path, params.get("wals", {}), outs["wals"][0],
                                       reader=reader, spark=s)
                model = res.model
                info = {"run_dir": str(outs["wals"][1]), "trained_here": True, "engine": "spark",
                        "params": res.summary["params"], "train_seconds": res.train_seconds}
            else:
                continue
            ev = warm_metrics_spark(s, model, split, ks)
            models[kind] = {"kind": kind, **info, "warm": ev}
        sc = s.sparkContext
        spark_info = {"master": sc.master, "version": s.version, "reader": route}
    report = {
        "engine": "spark", "spark": spark_info, "dataset": summarize(split.dataset), "split": split.summary(),
        "settings": {"seed": split_cfg.seed, "ks": list(ks)},
        "models": models,
        "available": "warm users: recall@k, NDCG@k, leakage@k and the natural cross-group rate (means over "
                     "users, the local evaluator's definitions)",
        "not_available": "with --engine spark: bootstrap intervals and paired tests, precision, hit rate, "
                         "coverage, popularity, the cold-start populations, serving cost, embedding maps and "
                         "plots (report.html); run compare without --engine spark for those",
    }
    out = Path(report_dir)
    paths = {"json": out / "report.json", "md": out / "report.md"}
    with os_errors(str(report_dir)):
        write_new(stage / "report.json", json_text(report))
        write_new(stage / "report.md", spark_compare_markdown(report))
    claim.commit(stage)
    return report, paths


def spark_compare_markdown(report: dict) -> str:
    """report.md of ``compare --engine spark``: one table of warm-user means per model."""
    ks = report["settings"]["ks"]
    kinds = list(report["models"])
    names = sorted({n for m in report["models"].values() for n in m["warm"]["means"]},
                   key=lambda n: (n.split("@")[0], int(n.split("@")[1]) if "@" in n else 0))
    lines = [f"# mfvsdnn compare (--engine spark, {report['spark']['master']})", "",
             f"Warm test users, k in {ks}. {report['available']}.", "",
             "| metric | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for n in names:
        vals = [report["models"][k]["warm"]["means"].get(n, float("nan")) for k in kinds]
        lines.append(f"| {n} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    lines += ["", "Users scored: " + ", ".join(f"{k} {report['models'][k]['warm']['users']:,}" for k in kinds), "",
              f"Not in this mode: {report['not_available']}.", ""]
    return "\n".join(lines)
