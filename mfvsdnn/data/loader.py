"""Reading interactions into integer-indexed arrays.

pandas and Arrow stop here: everything downstream works on a ``scipy.sparse.csr_matrix`` (users x
items), integer codes and numpy arrays. Raw ids come back only when results are shown or exported.

The parts: :mod:`mfvsdnn.columns` (which column means what), :mod:`mfvsdnn.sources` (files, formats,
line numbers), :mod:`mfvsdnn.values` (text, numbers, times); this module assembles the :class:`Dataset`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from ..core.errors import DataError
from .columns import (
    ITEM_ALIASES,
    USER_ALIASES,
    ColumnSpec,
    SideHeader,
    parse_sep,
    resolve_header,
    side_id_column,
)
from .dataset import Dataset, summarize, user_group_of
from .sides import Rows, join_side, per_entity, require, side_header
from .sources import Source, read_columns, read_header
from .values import (
    Coded,
    code_text,
    dictionary_form,
    merge_forms,
    parse_numbers,
    parse_times,
    with_label,
)

__all__ = ["ColumnSpec", "Dataset", "read_interactions", "dataset_from_frame", "resolve_columns", "resolve_header",
           "read_header", "parse_sep", "file_sha256", "summarize", "user_group_of", "USER_ALIASES", "ITEM_ALIASES"]

MISSING_FEATURE = "<missing>"  # the category of a user whose feature field is empty


# ----------------------------------------------------------------------------------------------
# helpers


def file_sha256(path: str | os.PathLike) -> str:
    """Hash of the file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def side_headers(spec: ColumnSpec) -> dict[str, SideHeader]:
    """The headers of the side tables ``spec`` names, by what they describe (``"user"``, ``"item"``)."""
    files = {"user": spec.user_file, "item": spec.item_file}
    return {what: side_header(f, spec.sep) for what, f in files.items() if f}


def resolve_columns(path: str | os.PathLike, spec: ColumnSpec) -> ColumnSpec:
    """Fill in detected column names; every named column must exist (in the file or its side tables)."""
    path = Path(path)
    return resolve_header(path, read_header(path, parse_sep(spec.sep)), spec, side_headers(spec))


# ----------------------------------------------------------------------------------------------
# public API


def read_interactions(path: str | os.PathLike, columns: ColumnSpec = ColumnSpec(),
                      test_path: str | os.PathLike | None = None) -> Dataset:
    """Read an interaction file (and optionally an explicit held-out file) into a :class:`Dataset`.

    Parameters
    ----------
    path : a CSV with a header row (plain, .gz, .bz2, .xz, .zst or a one-file .zip) or a Parquet file.
    columns : which columns mean what; ``None`` fields are detected.
    test_path : optional file (any of the same formats) with the same columns whose rows are the
        held-out test interactions. Users that appear only there become cold users.

    Returns
    -------
    Dataset with ``matrix`` of shape (n_users, n_items): unique positives, duplicates collapsed.
    """
    path = Path(path)
    sides = side_headers(columns)
    header = read_header(path, parse_sep(columns.sep))
    spec = resolve_header(path, header, columns, sides)
    paths = [path]
    if test_path is not None:
        tpath = Path(test_path)
        if resolve_columns(tpath, spec) != spec:
            raise DataError(f"{tpath}: the --test file must have the same columns as {path}")
        paths.append(tpath)
    own = [c for c in spec.used() if c in header]  # the rest come from the side tables
    read = [read_columns(p, own, spec.sep) for p in paths]
    tables, sources = [t for t, _ in read], [s for _, s in read]
    del read  # _build empties `tables` once it has coded them, which frees the text early
    for s in sources:
        if s.n_rows == 0:
            raise DataError(f"{s.path}: the file has a header but no interactions")
    is_test_row = None
    file_hash = file_sha256(path)
    if test_path is not None:
        is_test_row = np.repeat([False, True], [sources[0].n_rows, sources[1].n_rows])
        file_hash = hashlib.sha256((file_hash + file_sha256(test_path)).encode()).hexdigest()
    for what in ("user", "item"):  # the side tables' bytes enter the split fingerprint through the hash
        if what in sides:
            file_hash = hashlib.sha256(f"{file_hash}:{what}:{file_sha256(sides[what].path)}".encode()).hexdigest()
    return _build(tables, sources, spec, path, file_hash, is_test_row, sides)


def _arrow_table(df: pd.DataFrame, cols: list[str], name: str) -> pa.Table:
    arrays = {}
    for c in cols:
        try:
            arrays[c] = pa.chunked_array([pa.array(df[c], from_pandas=True)])
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise DataError(f"{name}: column {c!r} cannot be read as one type ({e})") from None
    return pa.table(arrays)


def dataset_from_frame(df: pd.DataFrame, columns: ColumnSpec, name: str = "<frame>") -> Dataset:
    """Build a :class:`Dataset` from an in-memory frame with the file's columns (e.g. synthetic data).

    Columns follow the file rules: ids, groups and features must be text or integers (integers become
    their decimal text), weights and times numbers (or text holding them) or timestamps. Messages
    name rows (1-based). The frame's content hash stands in for the file hash in the split fingerprint.
    """
    if columns.user_col is None or columns.item_col is None:
        raise DataError(f"{name}: the frame needs explicit user and item columns present in it")
    spec = ColumnSpec(**{**columns.__dict__, "sep": ","})
    cols = spec.used()
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{name}: the frame has no column {', '.join(map(repr, missing))}; it has "
                        f"{', '.join(map(str, df.columns))}")
    digest = hashlib.sha256(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes()).hexdigest()
    return _dataset_from_frame(df, spec, Path(name), digest, None)


def _dataset_from_frame(df: pd.DataFrame, spec: ColumnSpec, path: Path, file_hash: str,
                        is_test_row: np.ndarray | None) -> Dataset:
    """A frame (columns named as in ``spec``; categoricals welcome) -> :class:`Dataset`. Used by the Spark reader."""
    if len(df) == 0:
        raise DataError(f"{path}: no interactions")
    table = _arrow_table(df, spec.used(), str(path))
    return _build([table], [Source(path, len(df))], spec, path, file_hash, is_test_row)


def _build(tables: list[pa.Table], sources: list[Source], spec: ColumnSpec, path: Path, file_hash: str,
           is_test_row: np.ndarray | None, sides: dict[str, SideHeader] | None = None) -> Dataset:
    """The loader's second half: the used columns of every file -> integer-indexed :class:`Dataset`."""
    origin = Rows(sources)

    def coded(col: str) -> Coded:
        return code_text(*merge_forms([dictionary_form(t.column(col), s.path, col)
                                       for t, s in zip(tables, sources, strict=True)]))

    def numbers(col: str, parse) -> np.ndarray:
        return np.concatenate([parse(t.column(col), s.path, s.where, col) for t, s in zip(tables, sources, strict=True)])

    user, item = coded(spec.user_col), coded(spec.item_col)
    require(user, origin, spec.user_col, "the user id")
    require(item, origin, spec.item_col, "the item id")
    ucodes, user_ids, icodes, item_ids = user.codes, user.labels, item.codes, item.labels
    n_users, n_items = len(user_ids), len(item_ids)

    keep = np.ones(len(ucodes), dtype=bool)
    if spec.weight_col:
        w = numbers(spec.weight_col, lambda c, p, wh, n: parse_numbers(c, p, wh, n, "the weight"))
        keep = w >= spec.min_weight if spec.min_weight is not None else w > 0
        if not keep.any():
            thr = f">= {spec.min_weight}" if spec.min_weight is not None else "> 0"
            raise DataError(
                f"{path}: no interaction left: no row has {spec.weight_col!r} {thr} "
                f"(weights range from {w.min():g} to {w.max():g}); lower --min-weight"
            )
    times = numbers(spec.time_col, parse_times) if spec.time_col else None

    sides = sides or {}
    joined, side_summary = {}, {}
    for what, side in sides.items():
        own = set(tables[0].column_names)
        cols = [c for c in ((spec.item_group_col,) if what == "item" else (spec.user_group_col, *spec.user_features))
                if c and c not in own]
        ids = user_ids if what == "user" else item_ids
        main_id = spec.user_col if what == "user" else spec.item_col
        j = join_side(side, side_id_column(side, main_id, what), cols, np.asarray(ids, dtype=object), what,
                      required={spec.item_group_col if what == "item" else spec.user_group_col} - {None})
        joined[what] = j.values
        side_summary[what] = j.summary(side, what)

    def entity_values(col: str, owner: str, what: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(per-entity codes, labels) of a column describing ``owner``; ``what`` names a required value."""
        if col in joined.get(owner, {}):
            return joined[owner][col]
        c = coded(col)
        if what is not None:
            require(c, origin, col, what)
        else:
            c = with_label(c, MISSING_FEATURE)
        codes, n, ids = (icodes, n_items, item_ids) if owner == "item" else (ucodes, n_users, user_ids)
        return per_entity(origin, codes, c.codes, n, col, owner, ids, c.labels), c.labels

    # groups share one label space so "same group" is a code comparison
    group_names: list[str] = []
    item_groups = user_groups = None
    group_cols = [(c, name) for c, name in ((spec.item_group_col, "item"), (spec.user_group_col, "user")) if c]
    if group_cols:
        local = {name: entity_values(c, name, f"the {name} group") for c, name in group_cols}
        for c, name in group_cols:
            lacking = np.flatnonzero(local[name][0] < 0)
            if len(lacking):
                ids = item_ids if name == "item" else user_ids
                raise DataError(f"{sides[name].path}: {len(lacking)} {name}s of the interactions have no row, "
                                f"e.g. {ids[lacking[0]]!r}; every {name} needs its group {c!r} (add the rows, or "
                                f"take the group from elsewhere)")
        group_names = sorted(set().union(*(labels.tolist() for _, labels in local.values())))
        names_arr = np.asarray(group_names, dtype=object)
        for _, name in group_cols:
            vals, labels = local[name]
            remapped = np.searchsorted(names_arr, labels).astype(np.int32)[vals]
            if name == "item":
                item_groups = remapped
            else:
                user_groups = remapped

    features: dict[str, np.ndarray] = {}
    feature_values: dict[str, list[str]] = {}
    for f in spec.user_features:
        vals, labels = entity_values(f, "user", None)
        if (vals < 0).any():  # users without a row in the side table (or with an empty field there)
            found = labels
            labels = np.asarray(sorted(set(found.tolist()) | {MISSING_FEATURE}), dtype=object)
            vals = np.where(vals >= 0, np.append(np.searchsorted(labels, found), 0).astype(np.int32)[np.maximum(vals, 0)],
                            int(np.searchsorted(labels, MISSING_FEATURE))).astype(np.int32)
        features[f] = vals
        feature_values[f] = [str(c) for c in labels]

    tables.clear()  # every column is coded or parsed: let the text go before the largest step

    # unique (user, item) positives; the earliest time of duplicates; test flag if any copy is test
    key = (ucodes if keep.all() else ucodes[keep]).astype(np.int64)
    key *= n_items
    key += icodes if keep.all() else icodes[keep]
    t_out = test_out = None
    if times is None and is_test_row is None:
        key.sort()  # in place: no order is needed when nothing rides along with the pairs
        key_sorted = key
    else:
        order = np.argsort(key)  # the order within duplicates does not matter: min and or are symmetric
        key_sorted = key[order]
        del key
    first = np.ones(len(key_sorted), dtype=bool)
    np.not_equal(key_sorted[1:], key_sorted[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ukey = key_sorted[starts]
    if times is not None:
        t_out = np.minimum.reduceat(times[keep][order], starts)
    if is_test_row is not None:
        test_out = np.logical_or.reduceat(is_test_row[keep][order], starts)
    del key_sorted, first
    rows, cols = (ukey // n_items).astype(np.int32), (ukey % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    matrix = sp.csr_matrix((np.ones(len(ukey), dtype=np.float32), cols, indptr), shape=(n_users, n_items))
    matrix.has_sorted_indices = True

    return Dataset(
        matrix=matrix, user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=object),
        times=t_out, is_test=test_out, item_groups=item_groups, user_groups=user_groups,
        group_names=group_names, features=features, feature_values=feature_values, columns=spec,
        source=str(path), file_hash=file_hash, rows_read=len(ucodes), side_tables=side_summary,
    )


