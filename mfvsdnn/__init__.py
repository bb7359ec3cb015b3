"""mfvsdnn: WALS matrix factorization vs a softmax DNN for candidate retrieval, measured side by side."""

import os as _os

# Two thread pools share the cores in every hot loop: OpenBLAS (matrix products) and numba's kernels
# (top-k, softmax, row solves). By default each keeps its idle workers spinning for a while after a call,
# which steals the cores the other pool is about to use (measured: the evaluator's top-k ran at 2.7x
# the bare products with spinning workers, 1.6x without). Make idle workers sleep quickly. These only
# take effect when mfvsdnn is imported before numpy (as the `mfvsdnn` command does); a value already
# set in the environment wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core.version import __version__  # noqa: E402

__all__ = ["__version__"]
