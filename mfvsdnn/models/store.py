"""Run directories: save and load fitted models without pickle, atomically, covered by a manifest.

A run directory holds

- ``model.json``: kind, package version, hyper-parameters, seed, split fingerprint and parameters,
  data sizes, group and feature labels, training time and loss history;
- ``model.npz``: the model's learned arrays (``model.state()``);
- ``data.npz``: what serving needs besides the model: raw user and item ids (index -> id), the items
  each training user already knows (train + validation, CSR parts), item and user groups, and the
  user-feature codes;
- ``index-KIND.faiss`` + ``index-KIND.json`` (optional, written by ``recommend --index hnsw|ivf``):
  an approximate nearest-neighbour index of the item vectors in faiss's own format, and the SHA-256
  of the vectors it was built from (an index is never served for other vectors);
- ``manifest.json``: the SHA-256 and size of every other file, plus a hash of its own entries;
- ``.mfvsdnn.json``: the ownership marker (see :mod:`mfvsdnn.core.fsutil`).

:func:`save_run` builds the run in a staging folder and switches it into place atomically
(:func:`mfvsdnn.core.fsutil.claim_output`). :func:`load_run` checks the manifest first (any edit of any
file, model.json included, is refused), then validates every field of model.json (type and range)
and every array against it before anything is built from them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core import fsutil
from ..core.errors import ModelError, StoreError
from ..core.version import __version__
from ..data import file_sha256
from ..data.split import Split
from . import registry

FORMAT = "mfvsdnn-run"
FORMAT_VERSION = 2  # 2: manifest.json covers every file; 1 (mfvsdnn 0.1) hashed only the arrays
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mfvsdnn-manifest"
RUN_FILES = ("model.json", "model.npz", "data.npz")


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


def json_text(obj: Any) -> str:
    """The JSON text every mfvsdnn file uses (indented, numpy scalars as numbers, NaN allowed)."""
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n"


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


def _meta(model: Any, split: Split, seed: int, extra: dict[str, Any] | None) -> dict:
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
    }
    meta.update(extra or {})
    return meta


def _manifest_hash(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_run(directory: str | os.PathLike, model: Any, split: Split, seed: int,
              extra: dict[str, Any] | None = None) -> Path:
    """Write a run into ``directory``, a new or empty folder inside a staging folder (no swap)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if any(d.iterdir()):
        raise StoreError(f"{d}: a run is written only into a new or empty folder")
    for name, arrays in (("model.npz", model.state()), ("data.npz", _data_arrays(split))):
        with fsutil.open_new(d / name) as f:
            np.savez(f, **arrays)
    fsutil.write_new(d / "model.json", json_text(_meta(model, split, seed, extra)))
    files = {n: {"sha256": file_sha256(d / n), "bytes": (d / n).stat().st_size} for n in RUN_FILES}
    fsutil.write_new(d / MANIFEST, json_text({"format": MANIFEST_FORMAT, "manifest_version": 1, "files": files,
                                             "entries_sha256": _manifest_hash(files)}))
    fsutil.write_marker(d, "run", [*RUN_FILES, MANIFEST])
    return d


def save_run(path: str | os.PathLike, model: Any, split: Split, seed: int,
             extra: dict[str, Any] | None = None) -> Path:
    """Save a fitted model with its split's id maps into run directory ``path``, atomically.

    ``path`` must be new, empty, or a run written by mfvsdnn (else :class:`StoreError`); an existing
    run is replaced in one step. Inside a staging folder of this process (a compare building its
    report set) the run is written there directly. Returns ``path``.
    """
    path = Path(path)
    if fsutil.staged_claim(path) is not None:
        with fsutil.os_errors(str(path)):
            write_run(path, model, split, seed, extra)
        return path
    with fsutil.claim_output(path, "run") as claim:
        stage = claim.staging()
        with fsutil.os_errors(claim.display):
            write_run(stage, model, split, seed, extra)
        claim.commit(stage)
    return path


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise StoreError(f"{path}: cannot be read as a model array file ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# checks on load: the manifest, then every field of model.json, then the arrays against it


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from None
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not valid JSON ({e}); {what}") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot be read ({fsutil._cause(e)})") from None


def _older_or_missing(path: Path) -> StoreError:
    mj = path / "model.json"
    if not mj.exists():
        return StoreError(f"{path}: no model.json here; is this a run directory made by mfvsdnn?")
    try:
        meta = json.loads(mj.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("format_version") == 1:
        return StoreError(f"{path}: written by an older mfvsdnn (run format 1, no manifest); retrain the model")
    return StoreError(f"{path}: {MANIFEST} is missing, so the run cannot be verified; it is incomplete or was "
                      "edited; retrain")


def verify_manifest(path: Path) -> dict:
    """Check every file of the run against manifest.json; returns the manifest's file table."""
    mf = path / MANIFEST
    if not mf.is_file():
        raise _older_or_missing(path)
    man = _read_json(mf, "edited or corrupt run; retrain")
    files = man.get("files") if isinstance(man, dict) else None
    ok = (isinstance(man, dict) and man.get("format") == MANIFEST_FORMAT and isinstance(files, dict)
          and all(isinstance(n, str) and isinstance(e, dict) and isinstance(e.get("sha256"), str)
                  and isinstance(e.get("bytes"), int) for n, e in files.items()))
    if not ok or man.get("entries_sha256") != _manifest_hash(files):
        raise StoreError(f"edited or corrupt run: {mf} does not match its own hash; retrain")
    for name in RUN_FILES:
        if name not in files:
            raise StoreError(f"edited or corrupt run: {mf} does not list {name}; retrain")
    for name, entry in files.items():
        if name != os.path.basename(name) or name in ("", ".", "..", MANIFEST):
            raise StoreError(f"edited or corrupt run: {mf} names {name!r}, not a file of the run; retrain")
        f = path / name
        if not f.is_file():
            raise StoreError(f"{f}: missing; the run directory is incomplete; retrain")
        if f.stat().st_size != entry["bytes"] or file_sha256(f) != entry["sha256"]:
            raise StoreError(f"edited or corrupt run: {f} does not match the manifest; retrain")
    return files


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _str_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


_META_FIELDS: list[tuple[str, Any, str]] = [
    ("kind", lambda v: isinstance(v, str) and v in registry.kinds(), "a registered model kind"),
    ("package_version", lambda v: isinstance(v, str), "a string"),
    ("created", lambda v: isinstance(v, str), "a string"),
    ("seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("params", _str_dict, "an object of hyper-parameters"),
    ("train_seconds", lambda v: _is_num(v) and math.isfinite(v) and v >= 0, "a number >= 0"),
    ("history", lambda v: isinstance(v, list) and all(
        _str_dict(h) and all(x is None or _is_num(x) for x in h.values()) for h in v), "a list of objects of numbers"),
    ("split", _str_dict, "an object"),
    ("split.fingerprint", lambda v: isinstance(v, str) and len(v) > 0, "a non-empty string"),
    ("split.config", _str_dict, "an object"),
    ("split.source", lambda v: isinstance(v, str), "a string"),
    ("split.columns", _str_dict, "an object"),
    ("dataset", _str_dict, "an object"),
    ("dataset.n_users", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("dataset.n_items", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("dataset.group_names", _str_list, "a list of strings"),
    ("dataset.feature_values", lambda v: _str_dict(v) and all(_str_list(x) and x for x in v.values()),
     "an object of non-empty lists of strings"),
]
_META_OPTIONAL: list[tuple[str, Any, str]] = [
    ("valid_recall@20", lambda v: v is None or _is_num(v), "a number"),
    ("engine", lambda v: v in ("local", "spark"), "'local' or 'spark'"),
    ("spark", _str_dict, "an object"),
]


def validate_meta(meta: Any, mj: Path) -> dict:
    """Check the type and range of every field of model.json; returns it."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StoreError(f"{mj}: not an mfvsdnn run file (missing format {FORMAT!r})")
    v = meta.get("format_version")
    if v != FORMAT_VERSION:
        if _is_int(v) and v < FORMAT_VERSION:
            raise StoreError(f"{mj}: written by an older mfvsdnn (run format {v}); retrain the model")
        raise StoreError(f"{mj}: run format version {v!r} is not supported (this mfvsdnn reads version "
                         f"{FORMAT_VERSION}); retrain the model")

    def get(key: str) -> tuple[bool, Any]:
        obj: Any = meta
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                return False, None
            obj = obj[part]
        return True, obj

    for key, test, need in _META_FIELDS + _META_OPTIONAL:
        present, value = get(key)
        if not present:
            if (key, test, need) in _META_OPTIONAL:
                continue
            raise StoreError(f"{mj}: missing the {key!r} entry; the file was edited or truncated")
        if not test(value):
            raise StoreError(f"{mj}: {key} must be {need}, got {json.dumps(value, default=str)[:60]}; "
                             "the file was edited or is corrupt")
    return meta


def read_meta(path: str | os.PathLike) -> dict:
    """Verify a run directory's manifest and return its validated ``model.json``."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        fsutil.recover(path)
    if not path.exists():
        raise StoreError(f"{path}: no such run directory")
    if not path.is_dir():
        raise StoreError(f"{path}: not a run directory (expected a folder made by train-wals/train-softmax)")
    verify_manifest(path)
    mj = path / "model.json"
    return validate_meta(_read_json(mj, "the file was edited or is corrupt"), mj)


def _int_array(a: Any, shape: tuple[int, ...], lo: int, hi: int) -> bool:
    """An integer array of this shape with values in [lo, hi)."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.shape != shape:
        return False
    return a.size == 0 or (int(a.min()) >= lo and int(a.max()) < hi)


def _check_data(data: dict[str, np.ndarray], meta: dict, path: Path) -> None:
    """Every array of data.npz against model.json's sizes and labels (before anything is built)."""
    ds = meta["dataset"]
    n_users, n_items = ds["n_users"], ds["n_items"]
    n_groups = len(ds["group_names"])
    feats = ds["feature_values"]

    def bad(what: str) -> StoreError:
        return StoreError(f"{path / 'data.npz'}: {what}; the run is inconsistent; retrain")

    expected = {"user_ids", "item_ids", "known_indptr", "known_indices", "item_groups", "user_groups",
                *(f"feature__{f}" for f in feats)}
    extra = sorted(set(data) - expected)
    if extra:
        raise bad(f"unexpected arrays {extra} (model.json lists the features {sorted(feats)})")
    for name, n in (("user_ids", n_users), ("item_ids", n_items)):
        a = data.get(name)
        if not isinstance(a, np.ndarray) or a.dtype.kind != "U" or a.shape != (n,):
            got = "missing" if a is None else f"shape {a.shape}, dtype {a.dtype}"
            raise bad(f"{name} must be {n:,} strings (model.json), got {got}")
        if len(np.unique(a)) != n:
            raise bad(f"{name} holds duplicate ids")
    ptr, idx = data.get("known_indptr"), data.get("known_indices")
    if ptr is None or idx is None or idx.ndim != 1 or not _int_array(idx, idx.shape, 0, n_items):
        raise bad(f"known_indices must be item indices in [0, {n_items})")
    if not _int_array(ptr, (n_users + 1,), 0, len(idx) + 1) or ptr[0] != 0 or ptr[-1] != len(idx) \
            or (np.diff(ptr) < 0).any():
        raise bad(f"known_indptr must be {n_users + 1:,} non-decreasing offsets from 0 to {len(idx):,}")
    for name, n in (("item_groups", n_items), ("user_groups", n_users)):
        if name in data and not _int_array(data[name], (n,), -1, n_groups):
            raise bad(f"{name} must be {n:,} codes of the {n_groups} group names in model.json")
    if "item_groups" not in data and n_groups and "user_groups" not in data:
        raise bad("model.json names groups but there are no group codes")
    for f, values in feats.items():
        a = data.get(f"feature__{f}")
        if a is None:
            raise bad(f"the codes of feature {f!r} (listed in model.json) are missing")
        if not _int_array(a, (n_users,), -1, len(values)):
            raise bad(f"feature__{f} must be {n_users:,} codes of its {len(values)} labels in model.json")


def _check_params(cls: type, params: dict, mj: Path) -> None:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise StoreError(f"{mj}: params has unknown hyper-parameter(s) {', '.join(unknown)} for a "
                         f"{cls.kind} model; the file was edited or is corrupt")


def load_run(path: str | os.PathLike) -> Run:
    """Load a run directory written by :func:`save_run`; any edit or inconsistency is a StoreError."""
    path = Path(path)
    meta = read_meta(path)
    mj = path / "model.json"
    arrays = _load_npz(path / "model.npz")
    data = _load_npz(path / "data.npz")
    _check_data(data, meta, path)
    ds = meta["dataset"]
    cls = registry.get(meta["kind"])
    _check_params(cls, meta["params"], mj)
    info = {"train_seconds": meta["train_seconds"], "history": meta["history"], "n_users": ds["n_users"],
            "n_items": ds["n_items"], "feature_cardinalities": {f: len(v) for f, v in ds["feature_values"].items()}}
    try:
        model = cls.from_state(meta["params"], arrays, info)
    except StoreError:
        raise
    except ModelError as e:
        raise StoreError(f"{path}: {e}") from None
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise StoreError(f"{path}: inconsistent run directory ({type(e).__name__}: {e})") from None
    if cls.capabilities.item_vectors and model.item_vectors.shape[0] != ds["n_items"]:
        raise StoreError(f"{path}: the model has {model.item_vectors.shape[0]:,} items, model.json {ds['n_items']:,}")
    idx = data["known_indices"]
    known = sp.csr_matrix((np.ones(len(idx), dtype=np.float32), idx.astype(np.int32),
                           data["known_indptr"].astype(np.int64)), shape=(ds["n_users"], ds["n_items"]))
    feats = {k[len("feature__"):]: v.astype(np.int32) for k, v in data.items() if k.startswith("feature__")}
    feature_values = {k: list(v) for k, v in ds["feature_values"].items()}
    if hasattr(model, "remember_ids"):  # so the loaded model answers recommend() in raw ids
        model.remember_ids(data["user_ids"], data["item_ids"], known, feats, feature_values, data.get("user_groups"))
    return Run(
        path=path, model=model, meta=meta, user_ids=data["user_ids"], item_ids=data["item_ids"], known=known,
        item_groups=data.get("item_groups"), user_groups=data.get("user_groups"),
        group_names=list(ds["group_names"]), features=feats,
        feature_values=feature_values,
    )


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (used to name sweep points)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# a stored item-vector index (faiss's own serialization, no pickle), covered by the manifest


def index_files(kind: str) -> tuple[str, str]:
    """(index file, its description) of an index of ``kind`` in a run directory."""
    return f"index-{kind}.faiss", f"index-{kind}.json"


def _write_with_index(d: Path, source: Path, files: dict, kind: str, blob: bytes, info: dict) -> None:
    """Fill staging folder ``d``: the run's files linked from ``source``, the index, a new manifest."""
    index_name, info_name = index_files(kind)
    names = [n for n in files if n not in (index_name, info_name)]
    for n in names:
        try:
            os.link(source / n, d / n)
        except OSError:  # a filesystem without hard links
            fsutil.write_new(d / n, (source / n).read_bytes())
    fsutil.write_new(d / index_name, blob)
    fsutil.write_new(d / info_name, json_text(info))
    names += [index_name, info_name]
    table = {n: {"sha256": file_sha256(d / n), "bytes": (d / n).stat().st_size} for n in names}
    fsutil.write_new(d / MANIFEST, json_text({"format": MANIFEST_FORMAT, "manifest_version": 1, "files": table,
                                             "entries_sha256": _manifest_hash(table)}))
    fsutil.write_marker(d, "run", [*names, MANIFEST])


def save_index(path: str | os.PathLike, index: Any) -> Path:
    """Store a built faiss index (``models.index``) in run directory ``path``, atomically.

    The run is rebuilt in a staging folder (its files hard-linked), the index and the hash of its
    item vectors added, the manifest rewritten over every file, and the folder switched into place.
    """
    from .index import require_faiss, vectors_hash

    faiss = require_faiss(index.kind)
    path = Path(path)
    files = verify_manifest(path)
    blob = faiss.serialize_index(index.index).tobytes()
    info = {"kind": index.kind, "items": index.n_items, "dim": int(index.item_vectors.shape[1]),
            "vectors_sha256": vectors_hash(index.item_vectors), "faiss_version": faiss.__version__,
            "mfvsdnn_version": __version__}
    with fsutil.claim_output(path, "run") as claim:
        stage = claim.staging()
        with fsutil.os_errors(claim.display):
            _write_with_index(stage, path, files, index.kind, blob, info)
        claim.commit(stage)
    return path


def load_index(path: str | os.PathLike, kind: str, item_vectors: np.ndarray,
               search_param: int | None = None) -> Any:
    """The stored index of ``kind`` for these item vectors, or None when the run stores none.

    Refused (StoreError) when the manifest does not cover it, or when it was built from other item
    vectors than ``item_vectors`` (the caller rebuilds it).
    """
    from .index import INDEXES, require_faiss, vectors_hash

    faiss = require_faiss(kind)
    path = Path(path)
    files = verify_manifest(path)
    index_name, info_name = index_files(kind)
    if index_name not in files and not (path / index_name).exists():
        return None
    if index_name not in files or info_name not in files:
        raise StoreError(f"{path / index_name}: not covered by the run's manifest; delete it or rebuild the run")
    info = _read_json(path / info_name, "the index description was edited or is corrupt")
    if not isinstance(info, dict) or info.get("vectors_sha256") != vectors_hash(item_vectors):
        raise StoreError(f"{path / index_name}: built from other item vectors than the model's; rebuild it")
    try:
        raw = faiss.deserialize_index(np.frombuffer((path / index_name).read_bytes(), dtype=np.uint8))
    except RuntimeError as e:
        raise StoreError(f"{path / index_name}: cannot be read by faiss ({str(e).splitlines()[0]})") from None
    index = INDEXES[kind].from_faiss(raw, item_vectors, search_param)
    if raw.ntotal != index.n_indexed or raw.d != item_vectors.shape[1]:
        raise StoreError(f"{path / index_name}: indexes {raw.ntotal:,} vectors of dimension {raw.d}, the model "
                         f"has {index.n_indexed:,} distinct ones of dimension {item_vectors.shape[1]}; rebuild it")
    return index


def run_index(run: Run, kind: str, search_param: int | None = None) -> tuple[Any, bool]:
    """The index of ``kind`` to serve ``run`` from: the stored one, else built and stored now.

    Returns (index, built_now). A stored index of other item vectors is rebuilt and replaced.
    """
    from .index import build_index

    vectors = np.asarray(run.model.item_vectors, dtype=np.float32)
    if kind == "exact":
        return build_index("exact", vectors), False
    try:
        stored = load_index(run.path, kind, vectors, search_param)
    except StoreError:
        stored = None  # stale or damaged: rebuilt from the model's vectors below
    if stored is not None:
        return stored, False
    index = build_index(kind, vectors, search_param)
    save_index(run.path, index)
    return index, True
