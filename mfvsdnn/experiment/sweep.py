"""``mfvsdnn sweep``: the trade-offs move. Every point trained and evaluated on one split.

Families (each a list of values, one model per value; other hyper-parameters at their defaults):

- ``wals / w0``: the unobserved weight of WALS (0 shows folding, larger values push unobserved
  scores to 0);
- ``softmax / negatives``: 0 (positives only), N sampled uniform negatives, or ``all`` (full softmax);
- ``softmax / sampler``: uniform, popularity (with logQ correction), hard, in-batch or mixed
  negatives, at ``sampler_negatives`` negatives;
- ``softmax / item_buckets``: the hashing trick's input-table size B (0 = unhashed) at
  ``sampler_negatives`` uniform negatives (``hash_output`` hashes the output table too, except at
  B = 0); every point records its model bytes;
- ``softmax / gravity``: the gravity weight g at ``gravity_negatives`` negatives (default 0, so the
  curve shows gravity alone fighting folding).

A point whose (model, hyper-parameters) equals an earlier one (e.g. uniform sampling at 50 negatives
appears in two families) is trained once and reported under both knobs.

``sweep.json`` is rewritten atomically after each finished point; a rerun with the same data, split
and settings reuses every point already in it (matched by a hash of model kind, hyper-parameters,
split fingerprint, ks and bootstrap count), so an interrupted sweep resumes where it stopped. A
sweep.json that mfvsdnn did not write (not a JSON object of format ``mfvsdnn-sweep``) is never
replaced: the resume is refused with a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..core.errors import MfvsdnnError, StoreError
from ..core.fsutil import claim_output
from ..core.progress import ProgressFn, no_progress
from ..data import ColumnSpec
from ..data.split import Split, SplitConfig
from ..evaluation.cost import model_bytes
from ..models import registry
from ..models.params import MAX_BOOTSTRAP, MAX_BUCKETS, MAX_K, MAX_NEGATIVES, as_float, as_int
from ..models.registry import check_params
from ..models.softmax.sampling import SAMPLERS
from ..models.store import config_hash, json_text
from . import runner
from .spec import DataSpec, ExperimentSpec, ModelSpec

SWEEP_FORMAT = "mfvsdnn-sweep"
#: how a point's results are stored: 2 = typed populations (PopulationResult.to_dict), as in report.json
POINT_FORMAT = 2


def _negatives(v: Any) -> int | str:
    if isinstance(v, str) and v.strip().lower() == "all":
        return "all"
    if isinstance(v, bool):
        raise MfvsdnnError(f"--negatives values must be integers >= 0 or 'all', got {v!r}")
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise MfvsdnnError(f"--negatives values must be integers >= 0 or 'all', got {v!r}") from None
    if not 0 <= n <= MAX_NEGATIVES:
        raise MfvsdnnError(f"--negatives values must be in [0, {MAX_NEGATIVES:,}] or 'all', got {n}")
    return n


@dataclass(frozen=True)
class SweepConfig:
    """The knobs to sweep and the evaluation settings; recorded in sweep.json."""

    w0: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1, 0.5)
    negatives: tuple[int | str, ...] = (0, 5, 50, "all")
    sampler: tuple[str, ...] = ("uniform", "popularity", "hard")
    gravity: tuple[float, ...] = (0.0, 0.1, 1.0)
    item_buckets: tuple[int, ...] = ()
    hash_output: bool = False
    sampler_negatives: int = 50
    gravity_negatives: int | str = 0
    wals_params: dict[str, Any] = field(default_factory=dict)
    softmax_params: dict[str, Any] = field(default_factory=dict)
    ks: tuple[int, ...] = (10, 20, 50)
    bootstrap: int = 200

    def __post_init__(self) -> None:
        """Check every knob and setting, and build each point's model once (no data is needed), so a
        bad value or hyper-parameter stops the sweep before the data is read or anything is trained."""
        object.__setattr__(self, "w0", tuple(as_float("--w0 values", w, 0.0, 1.0, hi_open=True) for w in self.w0))
        object.__setattr__(self, "negatives", tuple(_negatives(v) for v in self.negatives))
        object.__setattr__(self, "gravity_negatives", _negatives(self.gravity_negatives))
        object.__setattr__(self, "gravity", tuple(as_float("--gravity values", g, 0.0) for g in self.gravity))
        for s in self.sampler:
            if s not in SAMPLERS:
                raise MfvsdnnError(f"--sampler values must be {', '.join(SAMPLERS)}; got {s!r}")
        object.__setattr__(self, "item_buckets",
                           tuple(as_int("--item-buckets values", b, 0, MAX_BUCKETS) for b in self.item_buckets))
        object.__setattr__(self, "sampler_negatives",
                           as_int("--sampler-negatives", self.sampler_negatives, 1, MAX_NEGATIVES))
        if not self.ks:
            raise MfvsdnnError("--k needs at least one cut-off")
        object.__setattr__(self, "ks", tuple(as_int("--k", k, 1, MAX_K) for k in self.ks))
        object.__setattr__(self, "bootstrap", as_int("--bootstrap", self.bootstrap, 0, MAX_BOOTSTRAP))
        if not (self.w0 or self.negatives or self.sampler or self.gravity or self.item_buckets):
            raise MfvsdnnError("nothing to sweep: every knob list is empty")
        swept = {"wals": {"w0": bool(self.w0)},
                 "softmax": {"negatives": bool(self.negatives or self.sampler or self.gravity or self.item_buckets),
                             "sampler": bool(self.sampler), "gravity": bool(self.gravity),
                             "item_buckets": bool(self.item_buckets),
                             "hash_output": bool(self.item_buckets and self.hash_output)}}
        options = {"wals": "--wals-param", "softmax": "--softmax-param"}
        for kind, fixed in (("wals", self.wals_params), ("softmax", self.softmax_params)):
            clash = [k for k in fixed if swept[kind].get(k)]
            if clash:
                raise MfvsdnnError(f"{options[kind]} {clash[0]}=...: {clash[0]} is swept (--{clash[0]}); "
                                   f"set it with --{clash[0]} instead")
        for p in self.points():
            check_params(p["model"], p["params"], f"{options[p['model']]} (point {p['knob']}={p['value']})")

    def points(self) -> list[dict[str, Any]]:
        """Every (model, knob, value, params) to run, in order."""
        out: list[dict[str, Any]] = []
        for w in self.w0:
            out.append({"model": "wals", "knob": "w0", "value": float(w), "params": {**self.wals_params, "w0": float(w)}})
        for n in self.negatives:
            out.append({"model": "softmax", "knob": "negatives", "value": n,
                        "params": {**self.softmax_params, "negatives": n}})
        for s in self.sampler:
            out.append({"model": "softmax", "knob": "sampler", "value": s,
                        "params": {**self.softmax_params, "negatives": self.sampler_negatives, "sampler": s}})
        for g in self.gravity:
            out.append({"model": "softmax", "knob": "gravity", "value": float(g),
                        "params": {**self.softmax_params, "negatives": self.gravity_negatives, "gravity": float(g)}})
        for b in self.item_buckets:
            params = {**self.softmax_params, "negatives": self.sampler_negatives, "item_buckets": b}
            if b and self.hash_output:  # B = 0 stays the unhashed reference
                params["hash_output"] = True
            out.append({"model": "softmax", "knob": "item_buckets", "value": b, "params": params})
        return out


def _full_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every hyper-parameter of the model the point trains (defaults filled in); validates them."""
    return registry.get(kind)(**params).get_params()


def _point_key(kind: str, full: dict[str, Any], fingerprint: str, cfg: SweepConfig) -> str:
    return config_hash({"model": kind, "params": full, "split": fingerprint, "ks": list(cfg.ks),
                        "bootstrap": cfg.bootstrap, "point_format": POINT_FORMAT})


def run_point(kind: str, params: dict[str, Any], split: Split, cfg: SweepConfig,
              progress: ProgressFn = no_progress) -> dict[str, Any]:
    """Train one model on the split and evaluate it through the experiment runner (every population)."""
    model_spec = ModelSpec(kind, dict(params))
    spec = ExperimentSpec(None, split.config, [model_spec], ks=tuple(cfg.ks), bootstrap=cfg.bootstrap,
                          serving_sample=0)
    fitted = runner.fit_model(model_spec, split, spec.seed, progress)
    [result], _ = runner.evaluate_models([fitted], split, spec.check())
    return {"params": result.params, "train_seconds": float(result.training.seconds),
            "model_bytes": model_bytes(fitted.model),
            "epochs_or_iterations": result.training.iterations,
            "populations": [p.to_dict() for p in result.populations]}


# worker side of --jobs: each process builds the split once (deterministic, so identical)
_WORKER: dict[str, Any] = {}


def _worker_init(data: str, columns: dict, split_cfg: dict, test: str | None) -> None:
    cols = ColumnSpec(**{**columns, "user_features": tuple(columns["user_features"])})
    sc = SplitConfig(**{**split_cfg, "revealed": tuple(split_cfg["revealed"])})
    _WORKER["split"] = runner.prepare_split(DataSpec(Path(data), cols, Path(test) if test else None), sc)


def _worker_run(kind: str, params: dict[str, Any], cfg: SweepConfig) -> dict[str, Any]:
    if kind == "wals":
        params = {**params, "num_threads": 1}
    res = run_point(kind, params, _WORKER["split"], cfg)
    if kind == "wals":
        res["params"].pop("num_threads", None)
    return res


def load_previous(path: Path, fingerprint: str) -> dict[str, dict]:
    """Finished points of an earlier (possibly interrupted) sweep on the same split, by key.

    A sweep on another split gives nothing (it is started afresh); a file that is not a sweep
    mfvsdnn wrote is refused (StoreError), so it is never overwritten.
    """
    if not path.exists():
        return {}

    def refuse(what: str) -> StoreError:
        return StoreError(f"{path}: {what}, not a sweep written by mfvsdnn; resume refused (move the file away "
                          "or choose another --report-dir)")

    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise StoreError(f"{path}: cannot be read ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise refuse("not valid JSON") from None
    if not isinstance(old, dict):
        raise refuse(f"holds a JSON {type(old).__name__}")
    if old.get("format") != SWEEP_FORMAT:
        raise refuse(f"has format {old.get('format')!r}")
    results = old.get("results", [])
    split = old.get("split")
    if not isinstance(results, list) or not isinstance(split, dict) \
            or not all(isinstance(r, dict) and isinstance(r.get("key"), str) for r in results):
        raise refuse("has malformed results")
    if split.get("fingerprint") != fingerprint:
        return {}
    return {r["key"]: r for r in results}


def run_sweep(split: Split, cfg: SweepConfig, report_dir: str | Path, jobs: int = 1,
              data_args: tuple[str, dict, dict, str | None] | None = None,
              on_point: Callable[[int, int, dict], None] | None = None,
              progress_factory: Any = None) -> dict:
    """Run (or resume) every point and write ``report_dir/sweep.json`` after each.

    Parameters
    ----------
    split : the shared split. cfg : what to sweep. jobs : parallel worker processes (each rebuilds the
        split from ``data_args`` = (data path, column dict, split-config dict, test path)).
    on_point : called as (done, total, point) after each point (cached ones included).
    progress_factory : ``description -> context manager yielding a ProgressFn`` for in-process training.

    Returns
    -------
    The sweep.json content.
    """
    with claim_output(report_dir, "sweep", option="--report-dir") as claim:
        return _run_sweep(claim, split, cfg, jobs, data_args, on_point, progress_factory)


def _run_sweep(claim: Any, split: Split, cfg: SweepConfig, jobs: int,
               data_args: tuple[str, dict, dict, str | None] | None,
               on_point: Callable[[int, int, dict], None] | None, progress_factory: Any) -> dict:
    path = Path(claim.display) / "sweep.json"
    previous = load_previous(path, split.fingerprint)
    todo = cfg.points()
    unique: dict[str, dict] = {}
    for p in todo:
        p["full_params"] = _full_params(p["model"], p["params"])
        p["key"] = _point_key(p["model"], p["full_params"], split.fingerprint, cfg)
        unique.setdefault(p["key"], {"model": p["model"], "params": p["params"]})
    results: dict[str, dict] = {k: previous[k] for k in unique if k in previous}
    ds = split.dataset
    header = {
        "format": SWEEP_FORMAT,
        "split": split.summary(),
        "dataset": {"source": ds.source, "users": ds.n_users, "items": ds.n_items, "interactions": ds.nnz,
                    "groups": list(ds.group_names), "user_features": list(ds.features)},
        "config": {**asdict(cfg), "negatives": list(cfg.negatives)},
        "seed": split.config.seed,
    }

    def points_view() -> list[dict]:
        pts = []
        for p in todo:
            r = results.get(p["key"])
            if r is not None:
                pts.append({"model": p["model"], "knob": p["knob"], "value": p["value"], "key": p["key"],
                            "params": r["params"], "train_seconds": r["train_seconds"],
                            "epochs_or_iterations": r.get("epochs_or_iterations"),
                            "model_bytes": r.get("model_bytes"),
                            "populations": r["populations"], "resumed": p["key"] in previous})
        return pts

    def save() -> dict:
        doc = {**header, "points": points_view(),
               "results": [{"key": k, **v} for k, v in results.items()],
               "complete": len(results) == len(unique)}
        claim.write_live("sweep.json", json_text(doc))
        return doc

    total = len(unique)
    done = len(results)
    if on_point:
        for k in results:
            on_point(done, total, {"key": k, "resumed": True, **unique[k]})
    pending = [(k, v) for k, v in unique.items() if k not in results]
    doc = save()
    if jobs <= 1 or len(pending) <= 1:
        for k, v in pending:
            label = f"{v['model']} {', '.join(f'{a}={b}' for a, b in v['params'].items())}"
            if progress_factory:
                with progress_factory(label) as prog:
                    results[k] = run_point(v["model"], v["params"], split, cfg, prog)
            else:
                results[k] = run_point(v["model"], v["params"], split, cfg)
            done += 1
            doc = save()
            if on_point:
                on_point(done, total, {"key": k, "resumed": False, **v})
    else:
        if data_args is None:
            raise MfvsdnnError("--jobs > 1 needs the data file to rebuild the split in each worker")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_worker_init, initargs=data_args) as pool:
            futs = {pool.submit(_worker_run, v["model"], v["params"], cfg): (k, v) for k, v in pending}
            for fut in as_completed(futs):
                k, v = futs[fut]
                results[k] = fut.result()
                done += 1
                doc = save()
                if on_point:
                    on_point(done, total, {"key": k, "resumed": False, **v})
    return doc
