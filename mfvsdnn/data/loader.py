"""Reading the interaction CSV into integer-indexed arrays.

pandas stops here: everything downstream works on a ``scipy.sparse.csr_matrix`` (users x items),
integer codes and numpy arrays. Raw ids come back only when results are shown or exported.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..core.errors import DataError

USER_ALIASES = ("user_id", "user", "userId", "userid", "UserID", "query_id", "userID")
ITEM_ALIASES = ("item_id", "item", "itemId", "itemid", "ItemID", "movieId", "movie_id", "artistID")
SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


@dataclass(frozen=True)
class ColumnSpec:
    """How to read the interaction CSV. ``None`` means "detect" (see DESIGN.md, Input)."""

    user_col: str | None = None
    item_col: str | None = None
    weight_col: str | None = None
    min_weight: float | None = None
    time_col: str | None = None
    item_group_col: str | None = None
    user_group_col: str | None = None
    user_features: tuple[str, ...] = ()
    sep: str = ","

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["user_features"] = list(self.user_features)
        return d


@dataclass
class Dataset:
    """Interactions as integer indices.

    Attributes
    ----------
    matrix : csr_matrix, shape (n_users, n_items), float32
        1 for every unique (user, item) positive; rows sorted by column.
    user_ids, item_ids : ndarray of str, shapes (n_users,), (n_items,)
        Raw ids, sorted, so index i <-> id is independent of row order.
    times : ndarray of float64, shape (nnz,), or None
        Time of each stored interaction (aligned with ``matrix.data``); earliest of duplicates.
    is_test : ndarray of bool, shape (nnz,), or None
        Interactions that came from an explicit ``--test`` file.
    item_groups : ndarray of int32, shape (n_items,), or None; ``group_names`` their labels.
    user_groups : ndarray of int32, shape (n_users,), or None; labels in ``group_names`` too.
    features : dict name -> ndarray of int32, shape (n_users,)
        Categorical user-feature codes; ``feature_values[name]`` their labels.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    times: np.ndarray | None = None
    is_test: np.ndarray | None = None
    item_groups: np.ndarray | None = None
    user_groups: np.ndarray | None = None
    group_names: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    feature_values: dict[str, list[str]] = field(default_factory=dict)
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    source: str = ""
    file_hash: str = ""
    rows_read: int = 0

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {it: i for i, it in enumerate(self.item_ids)}


# ----------------------------------------------------------------------------------------------
# helpers


def parse_sep(sep: str) -> str:
    """Accept ``,``, ``\\t``, ``tab``, ``;``... and return the one-character delimiter."""
    s = SEP_NAMES.get(sep.lower(), sep) if sep else ","
    if len(s) != 1:
        raise DataError(f"--sep must be one character (or tab, comma, semicolon, pipe, space), got {sep!r}")
    return s


def file_sha256(path: str | os.PathLike) -> str:
    """Hash of the file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (expected a header row and interactions)")


def _first_bad_utf8_line(path: Path) -> int:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return -1


def read_header(path: Path, sep: str) -> list[str]:
    """The header row's column names; errors for empty or non-UTF-8 files."""
    _check_file(path)
    with open(path, "rb") as f:
        raw = f.readline()
    try:
        first = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: line 1 is not valid UTF-8 text (is this a CSV file?)") from None
    if not first.strip():
        raise DataError(f"{path}: line 1 is blank; a header row naming the columns is required")
    header = next(csv.reader(io.StringIO(first), delimiter=sep))
    return [h.strip() for h in header]


def _suggest(name: str, header: list[str]) -> str:
    close = difflib.get_close_matches(name, header, n=3, cutoff=0.5)
    if not close:
        close = [h for h in header if name.lower() in h.lower() or h.lower() in name.lower()]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _resolve(path: Path, header: list[str], explicit: str | None, aliases: tuple[str, ...],
             what: str, option: str) -> str:
    if explicit is not None:
        if explicit not in header:
            raise DataError(
                f"{path}: no column {explicit!r} (given by {option}); the header has "
                f"{', '.join(header)}.{_suggest(explicit, header)}"
            )
        return explicit
    for a in aliases:
        if a in header:
            return a
    lower = {h.lower(): h for h in header}
    for a in aliases:
        if a.lower() in lower:
            return lower[a.lower()]
    raise DataError(
        f"{path}: no {what} column: looked for {', '.join(aliases[:4])}; the header has "
        f"{', '.join(header) or 'nothing'}.{_suggest(aliases[0], header)} "
        f"Name it with {option} (and check the file has a header row and the right --sep)."
    )


def _optional(path: Path, header: list[str], explicit: str | None, default: str | None,
              option: str) -> str | None:
    if explicit is not None:
        if explicit == "":
            return None
        if explicit not in header:
            raise DataError(
                f"{path}: no column {explicit!r} (given by {option}); the header has "
                f"{', '.join(header)}.{_suggest(explicit, header)}"
            )
        return explicit
    return default if default in header else None


def resolve_columns(path: str | os.PathLike, spec: ColumnSpec) -> ColumnSpec:
    """Fill in detected column names; every named column must exist."""
    path = Path(path)
    return resolve_header(path, read_header(path, parse_sep(spec.sep)), spec)


def resolve_header(path: Path, header: list[str], spec: ColumnSpec) -> ColumnSpec:
    """Column detection on a header already read (also used by the Spark reader). ``path`` names the source."""
    sep = parse_sep(spec.sep)
    user = _resolve(path, header, spec.user_col, USER_ALIASES, "user", "--user-col")
    item = _resolve(path, header, spec.item_col, ITEM_ALIASES, "item", "--item-col")
    if user == item:
        raise DataError(f"{path}: the user and item columns are both {user!r}")
    weight = _optional(path, header, spec.weight_col, None, "--weight-col")
    time = _optional(path, header, spec.time_col, None, "--time-col")
    igroup = _optional(path, header, spec.item_group_col, "item_group", "--item-group-col")
    ugroup = _optional(path, header, spec.user_group_col, "user_group", "--user-group-col")
    feats = []
    for f in spec.user_features:
        f = f.strip()
        if not f:
            continue
        if f not in header:
            raise DataError(
                f"{path}: no column {f!r} (given by --user-features); the header has "
                f"{', '.join(header)}.{_suggest(f, header)}"
            )
        if f in (user, item):
            raise DataError(f"{path}: --user-features names {f!r}, which is the user or item column")
        feats.append(f)
    if spec.min_weight is not None and weight is None:
        raise DataError("--min-weight needs --weight-col (the column holding the weight)")
    return ColumnSpec(user, item, weight, spec.min_weight, time, igroup, ugroup, tuple(feats), sep)


_LINE_RE = re.compile(r"line (\d+)")


def _read_frame(path: Path, spec: ColumnSpec) -> pd.DataFrame:
    cols = [spec.user_col, spec.item_col, spec.weight_col, spec.time_col, spec.item_group_col,
            spec.user_group_col, *spec.user_features]
    cols = list(dict.fromkeys(c for c in cols if c))
    # Every column is parsed (usecols would let pandas silently accept rows with extra fields);
    # unused ones as categoricals, which cost little, and they are dropped right after.
    dtypes: dict = defaultdict(lambda: "category")
    for c in (spec.weight_col, spec.time_col):
        if c:
            dtypes[c] = str
    try:
        df = pd.read_csv(
            path, sep=spec.sep, dtype=dtypes, encoding="utf-8", index_col=False, low_memory=False,
            keep_default_na=False, na_values=[""], skipinitialspace=True, engine="c",
        )
    except UnicodeDecodeError:
        line = _first_bad_utf8_line(path)
        raise DataError(f"{path}: line {line} is not valid UTF-8 text") from None
    except pd.errors.ParserError as e:
        m = _LINE_RE.search(str(e))
        where = f"line {m.group(1)}" if m else "a row"
        detail = str(e).split("C error: ")[-1].strip()
        raise DataError(f"{path}: {where} has a different number of fields than the header ({detail})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header row and interactions)") from None
    except ValueError as e:  # e.g. usecols mismatch after quoting
        raise DataError(f"{path}: cannot read as CSV with sep {spec.sep!r}: {e}") from None
    return df[cols]


def _missing_line(path: Path, df: pd.DataFrame, col: str, what: str) -> None:
    miss = df[col].isna().to_numpy()
    if miss.any():
        line = int(np.flatnonzero(miss)[0]) + 2
        raise DataError(f"{path}: line {line}: column {col!r} is empty ({what} is required on every row)")


def _categorical(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes and sorted string categories of a categorical series (missing -> its own code)."""
    s = series.cat.add_categories(["<missing>"]).fillna("<missing>") if series.isna().any() else series
    cats = s.cat.categories.astype(str)
    order = np.argsort(np.asarray(cats, dtype=object), kind="stable")
    cats_sorted = np.asarray(cats, dtype=object)[order]
    remap = np.empty(len(order), dtype=np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    codes = remap[s.cat.codes.to_numpy()]
    return codes, cats_sorted


def _numeric(path: Path, df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce")
    bad = vals.isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {i + 2}: column {col!r} ({what}) is not a number: {raw.iloc[i]!r}")
    _missing_line(path, df, col, what)
    return vals.to_numpy(dtype=np.float64)


def _times(path: Path, df: pd.DataFrame, col: str) -> np.ndarray:
    raw = df[col]
    _missing_line(path, df, col, "the time")
    vals = pd.to_numeric(raw, errors="coerce")
    if not vals.isna().any():
        return vals.to_numpy(dtype=np.float64)
    try:
        dt = pd.to_datetime(raw, errors="raise", utc=True, format="mixed")
    except (ValueError, TypeError):
        dt = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        i = int(np.flatnonzero(dt.isna().to_numpy())[0])
        raise DataError(
            f"{path}: line {i + 2}: column {col!r} (the time) is neither a number nor a date: {raw.iloc[i]!r}"
        ) from None
    return (dt.astype("int64") / 1e9).to_numpy(dtype=np.float64)


def _per_entity(path: Path, owner: np.ndarray, values: np.ndarray, n: int, col: str,
                owner_name: str, owner_ids: np.ndarray, value_names: np.ndarray) -> np.ndarray:
    """Value of a column that must be constant per owner (user or item). Shape (n,)."""
    order = np.argsort(owner, kind="stable")
    o, v = owner[order], values[order]
    clash = (o[1:] == o[:-1]) & (v[1:] != v[:-1])
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        first, second = order[k], order[k + 1]
        raise DataError(
            f"{path}: column {col!r} must be constant per {owner_name}, but {owner_name} "
            f"{owner_ids[o[k]]!r} has {value_names[v[k]]!r} on line {first + 2} and "
            f"{value_names[v[k + 1]]!r} on line {second + 2}"
        )
    out = np.full(n, -1, dtype=np.int32)
    out[o] = v
    return out


# ----------------------------------------------------------------------------------------------
# public API


def read_interactions(path: str | os.PathLike, columns: ColumnSpec = ColumnSpec(),
                      test_path: str | os.PathLike | None = None) -> Dataset:
    """Read an interaction CSV (and optionally an explicit held-out file) into a :class:`Dataset`.

    Parameters
    ----------
    path : path of the CSV with a header row.
    columns : which columns mean what; ``None`` fields are detected.
    test_path : optional CSV with the same columns whose rows are the held-out test interactions.
        Users that appear only there become cold users.

    Returns
    -------
    Dataset with ``matrix`` of shape (n_users, n_items): unique positives, duplicates collapsed.
    """
    path = Path(path)
    spec = resolve_columns(path, columns)
    frames = [_read_frame(path, spec)]
    sources = [path]
    if test_path is not None:
        tpath = Path(test_path)
        tspec = resolve_columns(tpath, spec)
        if tspec != spec:
            raise DataError(f"{tpath}: the --test file must have the same columns as {path}")
        frames.append(_read_frame(tpath, spec))
        sources.append(tpath)
    n_rows = [len(f) for f in frames]
    for p, f in zip(sources, frames, strict=True):
        if len(f) == 0:
            raise DataError(f"{p}: the file has a header but no interactions")
        _missing_line(p, f, spec.user_col, "the user id")
        _missing_line(p, f, spec.item_col, "the item id")
    if len(frames) == 1:
        df = frames[0]
    else:
        from pandas.api.types import union_categoricals

        df = pd.DataFrame({
            c: (union_categoricals([f[c] for f in frames]) if isinstance(frames[0][c].dtype, pd.CategoricalDtype)
                else pd.concat([f[c] for f in frames], ignore_index=True))
            for c in frames[0].columns
        })
    is_test_row = np.zeros(len(df), dtype=bool)
    if len(frames) == 2:
        is_test_row[n_rows[0]:] = True
    file_hash = file_sha256(path)
    if test_path is not None:
        file_hash = hashlib.sha256((file_hash + file_sha256(test_path)).encode()).hexdigest()
    return _dataset_from_frame(df, spec, path, file_hash, is_test_row if test_path is not None else None)


def dataset_from_frame(df: pd.DataFrame, columns: ColumnSpec, name: str = "<frame>") -> Dataset:
    """Build a :class:`Dataset` from an in-memory frame with the CSV's columns (e.g. synthetic data).

    The frame's content hash stands in for the file hash in the split fingerprint.
    """
    missing = [c for c in (columns.user_col, columns.item_col) if c is None or c not in df.columns]
    if missing:
        raise DataError(f"{name}: the frame needs explicit user and item columns present in it")
    spec = ColumnSpec(**{**columns.__dict__, "sep": ","})
    cols = [c for c in (spec.user_col, spec.item_col, spec.weight_col, spec.time_col, spec.item_group_col,
                        spec.user_group_col, *spec.user_features) if c]
    frame = pd.DataFrame({c: (df[c] if c in (spec.weight_col, spec.time_col) else df[c].astype("category"))
                          for c in dict.fromkeys(cols)})
    digest = hashlib.sha256(pd.util.hash_pandas_object(df[cols], index=False).to_numpy().tobytes()).hexdigest()
    return _dataset_from_frame(frame, spec, Path(name), digest, None)


def _dataset_from_frame(df: pd.DataFrame, spec: ColumnSpec, path: Path, file_hash: str,
                        is_test_row: np.ndarray | None) -> Dataset:
    """The loader's second half: categorical columns -> integer-indexed :class:`Dataset`."""
    test_path = None if is_test_row is None else True

    keep = np.ones(len(df), dtype=bool)
    if spec.weight_col:
        w = _numeric(path, df, spec.weight_col, "the weight")
        keep = w >= spec.min_weight if spec.min_weight is not None else w > 0
        if not keep.any():
            thr = f">= {spec.min_weight}" if spec.min_weight is not None else "> 0"
            raise DataError(
                f"{path}: no interaction left: no row has {spec.weight_col!r} {thr} "
                f"(weights range from {w.min():g} to {w.max():g}); lower --min-weight"
            )
    times = _times(path, df, spec.time_col) if spec.time_col else None

    ucodes, user_ids = _categorical(df[spec.user_col])
    icodes, item_ids = _categorical(df[spec.item_col])
    n_users, n_items = len(user_ids), len(item_ids)

    # groups share one label space so "same group" is a code comparison
    group_names: list[str] = []
    item_groups = user_groups = None
    if spec.item_group_col or spec.user_group_col:
        labels = []
        for c in (spec.item_group_col, spec.user_group_col):
            if c:
                labels.extend(df[c].cat.categories.astype(str))
        group_names = sorted(set(labels))
        gidx = {g: i for i, g in enumerate(group_names)}
        for c, owner, n, ids, name in ((spec.item_group_col, icodes, n_items, item_ids, "item"),
                                       (spec.user_group_col, ucodes, n_users, user_ids, "user")):
            if not c:
                continue
            _missing_line(path, df, c, f"the {name} group")
            cats = df[c].cat.categories.astype(str)
            remap = np.array([gidx[g] for g in cats], dtype=np.int32)
            codes = remap[df[c].cat.codes.to_numpy()]
            vals = _per_entity(path, owner, codes, n, c, name, ids, np.asarray(group_names, dtype=object))
            if name == "item":
                item_groups = vals
            else:
                user_groups = vals

    features: dict[str, np.ndarray] = {}
    feature_values: dict[str, list[str]] = {}
    for f in spec.user_features:
        codes, cats = _categorical(df[f])
        features[f] = _per_entity(path, ucodes, codes, n_users, f, "user", user_ids, cats)
        feature_values[f] = [str(c) for c in cats]

    # unique (user, item) positives; the earliest time of duplicates; test flag if any copy is test
    u, i = ucodes[keep].astype(np.int64), icodes[keep].astype(np.int64)
    key = u * n_items + i
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    first = np.ones(len(key_sorted), dtype=bool)
    first[1:] = key_sorted[1:] != key_sorted[:-1]
    starts = np.flatnonzero(first)
    ukey = key_sorted[starts]
    rows, cols = (ukey // n_items).astype(np.int32), (ukey % n_items).astype(np.int32)
    t_out = None
    if times is not None:
        t_out = np.minimum.reduceat(times[keep][order], starts)
    test_out = None
    if test_path is not None:
        test_out = np.logical_or.reduceat(is_test_row[keep][order], starts)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    matrix = sp.csr_matrix((np.ones(len(ukey), dtype=np.float32), cols, indptr), shape=(n_users, n_items))
    matrix.has_sorted_indices = True

    return Dataset(
        matrix=matrix, user_ids=np.asarray(user_ids, dtype=object), item_ids=np.asarray(item_ids, dtype=object),
        times=t_out, is_test=test_out, item_groups=item_groups, user_groups=user_groups,
        group_names=group_names, features=features, feature_values=feature_values, columns=spec,
        source=str(path), file_hash=file_hash, rows_read=len(df),
    )


def summarize(ds: Dataset) -> dict:
    """Summary statistics of a dataset (what ``mfvsdnn info`` shows). Pure; no printing."""
    per_user = np.diff(ds.matrix.indptr)
    per_item = np.bincount(ds.matrix.indices, minlength=ds.n_items)
    q = [0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
    out: dict = {
        "source": ds.source,
        "rows_read": ds.rows_read,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.nnz,
        "density": ds.nnz / max(1, ds.n_users * ds.n_items),
        "interactions_per_user": {f"q{int(p * 100)}": float(np.quantile(per_user, p)) for p in q},
        "interactions_per_item": {f"q{int(p * 100)}": float(np.quantile(per_item, p)) for p in q},
        "columns": ds.columns.as_dict(),
        "groups": None,
        "features": {f: {"cardinality": len(v)} for f, v in ds.feature_values.items()},
    }
    out["interactions_per_user"]["mean"] = float(per_user.mean()) if len(per_user) else 0.0
    if ds.item_groups is not None:
        ug = user_group_of(ds.matrix, ds.item_groups, ds.user_groups, len(ds.group_names))
        row_users = np.repeat(np.arange(ds.n_users), per_user)
        cross = float(np.mean(ug[row_users] != ds.item_groups[ds.matrix.indices])) if ds.nnz else 0.0
        out["groups"] = {
            "source": "user_group column" if ds.user_groups is not None else "majority item group of each user",
            "natural_cross_group_rate": cross,
            "groups": {
                name: {
                    "items": int(np.sum(ds.item_groups == g)),
                    "users": int(np.sum(ug == g)),
                    "interactions": int(np.sum(ds.item_groups[ds.matrix.indices] == g)),
                }
                for g, name in enumerate(ds.group_names)
            },
        }
    if ds.times is not None:
        out["time_range"] = [float(ds.times.min()), float(ds.times.max())]
    return out


def user_group_of(matrix: sp.csr_matrix, item_groups: np.ndarray, user_groups: np.ndarray | None,
                  n_groups: int) -> np.ndarray:
    """Each user's group: the user-group column where given, else the majority group of the user's items.

    Parameters
    ----------
    matrix : csr (n_users, n_items) of the interactions to take the majority over.
    item_groups : (n_items,) int group codes.
    user_groups : (n_users,) int codes, or None.

    Returns
    -------
    (n_users,) int32; -1 for a user with no items and no column value. Ties go to the lower code.
    """
    if user_groups is not None:
        return user_groups.astype(np.int32)
    n_users = matrix.shape[0]
    rows = np.repeat(np.arange(n_users), np.diff(matrix.indptr))
    counts = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int64), (rows, item_groups[matrix.indices])), shape=(n_users, max(1, n_groups))
    ).toarray()
    out = counts.argmax(axis=1).astype(np.int32)
    out[counts.sum(axis=1) == 0] = -1
    return out
