"""Spark availability (pyspark and Java) and the SparkSession mfvsdnn starts: quiet, no UI, modest memory.

pyspark is imported lazily by :func:`require_pyspark`, which says exactly what to install when it or
Java is missing; nothing else in mfvsdnn needs either.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...core.errors import MfvsdnnError

INSTALL_HINT = ("install the Spark extra with  pip install 'mfvsdnn[spark]'  (it brings pyspark) and Java 17 "
                "or newer (java on PATH, or JAVA_HOME set)")
MIN_JAVA = 17


class SparkError(MfvsdnnError):
    """Spark is unavailable, cannot start, or failed on the data."""


def first_line(e: BaseException) -> str:
    """The informative first line of an exception from Spark (Py4J puts "An error occurred while
    calling ..." first; the cause follows on the next line)."""
    lines = [ln.strip(" :") for ln in str(e).splitlines() if ln.strip(" :")]
    if lines and lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        return lines[1]
    return lines[0] if lines else type(e).__name__


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings of ``--spark-conf`` -> dict (the value may contain '=')."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = str(p).partition("=")
        if not sep or not key.strip():
            raise SparkError(f"--spark-conf expects KEY=VALUE (e.g. spark.executor.memory=8g), got {p!r}")
        out[key.strip()] = value.strip()
    return out


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


#: lines the JVM, Spark and netlib print on stderr at start-up whatever the log level: the JVM's note on
#: incubator modules, Spark's "Setting default log level" banner (printed before any log4j configuration
#: is read), and netlib's failed look-up of a native BLAS (it then uses its Java one)
STARTUP_NOISE = re.compile(r"(WARNING: Using incubator modules|Setting default log level to|To adjust logging "
                           r"level use sc\.setLogLevel|Setting Spark log level to|netlib-\w+: JNI_OnLoad|"
                           r"Using Spark's default log4j profile)")


def _relay(stream: Any, sink: Any) -> None:
    """Copy the JVM's stderr to ours, without the :data:`STARTUP_NOISE` lines (errors still show)."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if not STARTUP_NOISE.match(line):
            sink.write(line)
            sink.flush()


def _start_quiet_jvm(settings: dict[str, str]) -> None:
    """Start Spark's JVM (once per process) with its stderr read through :func:`_relay`.

    Spark's log level cannot reach these lines, which come before it is applied or from outside log4j.
    pyspark starts the JVM itself when it is not running yet; a JVM already running (an earlier
    session, or a driver started by spark-submit) is used as it is.
    """
    import threading
    from subprocess import PIPE

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    spark_conf = SparkConf(loadDefaults=False).setAll(list(settings.items()))
    gateway = launch_gateway(spark_conf, popen_kwargs={"stderr": PIPE})
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stderr is not None:
        threading.Thread(target=_relay, args=(proc.stderr, sys.__stderr__), daemon=True,
                         name="spark-stderr").start()
    SparkContext._ensure_initialized(gateway=gateway)  # pyspark's own hook for a gateway started outside


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
    settings = session_conf(master, conf)
    builder = SparkSession.builder.master(master).appName(app_name)
    for k, v in settings.items():
        builder = builder.config(k, v)
    import warnings

    try:
        with warnings.catch_warnings():  # pyspark warns about pandas 3; mfvsdnn does not use pandas UDFs
            warnings.simplefilter("ignore", FutureWarning)
            _start_quiet_jvm({**settings, "spark.master": master, "spark.app.name": app_name})
            spark = builder.getOrCreate()
    except Exception as e:  # the JVM did not start (bad master, bad conf, no Java)
        raise SparkError(f"cannot start Spark with --spark-master {master}: {first_line(e)} "
                         f"({INSTALL_HINT})") from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


@contextlib.contextmanager
def session_or(spark: Any, master: str, conf: dict[str, str] | None) -> Iterator[Any]:
    """``spark`` itself when given (left running), else a new :func:`spark_session` (stopped on exit)."""
    if spark is not None:
        yield spark
    else:
        with spark_session(master, conf) as s:
            yield s


def session_info(spark: Any) -> dict:
    """Where a session runs: master URL, Spark version, default parallelism."""
    sc = spark.sparkContext
    return {"master": sc.master, "version": spark.version, "default_parallelism": sc.defaultParallelism}
