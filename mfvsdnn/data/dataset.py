"""The dataset: interactions as integer indices (users x items), with groups and user features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .columns import ColumnSpec


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
    side_tables: dict = field(default_factory=dict)  # "user"/"item" -> what the join of that side table found

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
        "side_tables": ds.side_tables,
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
