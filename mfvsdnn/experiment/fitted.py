"""A fitted model as the runner holds it (every model seed of it, where it came from, its role)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.evaluator import PopulationEval
from .results import WARM, PopulationId, cold


@dataclass
class FittedModel:
    """A model ready to evaluate, and where it came from."""

    name: str
    model: Any
    seed: int | None
    run_dir: Path | None
    trained_here: bool
    validation_recall: float
    stages: dict[str, Any] | None = None  # a pipeline's {"retriever": name, "scorer": name, "candidates": N}
    #: the same model refitted with model seeds 1..R-1 (``--repeats``); ``model`` is seed 0
    others: list[Any] = field(default_factory=list)
    role: str = "model"
    variant_of: str | None = None
    tuning: dict[str, Any] | None = None
    validation_recalls: list[float] = field(default_factory=list)

    @property
    def all_models(self) -> list[Any]:
        return [self.model, *self.others]


def population_id(ev: PopulationEval) -> PopulationId:
    """The typed id of an evaluated population."""
    return WARM if ev.revealed is None else cold(ev.revealed)
