"""Per-user metric values of a run, as one long table (``compare --per-user NAME``).

One row per (model, model seed, population, user, metric, k): the values the means, intervals and
paired tests of the report are computed from, so a reader can recompute any of them, slice them by
their own user attributes, or run their own test. Users are the data's raw ids (strings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import EvaluationError

COLUMNS = ("model", "seed", "population", "revealed", "user", "metric", "k", "value")
SUFFIXES = (".csv", ".parquet")


def check_name(name: str | None) -> str | None:
    """The file name ``--per-user`` may take: a bare name ending .csv or .parquet (it is written inside
    the report folder, which the tool owns, with the other reports). Refused before any data is read."""
    if name is None:
        return None
    text = str(name)
    if not text or Path(text).name != text or text in (".", ".."):
        raise EvaluationError(f"--per-user takes a file name written inside --report-dir (e.g. per_user.parquet), "
                              f"not a path: got {text!r}")
    if Path(text).suffix.lower() not in SUFFIXES:
        raise EvaluationError(f"--per-user {text}: the name must end in .csv or .parquet")
    if text in ("report.json", "report.md", "report.html", "runs"):
        raise EvaluationError(f"--per-user {text}: that name is one of the report's own files")
    return text


def per_user_table(evals: dict[str, list[dict[str, Any]]], user_ids: Any) -> Any:
    """The long table (a pyarrow Table with :data:`COLUMNS`) of every per-user value in ``evals``
    (model name -> one ``{population: PopulationEval}`` per model seed)."""
    import pyarrow as pa

    ids = np.asarray(user_ids, dtype=object)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    for model, seeds in evals.items():
        for seed, pops in enumerate(seeds):
            for ev in pops.values():
                users = ids[np.asarray(ev.users, dtype=np.int64)]
                q = len(users)
                kind = "warm" if ev.revealed is None else "cold"
                for (metric, k), values in ev.per_user.items():
                    parts["model"].append(np.full(q, model, dtype=object))
                    parts["seed"].append(np.full(q, seed, dtype=np.int32))
                    parts["population"].append(np.full(q, kind, dtype=object))
                    parts["revealed"].append(np.full(q, -1 if ev.revealed is None else ev.revealed, dtype=np.int32))
                    parts["user"].append(users)
                    parts["metric"].append(np.full(q, metric, dtype=object))
                    parts["k"].append(np.full(q, -1 if k is None else k, dtype=np.int32))
                    parts["value"].append(np.asarray(values, dtype=np.float64))
    arrays = {}
    for c in COLUMNS:
        joined = np.concatenate(parts[c]) if parts[c] else np.array([], dtype=object)
        if c in ("revealed", "k"):  # -1 stands for "none" above: null in the table
            arrays[c] = pa.array(joined.astype(np.int32), mask=joined == -1)
        elif c in ("seed",):
            arrays[c] = pa.array(joined.astype(np.int32))
        elif c == "value":
            arrays[c] = pa.array(joined.astype(np.float64), from_pandas=True)  # NaN: undefined for that user
        else:
            arrays[c] = pa.array(joined.tolist(), type=pa.string())
    return pa.table(arrays)


def per_user_bytes(table: Any, name: str) -> bytes:
    """The table as the file ``name`` asks for: Parquet (pyarrow) or CSV (header, NaN as empty)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    if name.lower().endswith(".parquet"):
        pq.write_table(table, sink)
    else:
        pcsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()
