"""Error types. Library code raises these; only ``cli.py`` turns them into a message and exit 1."""

from __future__ import annotations

ABORTED_EXIT = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


class MfvsdnnError(Exception):
    """Base class of every error that should reach the user as a one-line message."""


class DataError(MfvsdnnError):
    """The interaction file (or an option describing it) is unusable."""


class SplitError(MfvsdnnError):
    """The split parameters cannot be satisfied by the data."""


class ModelError(MfvsdnnError):
    """A model's hyper-parameters, state or run directory is invalid."""


class StoreError(ModelError):
    """A run directory is missing, corrupt, truncated or foreign."""


class EvaluationError(MfvsdnnError):
    """Two runs cannot be evaluated together (e.g. different split fingerprints)."""
