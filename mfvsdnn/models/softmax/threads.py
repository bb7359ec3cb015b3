"""How many BLAS threads a product gets: one, except for big products such as gravity's and the
untiled full softmax's (the tiled full softmax threads over item tiles itself, one BLAS thread each)."""

from __future__ import annotations

import contextlib
import os

from threadpoolctl import ThreadpoolController

# ------------------------------------------------------------------------------------------------
# BLAS threading: training runs on one BLAS thread (its products are small, and on shared cores
# waking threads for them stalls), except big products (gravity, the untiled full softmax).


_CONTROLLER: ThreadpoolController | None = None


BIG_PRODUCT = 1 << 24  # multiply-adds from which threads pay off


def blas_threads(work: int | None) -> contextlib.AbstractContextManager:
    """Context: all cores for BLAS if ``work`` >= BIG_PRODUCT, one thread if ``work`` is None, else as is."""
    global _CONTROLLER
    if work is not None and work < BIG_PRODUCT:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1 if work is None else (os.cpu_count() or 1), user_api="blas")
