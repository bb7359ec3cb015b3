"""The hashing trick: raw ids (item ids, feature value labels) to rows of a smaller embedding table.

Row ``h`` of id ``s`` is blake2b(utf-8 of s, key=8 bytes of the model's hash key, salt=table and h)
modulo the number of buckets: a keyed hash of the raw id string, so the same id gets the same rows in
every run and on every machine (nothing depends on the id's index in this data set, on Python's
per-process string hash or on the platform). With ``n_hashes`` > 1 an id's embedding is the sum of
its rows (two colliding ids rarely share both rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def hash_rows(labels: Sequence[str] | np.ndarray, buckets: int, n_hashes: int, key: int, table: str) -> np.ndarray:
    """(len(labels), n_hashes) int32 rows in [0, buckets) of each raw id for the table named ``table``."""
    key_bytes = int(key).to_bytes(8, "little")
    out = np.empty((len(labels), n_hashes), dtype=np.int32)  # buckets <= MAX_BUCKETS < 2**31
    salts = [f"{table}:{h}".encode()[:16] for h in range(n_hashes)]
    for i, label in enumerate(labels):
        data = str(label).encode("utf-8")
        for h, salt in enumerate(salts):
            digest = hashlib.blake2b(data, digest_size=8, key=key_bytes, salt=salt).digest()
            out[i, h] = int.from_bytes(digest, "little") % buckets
    return out


def compose(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Hashed embeddings: (q, d) = sum_h table[rows[:, h]] for rows (q, n_hashes)."""
    out = table[rows[:, 0]].copy()
    for h in range(1, rows.shape[1]):
        out += table[rows[:, h]]
    return out


def collisions(rows: np.ndarray) -> int:
    """Ids minus distinct row tuples: how many ids share all their rows with another (indistinguishable)."""
    return int(len(rows) - len(np.unique(rows, axis=0)))
