"""Library functions behind the CLI commands: each command parses options, calls one of these, renders."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import ColumnSpec, read_interactions, summarize
from .errors import DataError
from .models.base import ProgressFn, model_class, no_progress
from .split import Split, SplitConfig, make_split
from .store import save_run
from .synthetic import SyntheticConfig, write_csv


def prepare_split(data: str | Path, columns: ColumnSpec, split: SplitConfig,
                  test_path: str | Path | None = None) -> Split:
    """Read the CSV (and an explicit test file) and split it deterministically."""
    ds = read_interactions(data, columns, test_path=test_path)
    return make_split(ds, split)


def info(data: str | Path, columns: ColumnSpec, split: SplitConfig,
         test_path: str | Path | None = None) -> dict:
    """Dataset summary plus the split summary (what ``mfvsdnn info`` shows)."""
    sp_ = prepare_split(data, columns, split, test_path)
    out = summarize(sp_.dataset)
    out["split"] = sp_.summary()
    return out


def make_data(out: str | Path, config: SyntheticConfig) -> dict:
    """Write grouped synthetic data to ``out``; returns a summary of the file written."""
    t0 = time.perf_counter()
    try:
        rows = write_csv(config, out)
    except ValueError as e:
        raise DataError(str(e)) from None
    ds = read_interactions(out)
    s = summarize(ds)
    s["seconds"] = time.perf_counter() - t0
    s["rows_written"] = rows
    s["config"] = dict(config.__dict__)
    return s


@dataclass
class TrainResult:
    model: Any
    split: Split
    run_dir: Path | None
    train_seconds: float
    valid_recall20: float
    summary: dict


def train_model(kind: str, split: Split, params: dict[str, Any], seed: int, out: str | Path | None,
                progress: ProgressFn = no_progress) -> TrainResult:
    """Fit a model of ``kind`` with ``params`` on ``split``, report validation recall@20, save to ``out``.

    The model's random generator is ``np.random.default_rng(seed)``; the seed and every
    hyper-parameter are recorded in the run's ``model.json``.
    """
    from .evaluate import validation_recall

    cls = model_class(kind)
    model = cls(**params)
    rng = np.random.default_rng(seed)
    train = split.train_set()
    t0 = time.perf_counter()
    model.fit(train, rng, progress)
    if not getattr(model, "train_seconds_", 0.0):
        model.train_seconds_ = time.perf_counter() - t0
    vr = validation_recall(model, train, k=20, rng=np.random.default_rng(seed + 1))
    run_dir = save_run(out, model, split, seed, extra={"valid_recall@20": vr}) if out else None
    summary = {
        "kind": kind,
        "run_dir": str(run_dir) if run_dir else None,
        "params": model.get_params(),
        "seed": seed,
        "train_seconds": float(model.train_seconds_),
        "valid_recall@20": vr,
        "history": list(getattr(model, "history_", [])),
        "split": split.summary(),
    }
    return TrainResult(model, split, run_dir, float(model.train_seconds_), vr, summary)
