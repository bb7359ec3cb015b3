"""Run directories: save and load fitted models without pickle, atomically.

A run directory holds

- ``model.json``: kind, package version, hyper-parameters, seed, split fingerprint and parameters,
  training time, loss history, and the SHA-256 of both array files;
- ``model.npz``: the model's learned arrays (``model.state()``);
- ``data.npz``: what serving needs besides the model: raw user and item ids (index -> id), the items
  each training user already knows (train + validation, CSR parts), item and user groups, and the
  user-feature codes.

The directory is written under a temporary name beside the target and renamed into place, so an
interrupted run never leaves a half-written model, and an existing run is replaced only once the new
one is complete. Loading uses ``allow_pickle=False`` and checks the hashes, so a corrupt, truncated,
edited or foreign file gives a clear :class:`StoreError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import StoreError
from ..core.version import __version__
from ..data import file_sha256
from ..data.split import Split

FORMAT = "mfvsdnn-run"
FORMAT_VERSION = 1


@dataclass
class Run:
    """A loaded run: the fitted model plus the id maps and known items needed to serve it."""

    path: Path
    model: Any
    meta: dict
    user_ids: np.ndarray  # (n_users,) str
    item_ids: np.ndarray  # (n_items,) str
    known: sp.csr_matrix  # (n_users, n_items) items each training user already has
    item_groups: np.ndarray | None = None
    user_groups: np.ndarray | None = None
    group_names: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    feature_values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def fingerprint(self) -> str:
        return self.meta["split"]["fingerprint"]

    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {str(it): i for i, it in enumerate(self.item_ids)}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_json_default, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write text (or bytes) to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _data_arrays(split: Split) -> dict[str, np.ndarray]:
    ds = split.dataset
    known = split.known()
    arrays: dict[str, np.ndarray] = {
        "user_ids": np.asarray(ds.user_ids, dtype=str),
        "item_ids": np.asarray(ds.item_ids, dtype=str),
        "known_indptr": known.indptr.astype(np.int64),
        "known_indices": known.indices.astype(np.int32),
    }
    if ds.item_groups is not None:
        arrays["item_groups"] = ds.item_groups
    if ds.user_groups is not None:
        arrays["user_groups"] = ds.user_groups
    for name, codes in ds.features.items():
        arrays[f"feature__{name}"] = codes
    return arrays


def save_run(path: str | os.PathLike, model: Any, split: Split, seed: int,
             extra: dict[str, Any] | None = None) -> Path:
    """Save a fitted model with its split's id maps into run directory ``path`` (atomically).

    Returns the run directory's path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: exists and is not a directory; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        np.savez(tmp / "model.npz", **model.state())
        np.savez(tmp / "data.npz", **_data_arrays(split))
        ds = split.dataset
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": model.kind,
            "package_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": int(seed),
            "params": model.get_params(),
            "train_seconds": float(getattr(model, "train_seconds_", 0.0)),
            "history": list(getattr(model, "history_", [])),
            "split": {
                "fingerprint": split.fingerprint,
                "config": split.config.as_dict(),
                "source": ds.source,
                "columns": ds.columns.as_dict(),
            },
            "dataset": {
                "n_users": ds.n_users,
                "n_items": ds.n_items,
                "group_names": list(ds.group_names),
                "feature_values": ds.feature_values,
            },
            "files": {name: file_sha256(tmp / name) for name in ("model.npz", "data.npz")},
        }
        if extra:
            meta.update(extra)
        with open(tmp / "model.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, default=_json_default)
            f.write("\n")
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise StoreError(f"{path}: cannot be read as a model array file ({type(e).__name__}: {e})") from None


def read_meta(path: str | os.PathLike) -> dict:
    """Read and validate a run directory's ``model.json``."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such run directory")
    if not path.is_dir():
        raise StoreError(f"{path}: not a run directory (expected a folder made by train-wals/train-softmax)")
    mj = path / "model.json"
    if not mj.exists():
        raise StoreError(f"{path}: no model.json here; is this a run directory made by mfvsdnn?")
    try:
        meta = json.loads(mj.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{mj}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{mj}: not an mfvsdnn run file (missing format {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{mj}: run format version {meta.get('format_version')} is not supported "
                         f"(this mfvsdnn reads version {FORMAT_VERSION}); retrain the model")
    for key in ("kind", "params", "split", "dataset", "files"):
        if key not in meta:
            raise StoreError(f"{mj}: missing the {key!r} entry; the file was edited or truncated")
    return meta


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by :func:`save_run`."""
    from . import registry

    path = Path(path)
    meta = read_meta(path)
    for name in ("model.npz", "data.npz"):
        f = path / name
        if not f.exists():
            raise StoreError(f"{f}: missing; the run directory is incomplete")
        expected = meta["files"].get(name)
        if expected != file_sha256(f):
            raise StoreError(f"{f}: does not match the hash recorded in model.json; "
                             "the file is corrupt or was changed after training")
    arrays = _load_npz(path / "model.npz")
    data = _load_npz(path / "data.npz")
    try:
        cls = registry.get(meta["kind"])
        model = cls.from_state(meta["params"], arrays, {"train_seconds": meta.get("train_seconds", 0.0),
                                                         "history": meta.get("history", [])})
        n_users, n_items = int(meta["dataset"]["n_users"]), int(meta["dataset"]["n_items"])
        known = sp.csr_matrix(
            (np.ones(len(data["known_indices"]), dtype=np.float32), data["known_indices"], data["known_indptr"]),
            shape=(n_users, n_items),
        )
        if len(data["user_ids"]) != n_users or len(data["item_ids"]) != n_items:
            raise ValueError("id maps do not match the recorded dataset size")
        if cls.capabilities.item_vectors and model.item_vectors.shape[0] != n_items:
            raise ValueError(f"model has {model.item_vectors.shape[0]} items, the data {n_items}")
    except StoreError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise StoreError(f"{path}: inconsistent run directory ({type(e).__name__}: {e})") from None
    feats = {k[len("feature__"):]: v for k, v in data.items() if k.startswith("feature__")}
    return Run(
        path=path, model=model, meta=meta, user_ids=data["user_ids"], item_ids=data["item_ids"], known=known,
        item_groups=data.get("item_groups"), user_groups=data.get("user_groups"),
        group_names=list(meta["dataset"].get("group_names", [])), features=feats,
        feature_values={k: list(v) for k, v in meta["dataset"].get("feature_values", {}).items()},
    )


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (used to name sweep points)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()[:12]
