"""The model registry: kind name -> model class.

Built-in kinds are listed by name and imported on first :func:`get`, so importing this module (or
listing :func:`kinds`) does not load the numba kernels of WALS and the softmax DNN. A class registered
from outside (``register(MyModel)``) works everywhere a built-in does: the store rebuilds it by its
recorded ``kind`` through ``from_state``, and the evaluator reads its ``capabilities``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from ..core.errors import ModelError
from .base import FAMILIES, Capabilities

# kind -> class, or "module:attribute" for a built-in not imported yet (registration order kept)
_BUILTINS: dict[str, str] = {
    "wals": "mfvsdnn.models.wals:WALS",
    "softmax": "mfvsdnn.models.softmax:SoftmaxDNN",
    "popularity": "mfvsdnn.models.baselines:MostPopular",
    "group-popularity": "mfvsdnn.models.baselines:GroupPopularity",
    "random": "mfvsdnn.models.baselines:RandomRetriever",
}
_entries: dict[str, type | str] = dict(_BUILTINS)

_COMMON_METHODS = ("fit", "get_params", "state", "from_state")


def _check_class(cls: type) -> None:
    """Refuse a class that does not declare what the evaluator and the store rely on."""
    name = getattr(cls, "__name__", repr(cls))
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise ModelError(f"model class {name} declares no kind (a non-empty str class attribute)")
    family = getattr(cls, "family", None)
    if family not in FAMILIES:
        raise ModelError(f"model class {name} (kind {kind!r}): family must be one of "
                         f"{', '.join(FAMILIES)}, got {family!r}")
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, Capabilities):
        raise ModelError(f"model class {name} (kind {kind!r}) declares no capabilities (a Capabilities instance)")
    needed = _COMMON_METHODS + (("query_vectors", "item_vectors") if caps.item_vectors else ("scores",))
    missing = [m for m in needed if not hasattr(cls, m)]
    if missing:
        raise ModelError(f"model class {name} (kind {kind!r}) lacks {', '.join(missing)}")


def register(cls: type, replace: bool = False) -> type:
    """Register ``cls`` under ``cls.kind``; returns ``cls`` (usable as a class decorator).

    A kind already registered is refused unless ``replace=True`` (the kind keeps its place in
    :func:`kinds`).
    """
    _check_class(cls)
    if cls.kind in _entries and not replace:
        raise ModelError(f"model kind {cls.kind!r} is already registered; pass replace=True to replace it")
    _entries[cls.kind] = cls
    return cls


def unregister(kind: str) -> None:
    """Remove ``kind`` from the registry (a built-in comes back only by registering it again)."""
    if kind not in _entries:
        raise ModelError(f"model kind {kind!r} is not registered; registered kinds: {', '.join(_entries)}")
    del _entries[kind]


def kinds() -> tuple[str, ...]:
    """Registered kinds, in registration order (the built-ins first)."""
    return tuple(_entries)


def get(kind: str) -> type:
    """The model class registered under ``kind``; unknown kinds raise ModelError listing the known ones."""
    entry = _entries.get(kind)
    if entry is None:
        raise ModelError(f"unknown model kind {kind!r}; registered kinds: {', '.join(_entries)}")
    if isinstance(entry, str):
        module, attr = entry.split(":")
        cls = getattr(importlib.import_module(module), attr)
        _check_class(cls)
        if cls.kind != kind:
            raise ModelError(f"built-in {entry} declares kind {cls.kind!r}, registered as {kind!r}")
        _entries[kind] = entry = cls
    return entry


def family_of(kind: str) -> str:
    """The family ("mf", "dnn" or "baseline") of a registered kind."""
    return get(kind).family


def check_params(kind: str, params: Mapping[str, Any], option: str) -> dict[str, Any]:
    """Every hyper-parameter of a ``kind`` model built from ``params`` (defaults filled in).

    Refuses, with one message naming ``option`` (e.g. ``--wals-param``): a key that is not a
    constructor keyword (the message lists the valid keys and suggests the closest one), and a
    value the constructor refuses. Nothing is trained and no data is needed.
    """
    cls = get(kind)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"{option} {key}=...: {key!r} is not a {kind} hyper-parameter{hint}; "
                             f"valid keys: {', '.join(valid)}")
    try:
        return cls(**params).get_params()
    except ModelError as e:
        raise ModelError(f"{option}: {e}") from None
