"""The progress protocol: long-running code reports ``progress(done, total, metrics)``; it never prints."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from typing import Protocol


class ProgressFn(Protocol):
    """Called after each step (iteration, epoch, population...): ``progress(done, total, metrics)``."""

    def __call__(self, done: int, total: int, metrics: dict[str, float]) -> None: ...


def no_progress(done: int, total: int, metrics: dict[str, float]) -> None:
    """A ProgressFn that does nothing."""


#: ``description -> context manager yielding a ProgressFn`` (e.g. one rich progress bar per step).
ProgressFactory = Callable[[str], ContextManager[ProgressFn]]


@contextlib.contextmanager
def silent(description: str) -> Iterator[ProgressFn]:  # noqa: ARG001 - the factory's signature
    """A ProgressFactory that shows nothing."""
    yield no_progress
