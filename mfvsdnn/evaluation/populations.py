"""The query sets of a split: warm users, and cold users at each revealed count.

Models receive the query-time user groups (``groups=``) only from the data's user-group column; the
group used for leakage, which for cold users comes from their held-out interactions, never reaches
a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data import user_group_of
from ..data.split import Split


@dataclass
class Population:
    """One set of queries to evaluate.

    Attributes
    ----------
    name : "warm" or "r=<count>".
    users : (q,) dataset user indices.
    histories : csr (q, n_items) given to ``query_vectors``; ``exclude`` the items never recommended.
    targets : csr (q, n_items) held-out positives.
    features : name -> (q,) codes, or None when the data has no user features.
    model_users : (q,) training-user indices passed as ``users=`` (warm), or None (cold).
    user_group : (q,) group code (-1 unknown) for leakage, or None without item groups;
        ``group_source`` says how it was derived. For cold users it may come from held-out
        interactions, so it is never given to a model.
    query_groups : (q,) int32 codes of the data's user-group column, passed to the model as
        ``groups=``; None when the data has no user-group column.
    """

    name: str
    users: np.ndarray
    histories: sp.csr_matrix
    exclude: sp.csr_matrix
    targets: sp.csr_matrix
    features: dict[str, np.ndarray] | None
    model_users: np.ndarray | None
    user_group: np.ndarray | None = None
    group_source: str = ""
    query_groups: np.ndarray | None = None
    revealed: int | None = None  # cold users' revealed count r; None for warm users


def query_groups_of(split: Split, users: np.ndarray) -> np.ndarray | None:
    """The user-group column's codes for ``users`` (int32), or None when the data has no such column."""
    ug = split.dataset.user_groups
    return None if ug is None else np.asarray(ug, dtype=np.int32)[users]


def populations(split: Split) -> list[Population]:
    """Warm users, then cold users at every revealed count r of ``split.config.revealed``."""
    ds = split.dataset
    n_groups = len(ds.group_names)
    feats_all = ds.features or {}

    def feats(users: np.ndarray) -> dict[str, np.ndarray] | None:
        return {f: c[users] for f, c in feats_all.items()} if feats_all else None

    out: list[Population] = []
    warm = split.warm_eval_users
    known = split.known()
    hist = known[warm]
    ug_w = ug_c = None
    src_w = src_c = ""
    if ds.item_groups is not None:
        ug_w = user_group_of(split.train, ds.item_groups, ds.user_groups, n_groups)[warm]
        src_w = ("user group column" if ds.user_groups is not None
                 else "majority item group of the user's training items")
    out.append(Population("warm", warm, hist, hist, split.test[warm], feats(warm), warm, ug_w, src_w,
                          query_groups_of(split, warm), None))

    cold = split.cold_eval_users
    if len(cold):
        targets = split.cold_targets()[cold]
        if ds.item_groups is not None:
            ug_c = user_group_of(split.cold, ds.item_groups, ds.user_groups, n_groups)[cold]
            src_c = ("user group column" if ds.user_groups is not None
                     else "majority item group of all the cold user's interactions (revealed and held out)")
        for r in split.config.revealed:
            h = split.cold_history(r)[cold]
            out.append(Population(f"r={r}", cold, h, h, targets, feats(cold), None, ug_c, src_c,
                                  query_groups_of(split, cold), int(r)))
    return out
