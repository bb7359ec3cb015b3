"""Column values: ids, groups and features as text coded to integers; weights and times as float64.

Nothing is inferred from how a value looks: text stays text (``007`` is not ``7``), and only a field
that is empty after the whitespace rule is missing. Vectorised in Arrow and numpy; Python loops run
over distinct values at most, never over rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import DataError
from .columns import BLANKS

# Decimal numbers: 5, -1.5, .5, 5., +2, 1e9, 1.5E-3. No inf/nan, thousands separators or hex.
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_DAY = 86400

Where = Callable[[Sequence[int]], list[str]]  # rows of one file -> "line N" / "row N"


@dataclass
class Coded:
    """A text column as integers: ``labels[codes[r]]`` is row r's value; ``codes`` is -1 where missing."""

    codes: np.ndarray  # int32, (n_rows,)
    labels: np.ndarray  # object array of str, sorted, each used by at least one row

    def first_missing(self) -> int | None:
        miss = np.flatnonzero(self.codes < 0)
        return int(miss[0]) if len(miss) else None


# ----------------------------------------------------------------------------------------------
# text


def _np(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow -> numpy, copying where needed (ChunkedArray.to_numpy takes no arguments in older pyarrow)."""
    return values.to_numpy() if isinstance(values, pa.ChunkedArray) else values.to_numpy(zero_copy_only=False)


def _text_type_error(path: Path, col: str, t: pa.DataType) -> DataError:
    hint = (" (1.0 and 1 would be different ids; cast the column to integers or strings)"
            if pa.types.is_floating(t) else "; convert the column to strings or integers")
    return DataError(f"{path}: column {col!r} holds {t} values; ids, groups and features must be text or "
                     f"integers{hint}")


def _as_text(values: pa.Array, path: Path, col: str) -> pa.Array:
    """Values of a text column as ``large_string``: strings unchanged, integers as decimal text."""
    t = values.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), pa.large_string())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return values.cast(pa.large_string())
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return values.cast(pa.string()).cast(pa.large_string())
    raise _text_type_error(path, col, t)


def dictionary_form(col: pa.ChunkedArray, path: Path, name: str) -> tuple[np.ndarray, pa.Array]:
    """(indices, dictionary) of a column: int32 indices into a large_string dictionary, -1 where null."""
    if pa.types.is_null(col.type):
        return np.full(len(col), -1, dtype=np.int32), pa.array([], pa.large_string())
    if pa.types.is_dictionary(col.type):
        chunks = col.unify_dictionaries().chunks
        dictionary = chunks[0].dictionary if chunks else pa.array([], col.type.value_type)
        indices = [c.indices for c in chunks]
    else:
        encoded = pc.dictionary_encode(col).unify_dictionaries() if col.num_chunks else None
        chunks = encoded.chunks if encoded is not None else []
        dictionary = chunks[0].dictionary if chunks else pa.array([], col.type)
        indices = [c.indices for c in chunks]
    idx = (np.concatenate([_np(i.cast(pa.int32()).fill_null(-1)) for i in indices])
           if indices else np.zeros(0, dtype=np.int32))
    return idx, _as_text(dictionary, path, name)


def merge_forms(forms: list[tuple[np.ndarray, pa.Array]]) -> tuple[np.ndarray, pa.Array]:
    """One (indices, dictionary) for the rows of several files, in order."""
    if len(forms) == 1:
        return forms[0]
    offsets = np.cumsum([0] + [len(d) for _, d in forms[:-1]]).astype(np.int32)
    idx = np.concatenate([np.where(i >= 0, i + off, np.int32(-1)) for (i, _), off in zip(forms, offsets)])
    return idx, pa.concat_arrays([d for _, d in forms])


def code_text(indices: np.ndarray, dictionary: pa.Array) -> Coded:
    """Sorted labels after the whitespace rule (values equal after it are one label) and row codes."""
    trimmed = pc.utf8_trim(dictionary.fill_null(""), characters=BLANKS)
    labels = pc.unique(trimmed)
    labels = labels.take(pc.sort_indices(labels))  # UTF-8 byte order = code point order = Python's
    remap = _np(pc.index_in(trimmed, value_set=labels)).astype(np.int32)
    if len(labels) and labels[0].as_py() == "":  # "" sorts first: an empty field is missing
        labels, remap = labels[1:], remap - 1
    codes = np.append(remap, np.int32(-1))[indices]  # index -1 (null) picks the appended -1
    used = np.bincount(codes[codes >= 0], minlength=len(labels)) > 0
    names = np.asarray(labels.to_pylist(), dtype=object)
    if not used.all():  # labels no row uses (unused dictionary entries) do not become users or items
        keep = (np.cumsum(used) - 1).astype(np.int32)
        codes = np.where(codes >= 0, keep[np.maximum(codes, 0)], np.int32(-1))
        names = names[used]
    return Coded(codes.astype(np.int32, copy=False), names)


def with_label(coded: Coded, label: str) -> Coded:
    """Missing values replaced by ``label``, inserted in sorted order."""
    if coded.first_missing() is None:
        return coded
    names = np.asarray(sorted(set(coded.labels.tolist()) | {label}), dtype=object)
    remap = np.searchsorted(names, coded.labels).astype(np.int32) if len(coded.labels) else np.zeros(0, np.int32)
    at = int(np.searchsorted(names, np.asarray([label], dtype=object))[0])
    codes = np.where(coded.codes >= 0, np.append(remap, 0)[coded.codes], at).astype(np.int32)
    return Coded(codes, names)


# ----------------------------------------------------------------------------------------------
# numbers and times


def _values_at(col: pa.ChunkedArray, rows: np.ndarray) -> list:
    return col.take(pa.array(rows, pa.int64())).to_pylist()


def _refuse_missing(path: Path, where: Where, col: str, what: str, missing: np.ndarray) -> None:
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        raise DataError(f"{path}: {where([r])[0]}: column {col!r} is empty ({what} is required on every row)")


def _trimmed_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text under the whitespace rule; a null (Parquet) is an empty field."""
    return pc.utf8_trim(col.cast(pa.large_string()), characters=BLANKS).fill_null("")


def _number_mask(text: pa.ChunkedArray) -> np.ndarray:
    return _np(pc.match_substring_regex(text, NUMBER).fill_null(False))


def _to_float(text: pa.ChunkedArray) -> np.ndarray:
    """Text already matching NUMBER as float64 (a leading + dropped: not every pyarrow parses it)."""
    return _np(pc.replace_substring_regex(text, pattern=r"^\+", replacement="").cast(pa.float64()))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _finite(path: Path, where: Where, col: str, what: str, col_values: pa.ChunkedArray,
            out: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(out)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {where([r])[0]}: column {col!r} ({what}) is not a finite number: "
                        f"{_values_at(col_values, np.array([r]))[0]!r}")
    return out


def parse_numbers(col: pa.ChunkedArray, path: Path, where: Where, name: str, what: str) -> np.ndarray:
    """A weight-like column as float64: numbers as stored, or text holding decimal numbers."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if _is_numeric(t):
        _refuse_missing(path, where, name, what, _np(col.is_null()))
        out = col.cast(pa.float64()).to_numpy()
        return _finite(path, where, name, what, col, out)
    if not _is_text(t):
        raise DataError(f"{path}: column {name!r} ({what}) holds {t} values, expected numbers")
    text = _trimmed_text(col)
    _refuse_missing(path, where, name, what, _np(pc.utf8_length(text)) == 0)
    ok = _number_mask(text)
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}: {where([r])[0]}: column {name!r} ({what}) is not a number: "
                        f"{_values_at(text, np.array([r]))[0]!r}")
    out = _to_float(text)
    return _finite(path, where, name, what, text, out)


def _seconds(i8: np.ndarray, per_second: int) -> np.ndarray:
    """Integer counts of 1/per_second s as float64 seconds: whole seconds exact, one rounding for the rest."""
    whole = np.floor_divide(i8, per_second)
    return whole.astype(np.float64) + (i8 - whole * per_second).astype(np.float64) / per_second


def _iso_seconds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 dates/timestamps as Unix seconds, and which parsed. Naive ones are UTC."""
    idx = pd.to_datetime(pd.Index(values, dtype=object), utc=True, format="ISO8601", errors="coerce")
    ok = ~np.asarray(idx.isna())
    return _seconds(np.asarray(idx.asi8), _PER_SECOND[idx.unit]), ok


def _time_text(text: pa.ChunkedArray, path: Path, where: Where, name: str) -> np.ndarray:
    is_number = _number_mask(text)
    out = np.full(len(text), np.nan)
    if is_number.any():
        out[is_number] = _to_float(text.filter(pa.array(is_number)))
    if is_number.all():
        return out
    others = np.flatnonzero(~is_number)
    secs, ok = _iso_seconds(np.asarray(_values_at(text, others), dtype=object))
    if not ok.all():
        r = int(others[np.flatnonzero(~ok)[0]])
        raise DataError(f"{path}: {where([r])[0]}: column {name!r} (the time) is neither a number nor an ISO 8601 "
                        f"date: {_values_at(text, np.array([r]))[0]!r}")
    if is_number.any():
        n_num, n_date = int(is_number.sum()), len(others)
        minority, kind, major = ((others[0], "the date", "numbers") if n_date <= n_num
                                 else (int(np.flatnonzero(is_number)[0]), "the number", "dates"))
        raise DataError(f"{path}: column {name!r} (the time) mixes numbers and dates: {where([int(minority)])[0]} "
                        f"has {kind} {_values_at(text, np.array([minority]))[0]!r} while "
                        f"{max(n_num, n_date)} of {len(text)} rows hold {major}; use one kind")
    out[others] = secs
    return out


def parse_times(col: pa.ChunkedArray, path: Path, where: Where, name: str) -> np.ndarray:
    """A time column as float64 Unix seconds.

    Numbers are taken as given; ISO 8601 dates and timestamps (text, or Parquet timestamp/date columns)
    are converted exactly (naive = UTC), whatever resolution pandas or Arrow would use.
    """
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    what = "the time"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        _refuse_missing(path, where, name, what, _np(col.is_null()))
        if pa.types.is_date32(t):
            return col.cast(pa.int32()).to_numpy().astype(np.float64) * _DAY
        if pa.types.is_date64(t):
            return _seconds(col.cast(pa.int64()).to_numpy(), 1000)
        return _seconds(col.cast(pa.int64()).to_numpy(), _PER_SECOND[t.unit])
    if _is_numeric(t):
        return parse_numbers(col, path, where, name, what)
    if not _is_text(t):
        raise DataError(f"{path}: column {name!r} (the time) holds {t} values, expected numbers or dates")
    text = _trimmed_text(col)
    _refuse_missing(path, where, name, what, _np(pc.utf8_length(text)) == 0)
    out = _time_text(text, path, where, name)
    return _finite(path, where, name, what, text, out)
