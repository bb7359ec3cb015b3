"""Folders and files that belong to mfvsdnn: ownership markers, locks and atomic replacement.

Every folder the tool writes (a run, a compare report set, a sweep, a scale report) holds a marker
``.mfvsdnn.json`` naming what it is and the entries the tool wrote. An output folder may be a path
that does not exist, an empty folder, or a folder of the same kind written by mfvsdnn (folders
written by the previous version are recognised by their files); anything else is refused with a
:class:`StoreError` and never touched.

A command holds :func:`claim_output` on each output for its whole duration: an advisory lock
(``fcntl.flock`` on ``.NAME.lock`` beside the target; a second writer stops at once), the ownership
checks, and the clean-up of temporaries a crashed writer left. The new contents are built in a
staging folder beside the target (``.NAME.mfvsdnn-tmp-PID-HEX``) and swapped in with one
``renameat2(RENAME_EXCHANGE)``, so at every instant the path holds either the complete old or the
complete new set. Where the exchange is not supported the swap takes two renames (old aside to
``.NAME.mfvsdnn-old-PID-HEX``, then new into place); the next writer, and a reader that finds the
path missing, put the old one back if a crash fell between them.

Files and folders are created with modes 0o666 / 0o777, so they follow the umask like any other
program's output (0644 / 0755 under umask 022).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import StoreError

MARKER = ".mfvsdnn.json"
MARKER_FORMAT = "mfvsdnn-output"
WHAT = {
    "run": "a run folder (train-wals / train-softmax)",
    "compare": "a compare report folder",
    "sweep": "a sweep report folder",
    "scale": "a scale report folder",
    "datasets": "a dataset cache folder (datasets fetch)",
}
TMP_TAG, OLD_TAG = "mfvsdnn-tmp", "mfvsdnn-old"
# lock files, staging folders and set-aside folders of any target inside a folder: the tool's own
_TRANSIENT = re.compile(r"^\..+\.(?:lock|mfvsdnn-(?:tmp|old)-\d+-[0-9a-f]+)$")


def _legacy_sig(key: str, test: Callable[[dict], bool], names: Iterable[str]) -> tuple[str, Callable, frozenset]:
    return key, test, frozenset(names)


# folders written before markers existed, recognised by their main file and holding only these names
_LEGACY = {
    "run": _legacy_sig("model.json", lambda d: d.get("format") == "mfvsdnn-run",
                       ("model.json", "model.npz", "data.npz", "manifest.json")),
    "compare": _legacy_sig("report.json", lambda d: "models" in d and "settings" in d,
                           ("report.json", "report.md", "report.html", "runs")),
    "sweep": _legacy_sig("sweep.json", lambda d: d.get("format") == "mfvsdnn-sweep",
                         ("sweep.json", "sweep.md", "sweep.html")),
    "scale": _legacy_sig("scale.json", lambda d: "fits" in d and "points" in d,
                         ("scale.json", "scale.md", "scale.html")),
}


def _fault(step: str) -> None:
    """Called between the steps of every replacement ("staged", "aside", "swapped", "cleaned",
    "file-staged"); does nothing. Tests replace it to stop a write at any step."""


# ---------------------------------------------------------------------------------------------
# low-level operations

_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


@functools.cache
def _renameat2_fn() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """renameat2(2); False where the system or filesystem does not support ``flags``."""
    fn = _renameat2_fn()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where that is not supported."""
    return _renameat2(a, b, _RENAME_EXCHANGE)


def _place(src: Path, dst: Path) -> None:
    """Rename ``src`` to a ``dst`` that does not exist (refusing, where supported, if it appeared)."""
    if not _renameat2(src, dst, _RENAME_NOREPLACE):
        os.rename(src, dst)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dirs(root: Path) -> None:
    """fsync every folder under ``root`` (files are synced as they are written), so the swap never
    reaches the disk before the entries it switches in."""
    for d, _, _ in os.walk(root):
        _fsync_dir(Path(d))


def _token() -> str:
    return f"{os.getpid()}-{os.urandom(4).hex()}"


@contextlib.contextmanager
def open_new(path: str | os.PathLike, text: bool = False) -> Iterator[IO[Any]]:
    """Create ``path`` (it must not exist) with mode 0o666 & ~umask; flushed and fsynced on close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    raw = os.fdopen(fd, "wb")
    f: IO[Any] = io.TextIOWrapper(raw, encoding="utf-8", newline="") if text else raw
    with f:
        yield f
        f.flush()
        os.fsync(fd)


def write_new(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a new file (inside a staging folder) in one call."""
    with open_new(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _cause(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0, "")
    why = e.strerror or str(e)
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why += ": the folder is read-only or not writable by you"
    return f"{why}{f' [{name}]' if name else ''}"


@contextlib.contextmanager
def os_errors(display: str, doing: str = "cannot write") -> Iterator[None]:
    """Turn an OSError (full disk, read-only folder, ...) into one StoreError line naming the path."""
    try:
        yield
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"{display}: {doing} ({_cause(e)}); nothing was replaced") from None


def _read_json(path: Path, limit: int = 64 << 20) -> Any:
    try:
        if path.stat().st_size > limit:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:2])
    return shown + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def _is_dir(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink()


# ---------------------------------------------------------------------------------------------
# ownership


def owner_of(path: Path) -> tuple[str | None, frozenset[str]]:
    """(kind, the entries mfvsdnn wrote) of a folder, or (None, {}) if mfvsdnn did not write it."""
    m = _read_json(path / MARKER)
    if m is not None or (path / MARKER).exists():
        ok = (isinstance(m, dict) and m.get("format") == MARKER_FORMAT and m.get("what") in WHAT
              and isinstance(m.get("entries"), list) and all(isinstance(e, str) for e in m["entries"]))
        return (m["what"], frozenset(m["entries"]) | {MARKER}) if ok else (None, frozenset())
    for what, (key, test, names) in _LEGACY.items():
        d = _read_json(path / key) if (path / key).is_file() else None
        if isinstance(d, dict) and test(d):
            return what, names
    return None, frozenset()


@dataclass
class Folder:
    """What is at an output path. state: missing, empty, owned (a tool folder), holder (a plain folder
    holding only tool folders), foreign, file or symlink."""

    state: str
    what: str | None = None
    foreign: list[str] = field(default_factory=list)  # entries mfvsdnn did not write (relative paths)
    own: frozenset[str] = frozenset()


def inspect_folder(path: Path) -> Folder:
    """Classify an output path; for a tool folder, list whatever inside it the tool did not write.

    Inside a tool folder, besides its own entries, the tool's transient files (locks, staging
    folders) and other complete tool folders (e.g. a sweep inside a compare report folder) are fine.
    """
    if path.is_symlink():
        return Folder("symlink")
    if not path.exists():
        return Folder("missing")
    if not path.is_dir():
        return Folder("file")
    names = sorted(os.listdir(path))
    if not [n for n in names if not _TRANSIENT.match(n)]:  # nothing, or only the tool's leftovers
        return Folder("empty")
    what, own = owner_of(path)
    if what is None:
        if not _container_foreign(path, stop_at_first=True):  # only mfvsdnn folders (reports/ with sweep/)
            return Folder("holder")
        return Folder("foreign", foreign=[n for n in names if not _TRANSIENT.match(n)])
    foreign: list[str] = []
    for n in names:
        p = path / n
        if _TRANSIENT.match(n):
            continue
        if n in own:
            if _is_dir(p) and owner_of(p)[0] is None:  # a plain container, e.g. compare's runs/
                foreign += [f"{n}/{x}" for x in _container_foreign(p)]
            elif _is_dir(p):
                foreign += [f"{n}/{x}" for x in inspect_folder(p).foreign]
            continue
        sub = inspect_folder(p) if _is_dir(p) else Folder("foreign", foreign=[""])
        if sub.state != "owned":
            foreign.append(n)
        else:
            foreign += [f"{n}/{x}" for x in sub.foreign]
    return Folder("owned", what, foreign, own)


def _container_foreign(path: Path, stop_at_first: bool = False) -> list[str]:
    """What inside a plain folder is not a complete mfvsdnn folder (looking no deeper than those)."""
    out: list[str] = []
    for n in sorted(os.listdir(path)):
        c = path / n
        if _TRANSIENT.match(n):
            continue
        if not _is_dir(c) or owner_of(c)[0] is None:
            out.append(n)
        else:
            out += [f"{n}/{x}" for x in inspect_folder(c).foreign]
        if out and stop_at_first:
            break
    return out


def _nested_outputs(folder: Path, own: frozenset[str]) -> list[str]:
    """Relative paths of the complete tool folders inside an old set that are not part of it: other
    outputs (a sweep inside a report folder) and the runs held in its containers (compare's runs/)."""
    out = []
    for n in sorted(os.listdir(folder)):
        p = folder / n
        if _TRANSIENT.match(n) or not _is_dir(p):
            continue
        if n not in own and owner_of(p)[0] is not None:
            out.append(n)
        elif n in own and owner_of(p)[0] is None:
            out += [f"{n}/{c}" for c in sorted(os.listdir(p))
                    if not _TRANSIENT.match(c) and _is_dir(p / c) and owner_of(p / c)[0] is not None]
    return out


def _marker_doc(what: str, entries: Iterable[str]) -> dict:
    from .version import __version__

    return {"format": MARKER_FORMAT, "what": what, "package_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "entries": sorted(set(entries) - {MARKER})}


def write_marker(folder: Path, what: str, entries: Iterable[str]) -> None:
    """Write the ownership marker of a folder that is being built (a staging folder)."""
    write_new(folder / MARKER, json.dumps(_marker_doc(what, entries), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# locks: flock on .NAME.lock beside the target; the holder writes its pid and removes the file on
# release (a waiter that opened a removed file notices the inode changed and tries again)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _busy(display: str, pid: int | None, option: str, inside: str = "") -> StoreError:
    who = f"another mfvsdnn process{f' (pid {pid})' if pid else ''}"
    where = f"{inside}, which holds {display}" if inside else display
    return StoreError(f"{who} is writing {where}; wait for it or choose another {option}")


def _lock(target: Path, display: str, option: str) -> int:
    path = _lock_path(target)
    for _ in range(20):
        with os_errors(os.path.dirname(display.rstrip("/")) or ".", "cannot write here"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise _busy(display, pid, option) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # the pid only makes the busy message better
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise StoreError(f"{display}: could not take the lock {path}; try again")


def _unlock(target: Path, fd: int) -> None:
    path = _lock_path(target)
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.unlink(path)
    os.close(fd)


def _held_by_other(lock_file: Path) -> tuple[bool, int | None]:
    """Whether another process holds this lock file now (tested without waiting, then released)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True, _read_pid(fd)
    except OSError:
        return False, None
    finally:
        os.close(fd)  # also releases a shared lock just taken
    return False, None


# ---------------------------------------------------------------------------------------------
# claims

_HELD: dict[Path, Claim] = {}


def absolute(path: str | os.PathLike) -> Path:
    """The path with its parent resolved (symlinks included) and its last name kept as given."""
    a = Path(os.path.abspath(os.fspath(path)))
    return Path(os.path.realpath(a.parent)) / a.name if a.name else a


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


class Claim:
    """One output path held by this process: build the new contents in :meth:`staging`, then
    :meth:`commit`. Created by :func:`claim_output`."""

    def __init__(self, path: Path, display: str, what: str, option: str) -> None:
        self.path, self.display, self.what, self.option = path, display, what, option
        self._fd: int | None = None
        self._stages: list[Path] = []
        self._aside: Path | None = None

    # -- paths
    def staging(self) -> Path:
        """A new empty folder beside the target, removed when the claim ends unless committed."""
        p = self.path.parent / f".{self.path.name}.{TMP_TAG}-{_token()}"
        with os_errors(self.display):
            os.mkdir(p, 0o777)
        self._stages.append(p)
        return p

    def relative(self, p: str | os.PathLike) -> Path | None:
        """``p`` relative to the target if it lies inside it (or is it), else None."""
        a = absolute(p)
        return a.relative_to(self.path) if _inside(a, self.path) else None

    # -- checks
    def _accept(self, f: Folder) -> None:
        d, opt = self.display, self.option
        if f.state == "symlink":
            raise StoreError(f"{d}: is a symbolic link; give the folder itself or a new name for {opt}")
        if f.state == "file":
            raise StoreError(f"{d}: exists and is a file, not a folder; choose another {opt}")
        if f.state == "foreign":
            raise StoreError(f"{d}: not empty and not written by mfvsdnn (holds {_listing(f.foreign)}); "
                             f"choose a new or empty folder for {opt}")
        if f.state == "holder" and self.what == "run":
            inside = sorted(n for n in os.listdir(self.path) if not _TRANSIENT.match(n))
            raise StoreError(f"{d}: holds other mfvsdnn folders ({_listing(inside)}); choose a new or empty "
                             f"folder for {opt}")
        if f.state == "owned" and f.what != self.what:
            raise StoreError(f"{d}: is {WHAT[f.what or 'run']} written by mfvsdnn, not {WHAT[self.what]}; "
                             f"choose another {opt}")
        if f.state == "owned" and f.foreign:
            raise StoreError(f"{d}: written by mfvsdnn but also holds files it did not write "
                             f"({_listing(f.foreign)}); move them out or choose another {opt}")

    def _check_neighbours(self) -> None:
        """Refuse while another process writes a folder that holds this one, or one inside it."""
        for a in self.path.parents:
            if a.name and (a.parent / f".{a.name}.lock").exists():
                held, pid = _held_by_other(a.parent / f".{a.name}.lock")
                if held:
                    raise _busy(self.display, pid, self.option, inside=str(a))
        if _is_dir(self.path):
            for d, dirs, files in os.walk(self.path):
                dirs[:] = [x for x in dirs if not _TRANSIENT.match(x)]
                for f in files:
                    if f.endswith(".lock") and _TRANSIENT.match(f):
                        held, pid = _held_by_other(Path(d) / f)
                        if held:
                            inner = Path(d, f[1:-len(".lock")]).relative_to(self.path)
                            raise _busy(f"{Path(self.display) / inner}", pid, self.option)

    def _clean_stale(self) -> None:
        """Remove what a crashed writer left beside the target; put a set-aside old set back first."""
        parent, name = self.path.parent, self.path.name
        ours = re.compile(rf"^\.{re.escape(name)}\.(?:{TMP_TAG}|{OLD_TAG})-\d+-[0-9a-f]+$")
        older = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.(?:tmp|old)$")  # mfvsdnn 0.1's
        stale = [parent / e for e in os.listdir(parent) if ours.match(e) or older.match(e)]
        stale = [p for p in stale if not older.match(p.name)
                 or (_is_dir(p) and set(os.listdir(p)) <= {"model.json", "model.npz", "data.npz"})]
        if not self.path.exists() and not self.path.is_symlink():
            olds = [p for p in stale if (OLD_TAG in p.name or p.name.endswith(".old"))
                    and inspect_folder(p).state == "owned"]
            if olds:
                newest = max(olds, key=lambda p: p.stat().st_mtime)
                os.rename(newest, self.path)
                stale.remove(newest)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)

    def _acquire(self) -> None:
        _check_parents(self.path, self.display, f"choose another {self.option}")
        with os_errors(self.display, "cannot create the parent folder"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = _lock(self.path, self.display, self.option)
        with os_errors(self.display, "cannot clean up"):
            self._clean_stale()
        self._accept(inspect_folder(self.path))
        self._check_neighbours()

    def _release(self) -> None:
        try:
            if self._aside is not None and self._aside.exists() and not self.path.exists():
                with contextlib.suppress(OSError):
                    os.rename(self._aside, self.path)  # interrupted between the two renames
            for p in [*self._stages, *([self._aside] if self._aside else [])]:
                shutil.rmtree(p, ignore_errors=True)
        finally:
            self._stages.clear()
            self._aside = None
            if self._fd is not None:
                _unlock(self.path, self._fd)
                self._fd = None

    # -- writes
    def commit(self, stage: Path) -> None:
        """Switch the complete contents of ``stage`` into place as one set.

        Complete tool folders inside the old set that the new one does not replace (a run that a
        compare loaded, a sweep inside a report folder) are carried over as hard links.
        """
        if stage not in self._stages:
            raise ValueError(f"{stage} is not a staging folder of {self.display}")
        with os_errors(self.display):
            old = inspect_folder(self.path)
            self._accept(old)  # again: files may have appeared while the command ran
            produced = [n for n in os.listdir(stage) if n != MARKER]
            if old.state in ("owned", "holder"):
                for rel in _nested_outputs(self.path, old.own):
                    if not (stage / rel).exists() and not (stage / rel).is_symlink():
                        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                        _link_tree(self.path / rel, stage / rel)
            containers = [n for n in os.listdir(stage) if n not in produced and n != MARKER
                          and owner_of(stage / n)[0] is None]
            marked = (stage / MARKER).exists()
            what, listed = owner_of(stage) if marked else (None, frozenset())
            if marked and what != self.what:
                raise ValueError(f"{stage} holds {what!r}, not {self.what!r}")
            if not marked or containers:
                (stage / MARKER).unlink(missing_ok=True)
                write_marker(stage, self.what, [*listed, *produced, *containers])
            _sync_dirs(stage)
        _fault("staged")
        with os_errors(self.display):
            if old.state == "missing":
                _place(stage, self.path)
                self._stages.remove(stage)
            elif not exchange(stage, self.path):
                self._aside = self.path.parent / f".{self.path.name}.{OLD_TAG}-{_token()}"
                os.rename(self.path, self._aside)
                _fault("aside")
                os.rename(stage, self.path)
                self._stages.remove(stage)
            with contextlib.suppress(OSError):
                _fsync_dir(self.path.parent)
        _fault("swapped")
        old_copy = stage if stage in self._stages else self._aside  # the old set, now at a temporary name
        if old_copy is not None:
            shutil.rmtree(old_copy, ignore_errors=True)
        if stage in self._stages:
            self._stages.remove(stage)
        self._aside = None
        _fault("cleaned")

    def write_live(self, name: str, data: str | bytes) -> Path:
        """Replace one file inside the target in place (atomically), e.g. sweep.json after each point."""
        f = inspect_folder(self.path)
        if f.state in ("missing", "empty"):
            stage = self.staging()
            with os_errors(self.display):
                write_new(stage / name, data)
            self.commit(stage)
            return self.path / name
        self._accept(f)
        with os_errors(self.display):
            if name not in f.own or not (self.path / MARKER).exists():
                present = [n for n in os.listdir(self.path) if n in f.own]
                _replace_file(self.path / MARKER,
                              json.dumps(_marker_doc(self.what, [*present, name]), indent=2) + "\n")
            _replace_file(self.path / name, data)
        return self.path / name


    def adopt(self, name: str) -> Path:
        """The path of entry ``name`` inside the target, listed in its marker first (the target becomes an
        owned folder if it is missing or empty), for a file written in place while the claim is held:
        a download that grows across runs, or a file renamed into place when complete."""
        f = inspect_folder(self.path)
        if f.state in ("missing", "empty"):
            stage = self.staging()
            with os_errors(self.display):
                write_marker(stage, self.what, [name])
            self.commit(stage)
            return self.path / name
        self._accept(f)
        if name not in f.own:
            present = [n for n in os.listdir(self.path) if n in f.own]
            with os_errors(self.display):
                _replace_file(self.path / MARKER,
                              json.dumps(_marker_doc(self.what, [*present, name]), indent=2) + "\n")
        return self.path / name


def _replace_via(path: Path, write: Callable[[IO[Any]], Any], text: bool = False) -> Any:
    """Replace ``path`` atomically by what ``write(f)`` writes into a new hidden temporary beside it
    (fsynced, renamed over ``path``; removed on any failure). Returns what ``write`` returns."""
    tmp = path.parent / f".{path.name}.{TMP_TAG}-{_token()}"
    try:
        with open_new(tmp, text=text) as f:
            result = write(f)
        _fault("file-staged")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)
    return result


def _replace_file(path: Path, data: str | bytes) -> None:
    _replace_via(path, lambda f: f.write(data.encode("utf-8") if isinstance(data, str) else data))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links: copy, and sync like every other file
        shutil.copy2(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy,
                    ignore=lambda d, names: [n for n in names if _TRANSIENT.match(n)])


def _check_parents(target: Path, display: str, advice: str) -> None:
    """Refuse a path under a file, with a message naming the file (mkdir would say 'File exists')."""
    for a in target.parents:
        if a.exists():
            if not a.is_dir():
                raise StoreError(f"{display}: {a} is a file, not a folder; {advice}")
            return


def staged_claim(path: str | os.PathLike) -> Claim | None:
    """The claim of this process whose staging folder holds ``path``, if any."""
    a = absolute(path)
    for c in _HELD.values():
        if any(_inside(a, s) for s in c._stages):
            return c
    return None


def _check_inputs(target: Path, display: str, option: str, inputs: Iterable[Any]) -> None:
    for inp in inputs:
        if inp is None or "://" in str(inp):
            continue
        p = Path(os.path.realpath(os.fspath(inp)))
        if _inside(p, target):
            raise StoreError(f"{option} {display}: holds the input file {inp}; choose a folder that does not "
                             "contain your data")


@contextlib.contextmanager
def claim_output(path: str | os.PathLike, what: str, *, option: str | None = None,
                 inputs: Iterable[Any] = ()) -> Iterator[Claim]:
    """Hold output folder ``path`` (kind ``what``: run, compare, sweep or scale) for a command.

    Refuses (StoreError), before anything is written: a path that is a file, a symbolic link, the
    working directory or one holding it, a folder mfvsdnn did not write or of another kind, a folder
    holding one of ``inputs``, and a path another process is writing. Re-entrant within a process.
    """
    if what not in WHAT:
        raise ValueError(f"unknown output kind {what!r}")
    option = option or ("--out" if what == "run" else "--report-dir")
    display = os.fspath(path)
    if not display:
        raise StoreError(f"{option}: empty path")
    target = absolute(path)
    held = _HELD.get(target)
    if held is not None:
        if held.what != what:
            raise StoreError(f"{display}: already written by this command as {WHAT[held.what]}")
        _check_inputs(target, display, option, inputs)
        yield held
        return
    if not target.name:
        raise StoreError(f"{option} {display}: refusing to write over the filesystem root")
    cwd = Path(os.path.realpath(os.getcwd()))
    if _inside(cwd, target):
        raise StoreError(f"{option} {display}: is the current working directory (or holds it); choose a new "
                         "or empty folder")
    for other in _HELD.values():
        if _inside(target, other.path) or _inside(other.path, target):
            raise StoreError(f"{display} and {other.display} are nested; the outputs of one command must be "
                             "separate folders")
    if target.exists() and not target.is_dir():
        raise StoreError(f"{display}: exists and is a file, not a folder; choose another {option}")
    _check_inputs(target, display, option, inputs)
    claim = Claim(target, display, what, option)
    _HELD[target] = claim
    try:
        claim._acquire()
        yield claim
    finally:
        try:
            claim._release()
        finally:
            del _HELD[target]


@contextlib.contextmanager
def claim_unless_staged(path: str | os.PathLike | None, what: str, *, option: str | None = None,
                        inputs: Iterable[Any] = ()) -> Iterator[Claim | None]:
    """:func:`claim_output`, except for no path or a path inside a staging folder (already held)."""
    if path is None or staged_claim(path) is not None:
        yield None
        return
    with claim_output(path, what, option=option, inputs=inputs) as c:
        yield c


def recover(path: str | os.PathLike) -> None:
    """For a reader that finds ``path`` missing: put back an old set a crashed swap left aside."""
    target = absolute(path)
    parent, name = target.parent, target.name
    try:
        olds = [parent / e for e in os.listdir(parent)
                if e.startswith(f".{name}.{OLD_TAG}-") or re.match(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.old$", e)]
    except OSError:
        return
    if not olds or target.exists():
        return
    display = os.fspath(path)
    try:
        fd = _lock(target, display, "--out")
    except StoreError:
        raise StoreError(f"{display}: another mfvsdnn process is replacing it right now; try again in a "
                         "moment") from None
    try:
        Claim(target, display, "run", "--out")._clean_stale()
    except OSError:
        pass
    finally:
        _unlock(target, fd)


# ---------------------------------------------------------------------------------------------
# single-file outputs (make-data OUT.csv, recommend --all --out FILE)


def first_line(path: Path, limit: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit).split(b"\n", 1)[0].rstrip(b"\r")


def write_file_atomic(path: str | os.PathLike, write: Callable[[IO[str]], Any], *, option: str,
                      header: str, overwrite: bool = False) -> Any:
    """Write one text file through a temporary file beside it and rename it into place.

    An existing file is replaced only if it is empty, starts with exactly ``header`` (a file mfvsdnn
    wrote), or ``overwrite`` is set; a folder, a symbolic link or a file inside a folder mfvsdnn owns
    is refused. Returns what ``write`` returns.
    """
    display = os.fspath(path)
    named = f"{option} {display}" if option else display
    target = absolute(path)
    if target.is_symlink():
        raise StoreError(f"{named}: is a symbolic link; give another file name")
    if target.is_dir():
        raise StoreError(f"{named}: is a folder; give a file name")
    what, _ = owner_of(target.parent) if target.parent.is_dir() else (None, None)
    if what is not None:
        raise StoreError(f"{named}: {os.path.dirname(display) or '.'} is {WHAT[what]} mfvsdnn owns; write the "
                         "file elsewhere")
    if target.exists() and not overwrite:
        with os_errors(display, "cannot read"):
            ours = target.stat().st_size == 0 or first_line(target) == header.encode()
        if not ours:
            raise StoreError(f"{named}: exists and was not written by mfvsdnn (its first line is not "
                             f"{header!r}); pass --overwrite to replace it, or choose another file")
    _check_parents(target, named, "choose another file")
    with os_errors(display):
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_dead_temps(target)
        return _replace_via(target, write, text=True)


def _clean_dead_temps(target: Path) -> None:
    """Temporaries of this file left by processes that no longer run (no lock guards single files)."""
    pat = re.compile(rf"^\.{re.escape(target.name)}\.{TMP_TAG}-(\d+)-[0-9a-f]+$")
    for e in os.listdir(target.parent):
        m = pat.match(e)
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(target.parent / e)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
