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

# The Python API, imported on first use so that ``import mfvsdnn`` (and the CLI's start-up) stays light:
#     from mfvsdnn import load_interactions, make_split, WALS, SoftmaxDNN, MostPopular, compare
_API = {
    "load_interactions": ("mfvsdnn.api", "load_interactions"),
    "make_split": ("mfvsdnn.api", "make_split"),
    "compare": ("mfvsdnn.api", "compare_models"),
    "WALS": ("mfvsdnn.models.wals", "WALS"),
    "SoftmaxDNN": ("mfvsdnn.models.softmax", "SoftmaxDNN"),
    "MostPopular": ("mfvsdnn.models.baselines", "MostPopular"),
    "GroupPopularity": ("mfvsdnn.models.baselines", "GroupPopularity"),
    "RandomRetriever": ("mfvsdnn.models.baselines", "RandomRetriever"),
    "Results": ("mfvsdnn.experiment.results", "Results"),
    "load_run": ("mfvsdnn.models.store", "load_run"),
    "save_run": ("mfvsdnn.models.store", "save_run"),
    "register_model": ("mfvsdnn.models.registry", "register"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfvsdnn' has no attribute {name!r}")
