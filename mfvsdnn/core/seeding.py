"""One seeding rule for everything random: a named stream of the run's seed.

``generator(seed, "fit", "wals", 0)`` is the random generator of the first WALS fit of a run with
``seed``; ``generator(seed, "bootstrap")`` the one the bootstrap draws its resamples from. Each
purpose gets an independent stream (numpy's SeedSequence with the purpose as its spawn key), so
adding a model or a measurement never shifts the numbers of another, and the same (seed, purpose)
gives the same stream in every command and process: ``train-wals --seed 7`` and the WALS that
``compare --seed 7`` trains start from the same initial factors.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: object) -> int:
    """A stable 32-bit number for one part of a purpose (ints as themselves, text by CRC-32)."""
    if isinstance(part, bool | np.bool_):
        return int(part)
    if isinstance(part, int | np.integer):
        if part < 0:
            raise ValueError(f"seed stream parts must be non-negative, got {part}")
        return int(part)
    return zlib.crc32(str(part).encode("utf-8"))


def seed_sequence(seed: int, *purpose: object) -> np.random.SeedSequence:
    """The SeedSequence of ``purpose`` under ``seed`` (``seed`` >= 0)."""
    return np.random.SeedSequence(int(seed), spawn_key=tuple(_key(p) for p in purpose))


def generator(seed: int, *purpose: object) -> np.random.Generator:
    """An independent ``np.random.Generator`` for ``purpose`` under ``seed``."""
    return np.random.default_rng(seed_sequence(seed, *purpose))
