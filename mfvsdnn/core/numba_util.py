"""numba helpers shared by the kernels, and where numba caches them.

Every kernel module imports this one before defining its kernels, so :data:`CACHE` is decided
first: numba's on-disk cache (``cache=True``) needs a writable directory, and without one numba
raises at decoration time. :func:`configure_cache` checks that numba can write where it would cache
(``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside the kernels or numba's user cache
directory); if not, it points numba to a writable per-user directory, and if there is none, the
kernels are compiled without a cache. Either fallback prints one note on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types as pytypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
from llvmlite import ir
from numba import njit, types
from numba.core.caching import FunctionCache
from numba.extending import intrinsic

# the kernel modules: numba's default cache goes to the __pycache__ beside each
_PACKAGE = Path(__file__).resolve().parent.parent
KERNEL_SOURCES = (_PACKAGE / "core" / "topk_kernels.py", _PACKAGE / "models" / "wals" / "kernels.py",
                  _PACKAGE / "models" / "wals" / "foldin.py", _PACKAGE / "models" / "softmax" / "kernels.py",
                  _PACKAGE / "models" / "softmax" / "optim_kernels.py")
NOTE_SHOWN = "MFVSDNN_NUMBA_NOTE_SHOWN"  # set once the note is printed, so worker processes stay quiet


def _unwritable(directory: str) -> str | None:
    """Why ``directory`` cannot hold cache files (the OS's reason), or None when it can."""
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as e:
        return e.strerror or str(e)
    return None


def _numba_can_cache() -> bool:
    """Whether numba finds a writable cache location for functions of every kernel module."""
    for source in KERNEL_SOURCES:
        namespace: dict[str, Any] = {}
        exec(compile("def probe():\n    pass\n", str(source), "exec"), namespace)  # a function "in" source
        try:
            FunctionCache(namespace["probe"])
        except (RuntimeError, OSError):
            return False
    return True


def _fallback_dirs() -> list[str]:
    home_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return [os.path.join(home_cache, "mfvsdnn", "numba"),
            os.path.join(tempfile.gettempdir(), f"mfvsdnn-numba-{user}")]


def _note(text: str) -> None:
    if not os.environ.get(NOTE_SHOWN):
        sys.stderr.write(f"note: {text}\n")
        os.environ[NOTE_SHOWN] = "1"


def configure_cache() -> bool:
    """Make sure numba can write its cache; returns whether the kernels should use ``cache=True``."""
    wanted = numba.config.CACHE_DIR
    if wanted:
        why = _unwritable(wanted)
        if why is None and _numba_can_cache():
            return True
        problem = f"NUMBA_CACHE_DIR={wanted} is not writable ({why or 'numba cannot use it'})"
    elif _numba_can_cache():
        return True
    else:
        problem = "numba cannot write its cache beside the package nor in its user cache directory"
    tried = _fallback_dirs()
    for directory in tried:
        if _unwritable(directory) is None:
            numba.config.CACHE_DIR = directory
            os.environ["NUMBA_CACHE_DIR"] = directory  # worker processes inherit the choice
            if _numba_can_cache():
                _note(f"{problem}; compiled kernels are cached in {directory} instead")
                return True
    numba.config.CACHE_DIR = wanted
    _note(f"{problem}, nor is {' or '.join(tried)}; compiling the kernels without a cache "
          "(every run compiles them again)")
    return False


CACHE = configure_cache()


def compile_twin(py_func: Callable[..., Any], suffix: str, **flags: Any) -> Any:
    """Compile a second copy of a kernel's Python function with other flags (e.g. serial).

    numba's on-disk cache is keyed by the function's qualified name and byte code, not by the
    compile flags, so ``njit(cache=True)(f.py_func)`` beside ``njit(parallel=True, cache=True)(f)``
    would share one cache entry and a later process could load the parallel build for the serial
    name (or the reverse). The twin gets its own name, hence its own cache file.
    """
    twin = pytypes.FunctionType(py_func.__code__, py_func.__globals__, f"{py_func.__name__}_{suffix}",
                              py_func.__defaults__, py_func.__closure__)
    twin.__qualname__ = f"{py_func.__qualname__}_{suffix}"
    twin.__module__ = py_func.__module__
    twin.__doc__ = py_func.__doc__
    return njit(**flags)(twin)


# Two LLVM operations numba does not expose on scalars, as inlinable intrinsics:
#   f32_from_bits(i): the float32 whose bit pattern is the int32 i (a bitcast, no conversion)
#   fmax_f32(a, b):   llvm.maxnum (max ignoring NaN); unlike numba's max(), a max-reduction over it vectorises
@intrinsic
def f32_from_bits(typingctx, i):  # noqa: ARG001
    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def fmax_f32(typingctx, a, b):  # noqa: ARG001
    def codegen(context, builder, signature, args):  # noqa: ARG001
        f = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.maxnum", [f], ir.FunctionType(f, [f, f]))
        return builder.call(fn, args)
    return types.float32(types.float32, types.float32), codegen
