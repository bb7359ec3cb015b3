"""The progress protocol: long-running steps report ``progress(done, total, metrics)`` and never print."""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    """Called after each iteration/epoch: ``progress(done, total, metrics)``."""

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None: ...


def no_progress(done: int, total: int, metrics: dict[str, float]) -> None:
    """A ProgressFn that does nothing."""
