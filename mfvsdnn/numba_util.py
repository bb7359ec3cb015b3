"""numba helpers shared by the kernels."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from numba import njit


def compile_twin(py_func: Callable[..., Any], suffix: str, **flags: Any) -> Any:
    """Compile a second copy of a kernel's Python function with other flags (e.g. serial).

    numba's on-disk cache is keyed by the function's qualified name and byte code, not by the
    compile flags, so ``njit(cache=True)(f.py_func)`` beside ``njit(parallel=True, cache=True)(f)``
    would share one cache entry and a later process could load the parallel build for the serial
    name (or the reverse). The twin gets its own name, hence its own cache file.
    """
    twin = types.FunctionType(py_func.__code__, py_func.__globals__, f"{py_func.__name__}_{suffix}",
                              py_func.__defaults__, py_func.__closure__)
    twin.__qualname__ = f"{py_func.__qualname__}_{suffix}"
    twin.__module__ = py_func.__module__
    twin.__doc__ = py_func.__doc__
    return njit(**flags)(twin)
