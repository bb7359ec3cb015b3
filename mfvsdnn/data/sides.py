"""Values that belong to a user or an item: taken from the interaction rows or joined from a side table.

A side table (``--user-file``, ``--item-file``) has one row per user or item: its id column and the
groups or features the options name, as in MovieLens's ``u.user``, RecBole's ``.user``/``.item`` or the
restaurant data's ``userprofile.csv``. It is read under the interaction file's rules (ids as text, the
whitespace rule, compression and Parquet, line-numbered messages). The join rules:

- an id may repeat only with the same values; different values are refused, naming both lines;
- ids of the side table that the interactions do not have are ignored (and counted);
- users or items of the interactions that the side table lacks get the feature value ``<missing>``
  (the value of an empty field); a group is required, so a lacking group is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import DataError
from .columns import SIDE_OPTIONS, SideHeader, parse_sep
from .sources import Source, read_columns, read_header
from .values import Coded, code_text, dictionary_form

# delimiters tried, in order, on a side table whose header is one field under --sep (e.g. RecBole's
# tab-separated files beside a comma-separated interaction file)
SIDE_SEPS = ("\t", ",", ";", "|")


class Rows:
    """The rows of one or more files, one after the other; names a row by its file and line."""

    def __init__(self, sources: list[Source]):
        self.sources = sources
        self.starts = np.cumsum([0] + [s.n_rows for s in sources])

    def locate(self, rows: Sequence[int]) -> list[tuple[Path, str]]:
        which = np.searchsorted(self.starts[1:], rows, side="right")
        out: list[tuple[Path, str]] = [(Path(), "")] * len(rows)
        for k in sorted(set(which.tolist())):
            sel = [j for j, w in enumerate(which) if w == k]
            names = self.sources[k].where([int(rows[j] - self.starts[k]) for j in sel])
            for j, name in zip(sel, names, strict=True):
                out[j] = (self.sources[k].path, name)
        return out


def require(coded: Coded, rows: Rows, col: str, what: str) -> None:
    r = coded.first_missing()
    if r is not None:
        path, where = rows.locate([r])[0]
        raise DataError(f"{path}: {where}: column {col!r} is empty ({what} is required on every row)")


def per_entity(rows: Rows, owner: np.ndarray, values: np.ndarray, n: int, col: str,
               owner_name: str, owner_ids: np.ndarray, value_names: np.ndarray) -> np.ndarray:
    """Value of a column that must be constant per owner (user or item). Shape (n,); -1 for no row."""
    order = np.argsort(owner, kind="stable")
    o, v = owner[order], values[order]
    clash = (o[1:] == o[:-1]) & (v[1:] != v[:-1])
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        (p1, w1), (p2, w2) = rows.locate([int(order[k]), int(order[k + 1])])
        second = w2 if p2 == p1 else f"{w2} of {p2}"

        def shown(code: int) -> str:
            return repr(value_names[code]) if code >= 0 else "an empty field"

        raise DataError(
            f"{p1}: column {col!r} must be constant per {owner_name}, but {owner_name} "
            f"{owner_ids[o[k]]!r} has {shown(v[k])} on {w1} and {shown(v[k + 1])} on {second}"
        )
    out = np.full(n, -1, dtype=np.int32)
    out[o] = v
    return out


def _used_labels_only(codes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop labels only ignored side rows had, so they become no group or feature value."""
    used = np.bincount(codes[codes >= 0], minlength=len(labels)) > 0
    if used.all():
        return codes, labels
    keep = (np.cumsum(used) - 1).astype(np.int32)
    return np.where(codes >= 0, keep[np.maximum(codes, 0)], np.int32(-1)).astype(np.int32), labels[used]


def side_header(path: str | Path, sep: str) -> SideHeader:
    """A side table's header, with the delimiter that splits it (see :data:`SIDE_SEPS`)."""
    path, sep = Path(path), parse_sep(sep)
    header = read_header(path, sep)
    if len(header) == 1:
        for alt in SIDE_SEPS:
            if alt != sep:
                other = read_header(path, alt)
                if len(other) > 1:
                    return SideHeader(path, other, alt)
    return SideHeader(path, header, sep)


@dataclass
class Joined:
    """Side-table columns as per-entity codes of the interaction data's users or items."""

    values: dict[str, tuple[np.ndarray, np.ndarray]]  # column -> ((n,) int32 codes, -1 = no row; labels)
    rows: int  # data rows of the side table
    unknown_ids: int  # distinct side-table ids the interactions do not have (ignored)
    lacking: int  # entities of the interactions without a side-table row
    first_lacking: str | None

    def summary(self, side: SideHeader, what: str) -> dict:
        return {"path": str(side.path), "option": SIDE_OPTIONS[what], "rows": self.rows,
                "columns": list(self.values), "ids_not_in_interactions": self.unknown_ids,
                f"{what}s_without_row": self.lacking}


def join_side(side: SideHeader, id_col: str, cols: list[str], ids: np.ndarray, what: str,
              required: set[str]) -> Joined:
    """Read ``cols`` of a side table and align them with ``ids`` (the dataset's sorted user or item ids).

    ``required`` columns (groups) must not be empty on any side row."""
    table, source = read_columns(side.path, [id_col, *cols], side.sep)
    if source.n_rows == 0:
        raise DataError(f"{side.path}: the file has a header but no rows ({SIDE_OPTIONS[what]})")
    rows = Rows([source])
    key = code_text(*dictionary_form(table.column(id_col), side.path, id_col))
    require(key, rows, id_col, f"the {what} id")
    at = pc.index_in(pa.array(key.labels.tolist(), pa.large_string()),
                     value_set=pa.array(ids.tolist(), pa.large_string()))
    position = np.asarray(at.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    known = position >= 0
    values = {}
    for c in cols:
        coded = code_text(*dictionary_form(table.column(c), side.path, c))
        if c in required:
            require(coded, rows, c, f"the {what} group")
        per_key = per_entity(rows, key.codes, coded.codes, len(key.labels), c, what, key.labels, coded.labels)
        out = np.full(len(ids), -1, dtype=np.int32)
        out[position[known]] = per_key[known]
        values[c] = _used_labels_only(out, coded.labels)
    has_row = np.zeros(len(ids), dtype=bool)
    has_row[position[known]] = True
    lacking = np.flatnonzero(~has_row)
    return Joined(values, source.n_rows, int((~known).sum()), len(lacking),
                  str(ids[lacking[0]]) if len(lacking) else None)
