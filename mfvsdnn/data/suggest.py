"""Which unused columns could serve as item groups or user features (what ``info`` suggests).

Candidates are the columns of the interaction file and of its side tables that no option uses. An
item-group candidate is constant per item, never empty and has few values; for it ``info`` gives the
natural cross-group rate it would give (users' group = the majority group of their items, the rule
without ``--user-group-col``) beside the cross-group rate random recommendations would have,
``1 - sum_g w_g s_g`` (``s_g`` the share of items in group g, ``w_g`` the share of interactions by
users of group g; ``1 - sum share^2`` when the two shares agree). Folding is leakage above the natural
rate towards random's, so a candidate whose natural rate is close to random's cannot show it.
A user-feature candidate is constant per user (empty fields become ``<missing>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import SIDE_OPTIONS, ColumnSpec, side_id_column
from .dataset import Dataset, user_group_of
from .sides import side_header
from .sources import read_columns, read_header
from .values import code_text, dictionary_form

#: an item-group candidate has 2 to this many values (a folding table over more groups is unreadable)
MAX_GROUP_VALUES = 50
#: a user-feature candidate has 2 values up to this share of the users (above it, it is close to an id)
MAX_FEATURE_SHARE = 0.5
#: folding can show when the natural cross-group rate is at most this fraction of random's
FOLDING_VISIBLE_RATIO = 0.5


def _positions(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each label in ``ids`` (the dataset's sorted ids); -1 where absent."""
    at = pc.index_in(pa.array(labels.tolist(), pa.large_string()), value_set=pa.array(ids.tolist(), pa.large_string()))
    return np.asarray(at.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _constant(owner: np.ndarray, order: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray | None:
    """(n,) value per owner, -1 for owners without rows; None when some owner has two values.
    ``order`` sorts ``owner`` (rows of unknown owners, -1, are dropped beforehand)."""
    o, v = owner[order], codes[order]
    if ((o[1:] == o[:-1]) & (v[1:] != v[:-1])).any():
        return None
    out = np.full(n, -1, dtype=np.int32)
    out[o] = v
    return out


def cross_rates(ds: Dataset, item_groups: np.ndarray, n_groups: int) -> tuple[float, float]:
    """(natural, random's expected) cross-group rate over the interactions with majority user groups."""
    ug = user_group_of(ds.matrix, item_groups, None, n_groups)
    rows = np.repeat(np.arange(ds.n_users), np.diff(ds.matrix.indptr))
    if not ds.nnz:
        return float("nan"), float("nan")
    natural = float(np.mean(ug[rows] != item_groups[ds.matrix.indices]))
    item_share = np.bincount(item_groups, minlength=n_groups) / ds.n_items
    weight = np.bincount(ug[rows], minlength=n_groups) / ds.nnz
    return natural, float(1.0 - weight @ item_share)


def _candidates(table: pa.Table, names: list[str], path: Path, owner_pos: dict[str, np.ndarray], ds: Dataset,
                side: str | None) -> tuple[list[dict], list[dict]]:
    groups, features = [], []
    orders = {what: np.argsort(pos[pos >= 0], kind="stable") for what, pos in owner_pos.items()}
    file_option = f" {SIDE_OPTIONS[side]} {path}" if side else ""
    for c in names:
        coded = code_text(*dictionary_form(table.column(c), path, c))
        n_values = len(coded.labels)
        if n_values < 2:
            continue
        if "item" in owner_pos and n_values <= MAX_GROUP_VALUES and coded.first_missing() is None:
            pos = owner_pos["item"]
            per_item = _constant(pos[pos >= 0], orders["item"], coded.codes[pos >= 0], ds.n_items)
            if per_item is not None and (per_item >= 0).all():
                natural, random_rate = cross_rates(ds, per_item, n_values)
                groups.append({"column": c, "file": str(path), "values": n_values,
                               "natural_cross_group_rate": natural, "random_cross_group_rate": random_rate,
                               "folding_visible": bool(natural <= FOLDING_VISIBLE_RATIO * random_rate),
                               "options": f"--item-group-col {c}{file_option}"})
        if "user" in owner_pos and n_values <= max(2, MAX_FEATURE_SHARE * ds.n_users):
            pos = owner_pos["user"]
            per_user = _constant(pos[pos >= 0], orders["user"], coded.codes[pos >= 0], ds.n_users)
            if per_user is not None:
                features.append({"column": c, "file": str(path), "values": n_values,
                                 "users_without_value": int((per_user < 0).sum()), "side": side})
    return groups, features


def suggest_columns(path: str | Path, spec: ColumnSpec, ds: Dataset) -> dict:
    """Item-group and user-feature candidates among the unused columns of DATA and its side tables.

    ``spec`` is the resolved column spec (``ds.columns``). Reads only the candidate columns again."""
    path = Path(path)
    used = set(spec.used())
    groups: list[dict] = []
    features: list[dict] = []
    header = read_header(path, spec.sep)
    names = [c for c in dict.fromkeys(header) if c not in used and header.count(c) == 1]
    if names:
        table, _ = read_columns(path, [spec.user_col, spec.item_col, *names], spec.sep)  # type: ignore[list-item]
        pos = {}
        for what, col, ids in (("user", spec.user_col, ds.user_ids), ("item", spec.item_col, ds.item_ids)):
            key = code_text(*dictionary_form(table.column(col), path, col))
            pos[what] = np.append(_positions(key.labels, ids), -1)[key.codes]
        g, f = _candidates(table, names, path, pos, ds, None)
        groups += g
        features += f
    for what, file in (("user", spec.user_file), ("item", spec.item_file)):
        if not file:
            continue
        side = side_header(file, spec.sep)
        id_col = side_id_column(side, spec.user_col if what == "user" else spec.item_col, what)  # type: ignore[arg-type]
        # a name also in DATA would be refused as ambiguous, so it is no candidate of the side table
        names = [c for c in dict.fromkeys(side.header)
                 if c not in used and c != id_col and c not in header and side.header.count(c) == 1]
        if not names:
            continue
        table, _ = read_columns(side.path, [id_col, *names], side.sep)
        key = code_text(*dictionary_form(table.column(id_col), side.path, id_col))
        ids = ds.user_ids if what == "user" else ds.item_ids
        g, f = _candidates(table, names, side.path, {what: np.append(_positions(key.labels, ids), -1)[key.codes]},
                           ds, what)
        groups += g
        features += f
    groups.sort(key=lambda g: (not g["folding_visible"], g["natural_cross_group_rate"] - g["random_cross_group_rate"]))
    out: dict = {"item_groups": groups, "user_features": features,
                 "rule": (f"item groups: constant per item, 2 to {MAX_GROUP_VALUES} values, never empty; folding "
                          f"visible when the natural cross-group rate is at most {FOLDING_VISIBLE_RATIO:g} x random's. "
                          f"User features: constant per user, 2 values up to {MAX_FEATURE_SHARE:.0%} of the users")}
    if features:
        files = sorted({f"{SIDE_OPTIONS['user']} {f['file']}" for f in features if f["side"] == "user"})
        names_all = list(dict.fromkeys([*spec.user_features, *(f["column"] for f in features)]))
        out["user_features_options"] = " ".join([f"--user-features {','.join(names_all)}", *files])
    return out
