"""numba helpers shared by the kernels."""

from __future__ import annotations

import types as pytypes
from collections.abc import Callable
from typing import Any

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


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
