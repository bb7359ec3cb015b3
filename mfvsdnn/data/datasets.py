"""Public data sets: the catalogue, fetching into a cache folder, and conversion to the tool's CSV.

``fetch`` downloads the publisher's archive (resumable), checks its SHA-256, converts it to one
interaction CSV (groups and user features where the data has them) and keeps archive, CSV and a
record ``NAME.json`` in a cache folder the tool owns (``claim_output`` kind ``datasets``). Where the
catalogue holds no SHA-256, the first download's hash is printed and recorded (trust on first use);
every later use checks the archive and the CSV against the record.

Conversion streams: 100K, 1M and Last.fm line by line, 20M and 25M through pyarrow's CSV reader in
blocks, so memory stays bounded by the movie table and one block.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from ..core.errors import DataError
from ..core.fsutil import TMP_TAG, claim_output, open_new, os_errors
from ..core.progress import ProgressFactory, silent
from .download import DownloadError, download, open_archive, sha256_of

DATA_ENV = "MFVSDNN_DATA"
DEFAULT_DIR = Path("~/.cache/mfvsdnn/datasets")
RECORD_FORMAT = "mfvsdnn-dataset"
CONVERTER_VERSION = 1
BLOCK_BYTES = 16 << 20
# where the catalogue's SHA-256 values come from (they were not recomputed here: this machine is offline)
TFDS_CHECKSUMS = ("TensorFlow Datasets, tensorflow_datasets/url_checksums/movielens.txt "
                  "(github.com/tensorflow/datasets, commit 1c076ac3)")
MOVIELENS_TERMS = ("GroupLens MovieLens licence: research use; no redistribution, no commercial use and no "
                   "claim of endorsement without permission; cite F. M. Harper and J. A. Konstan, The "
                   "MovieLens Datasets: History and Context, ACM TiiS 5(4), 2015. Full terms: the README "
                   "inside the archive (https://grouplens.org/datasets/movielens/)")
HETREC_TERMS = ("HetRec 2011 Last.fm: made available for non-commercial use; cite Last.fm "
                "(http://www.lastfm.com) and I. Cantador, P. Brusilovsky, T. Kuflik, HetRec 2011, RecSys 2011. "
                "Full terms: readme.txt inside the archive (https://grouplens.org/datasets/hetrec-2011/)")
GROUPLENS = "https://files.grouplens.org/datasets"


@dataclass(frozen=True)
class Entry:
    """One data set of the catalogue."""

    name: str
    title: str
    url: str
    archive_bytes: int | None   # as published beside the hash; None where nothing is published
    sha256: str | None          # None: trust on first use
    sha256_source: str
    interactions: str           # what the data holds, for the listing
    terms: str
    licence: str                # in a few words, for the listing
    columns: tuple[str, ...]    # of the converted CSV
    groups: str                 # item/user group columns, for the listing
    features: str
    compare_options: tuple[str, ...]
    convert: Callable[[zipfile.ZipFile, str, IO[bytes]], int]


# ---------------------------------------------------------------------------------------------
# converters: (archive, its display name, binary output) -> data rows written


@contextlib.contextmanager
def _csv_writer(out: IO[bytes]) -> Iterator[Any]:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        yield csv.writer(text, lineterminator="\n")
    finally:
        text.flush()
        text.detach()  # the caller closes (and syncs) the file


def _member(archive: zipfile.ZipFile, display: str, name: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(name)
    except KeyError:
        raise DownloadError(f"{display}: the archive has no {name}; it is not the layout this converter "
                            "knows (a different release?)") from None


def _lines(archive: zipfile.ZipFile, display: str, name: str, encoding: str) -> Iterator[list[str]]:
    """Text lines of a member, split later by the caller; latin-1 never fails to decode."""
    with archive.open(_member(archive, display, name)) as raw:
        yield from io.TextIOWrapper(raw, encoding=encoding, newline="")


def _bad_line(display: str, name: str, line_no: int, what: str) -> DownloadError:
    return DownloadError(f"{display}: {name} line {line_no}: {what}")


ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western")


def _convert_ml100k(archive: zipfile.ZipFile, display: str, out: IO[bytes]) -> int:
    with _csv_writer(out) as writer:
        return _convert_ml100k_rows(archive, display, writer)


def _convert_ml100k_rows(archive: zipfile.ZipFile, display: str, writer: Any) -> int:
    users: dict[str, tuple[str, str, str]] = {}
    for n, line in enumerate(_lines(archive, display, "ml-100k/u.user", "latin-1"), 1):
        parts = line.rstrip("\r\n").split("|")
        if len(parts) < 4:
            raise _bad_line(display, "ml-100k/u.user", n, "expected id|age|gender|occupation|zip")
        users[parts[0]] = (parts[1], parts[2], parts[3])
    genre: dict[str, str] = {}
    for n, line in enumerate(_lines(archive, display, "ml-100k/u.item", "latin-1"), 1):
        parts = line.rstrip("\r\n").split("|")
        flags = parts[5:]
        if len(flags) != len(ML100K_GENRES):
            raise _bad_line(display, "ml-100k/u.item", n, f"expected {len(ML100K_GENRES)} genre flags")
        # the first flagged genre is the item's group, as in the shipped ml100k CSV
        genre[parts[0]] = next((g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1"), "unknown")
    writer.writerow(["user_id", "item_id", "rating", "timestamp", "age", "gender", "occupation", "genre"])
    rows = 0
    for n, line in enumerate(_lines(archive, display, "ml-100k/u.data", "latin-1"), 1):
        parts = line.split()
        if len(parts) != 4 or parts[0] not in users or parts[1] not in genre:
            raise _bad_line(display, "ml-100k/u.data", n, "expected user, item, rating, timestamp of known "
                            "users and items")
        writer.writerow([parts[0], parts[1], parts[2], parts[3], *users[parts[0]], genre[parts[1]]])
        rows += 1
    return rows


ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")


def _first_genre(genres: str) -> str:
    first = genres.split("|", 1)[0].strip()
    return "unknown" if not first or first == "(no genres listed)" else first


def _convert_ml1m(archive: zipfile.ZipFile, display: str, out: IO[bytes]) -> int:
    with _csv_writer(out) as writer:
        return _convert_ml1m_rows(archive, display, writer)


def _convert_ml1m_rows(archive: zipfile.ZipFile, display: str, writer: Any) -> int:
    users: dict[str, tuple[str, str, str]] = {}
    for n, line in enumerate(_lines(archive, display, "ml-1m/users.dat", "latin-1"), 1):
        parts = line.rstrip("\r\n").split("::")
        if len(parts) != 5 or not parts[3].isdigit() or int(parts[3]) >= len(ML1M_OCCUPATIONS):
            raise _bad_line(display, "ml-1m/users.dat", n, "expected UserID::Gender::Age::Occupation::Zip")
        users[parts[0]] = (parts[2], parts[1], ML1M_OCCUPATIONS[int(parts[3])])  # age band, gender, occupation
    genre: dict[str, str] = {}
    for n, line in enumerate(_lines(archive, display, "ml-1m/movies.dat", "latin-1"), 1):
        parts = line.rstrip("\r\n").split("::")
        if len(parts) != 3:
            raise _bad_line(display, "ml-1m/movies.dat", n, "expected MovieID::Title::Genres")
        genre[parts[0]] = _first_genre(parts[2])
    writer.writerow(["user_id", "item_id", "rating", "timestamp", "age", "gender", "occupation", "genre"])
    rows = 0
    for n, line in enumerate(_lines(archive, display, "ml-1m/ratings.dat", "latin-1"), 1):
        parts = line.rstrip("\r\n").split("::")
        if len(parts) != 4 or parts[0] not in users or parts[1] not in genre:
            raise _bad_line(display, "ml-1m/ratings.dat", n, "expected UserID::MovieID::Rating::Timestamp of "
                            "known users and movies")
        writer.writerow([*parts, *users[parts[0]], genre[parts[1]]])
        rows += 1
    return rows


def _convert_movielens_csv(folder: str) -> Callable[[zipfile.ZipFile, str, IO[str]], int]:
    """ML-20M / ML-25M: ``ratings.csv`` streamed in pyarrow blocks, joined to each movie's first genre."""

    def convert(archive: zipfile.ZipFile, display: str, out: IO[str]) -> int:
        ids: list[int] = []
        genres: list[str] = []
        with archive.open(_member(archive, display, f"{folder}/movies.csv")) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=""))
            if next(reader, None) != ["movieId", "title", "genres"]:
                raise _bad_line(display, f"{folder}/movies.csv", 1, "expected the header movieId,title,genres")
            for n, row in enumerate(reader, 2):
                if len(row) != 3 or not row[0].isdigit():
                    raise _bad_line(display, f"{folder}/movies.csv", n, "expected movieId,title,genres")
                ids.append(int(row[0]))
                genres.append(_first_genre(row[2]))
        movie_ids, movie_genres = pa.array(ids, pa.int64()), pa.array(genres, pa.string())
        name = f"{folder}/ratings.csv"
        rows = 0
        types = {"userId": pa.string(), "movieId": pa.int64(), "rating": pa.string(), "timestamp": pa.string()}
        schema = pa.schema([(c, pa.string() if c != "item_id" else pa.int64()) for c in
                            ("user_id", "item_id", "rating", "timestamp", "genre")])
        with archive.open(_member(archive, display, name)) as raw:
            try:
                reader = pv.open_csv(raw, read_options=pv.ReadOptions(block_size=BLOCK_BYTES),
                                     convert_options=pv.ConvertOptions(column_types=types,
                                                                       include_columns=list(types)))
                out.write(",".join(schema.names).encode() + b"\n")  # pyarrow quotes header names
                # no quoting: ids, ratings, timestamps and genre names hold no comma (pyarrow refuses one)
                options = pv.WriteOptions(include_header=False, quoting_style="none")
                with pv.CSVWriter(out, schema, write_options=options) as writer:
                    for batch in reader:
                        at = pc.index_in(batch.column("movieId"), value_set=movie_ids)
                        if at.null_count:
                            raise DownloadError(f"{display}: {name} rates a movie that movies.csv does not list")
                        writer.write_batch(pa.record_batch(
                            [batch.column("userId"), batch.column("movieId"), batch.column("rating"),
                             batch.column("timestamp"), pc.take(movie_genres, at)], schema=schema))
                        rows += batch.num_rows
            except (pa.ArrowInvalid, KeyError) as e:
                raise DownloadError(f"{display}: {name} is not the expected "
                                    f"userId,movieId,rating,timestamp CSV ({str(e).splitlines()[0]})") from None
        return rows

    return convert


def _convert_lastfm(archive: zipfile.ZipFile, display: str, out: IO[bytes]) -> int:
    with _csv_writer(out) as writer:
        return _convert_lastfm_rows(archive, display, writer)


def _convert_lastfm_rows(archive: zipfile.ZipFile, display: str, writer: Any) -> int:
    name = "user_artists.dat"
    writer.writerow(["user_id", "item_id", "plays"])
    rows = 0
    lines = _lines(archive, display, name, "utf-8")
    header = next(lines, "").rstrip("\r\n").split("\t")
    if header != ["userID", "artistID", "weight"]:
        raise _bad_line(display, name, 1, "expected the header userID<TAB>artistID<TAB>weight")
    for n, line in enumerate(lines, 2):
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 3:
            raise _bad_line(display, name, n, "expected userID, artistID, weight")
        writer.writerow(parts)
        rows += 1
    return rows


# ---------------------------------------------------------------------------------------------
# the catalogue

_ML_COLUMNS = ("user_id", "item_id", "rating", "timestamp", "age", "gender", "occupation", "genre")
_ML_FEATURES = ("--weight-col", "rating", "--min-weight", "4", "--item-group-col", "genre")


def _movielens(name: str, title: str, size: int, sha: str, interactions: str, with_users: bool) -> Entry:
    return Entry(
        name=name, title=title, url=f"{GROUPLENS}/movielens/{name}.zip", archive_bytes=size, sha256=sha,
        sha256_source=TFDS_CHECKSUMS, interactions=interactions,
        terms=MOVIELENS_TERMS, licence="research use, no redistribution",
        columns=_ML_COLUMNS if with_users else ("user_id", "item_id", "rating", "timestamp", "genre"),
        groups="item: genre",
        features="age, gender, occupation" if with_users else "none",
        compare_options=_ML_FEATURES + (("--user-features", "age,gender,occupation") if with_users else ()),
        convert={"ml-100k": _convert_ml100k, "ml-1m": _convert_ml1m}.get(name) or _convert_movielens_csv(name))


CATALOGUE: dict[str, Entry] = {e.name: e for e in (
    _movielens("ml-100k", "MovieLens 100K", 4_924_029,
               "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
               "100,000 ratings (1-5), 943 users, 1,682 movies", True),
    _movielens("ml-1m", "MovieLens 1M", 5_917_549,
               "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
               "1,000,209 ratings (1-5), 6,040 users, 3,706 movies", True),
    _movielens("ml-20m", "MovieLens 20M", 198_702_078,
               "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
               "20,000,263 ratings (0.5-5), 138,493 users, 26,744 movies", False),
    _movielens("ml-25m", "MovieLens 25M", 261_978_986,
               "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
               "25,000,095 ratings (0.5-5), 162,541 users, 59,047 movies", False),
    Entry(name="lastfm-2k", title="HetRec 2011 Last.fm 2K", url=f"{GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip",
          archive_bytes=None, sha256=None, sha256_source="none published that could be checked here",
          interactions="92,834 user-artist pairs with play counts, 1,892 users, 17,632 artists",
          terms=HETREC_TERMS, licence="non-commercial use", columns=("user_id", "item_id", "plays"), groups="none", features="none",
          compare_options=(), convert=_convert_lastfm),
)}


def lookup(name: str, catalogue: dict[str, Entry] | None = None) -> Entry:
    catalogue = CATALOGUE if catalogue is None else catalogue
    if name not in catalogue:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(catalogue)} (see 'mfvsdnn datasets list')")
    return catalogue[name]


def cache_dir(directory: str | os.PathLike | None = None) -> Path:
    """--dir, else $MFVSDNN_DATA, else ~/.cache/mfvsdnn/datasets."""
    if directory is not None and os.fspath(directory):
        return Path(directory)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else DEFAULT_DIR.expanduser()


def compare_line(entry: Entry, csv_path: Path) -> str:
    return shlex.join(["mfvsdnn", "compare", str(csv_path), *entry.compare_options])


# ---------------------------------------------------------------------------------------------
# the cache


def _archive_name(entry: Entry) -> str:
    return f"{entry.name}.zip"


def _read_record(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT else None


def cached(entry: Entry, directory: Path) -> bool:
    """Whether the converted CSV and its record are in the cache (not re-hashed: that is fetch's job)."""
    record = _read_record(directory / f"{entry.name}.json")
    return record is not None and (directory / f"{entry.name}.csv").is_file()


def listing(directory: str | os.PathLike | None = None, catalogue: dict[str, Entry] | None = None) -> dict:
    """What ``datasets list`` shows: every entry, and whether it is cached in the folder."""
    folder = cache_dir(directory)
    rows = []
    for e in (CATALOGUE if catalogue is None else catalogue).values():
        rows.append({"name": e.name, "title": e.title, "url": e.url, "archive_bytes": e.archive_bytes,
                     "interactions": e.interactions, "licence": e.licence,
                     "sha256": e.sha256, "sha256_source": e.sha256_source, "columns": list(e.columns),
                     "groups": e.groups, "features": e.features, "cached": cached(e, folder),
                     "csv": str(folder / f"{e.name}.csv")})
    return {"dir": str(folder), "datasets": rows}


def _clean_temps(folder: Path) -> None:
    """Temporaries a crashed fetch left (the caller holds the folder's lock, so none is live)."""
    pattern = re.compile(rf"^\..+\.{TMP_TAG}-\d+-[0-9a-f]+$")
    if folder.is_dir():
        for n in os.listdir(folder):
            if pattern.match(n) and (folder / n).is_file():
                (folder / n).unlink(missing_ok=True)


def _temp(folder: Path, name: str) -> Path:
    return folder / f".{name}.{TMP_TAG}-{os.getpid()}-{os.urandom(4).hex()}"


def _write_record(claim: Any, name: str, doc: dict) -> None:
    path = claim.adopt(name)
    tmp = _temp(path.parent, name)
    with os_errors(claim.display):
        with open_new(tmp, text=True) as f:
            f.write(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)


def fetch(name: str, directory: str | os.PathLike | None = None, *, catalogue: dict[str, Entry] | None = None,
          progress_factory: ProgressFactory = silent, on_terms: Callable[[Entry], None] = lambda e: None,
          on_trust: Callable[[str], None] = lambda sha: None) -> dict:
    """Make data set ``name`` available in the cache folder; return its record (with ``compare``, the line
    to run). Downloads only what is missing; checks every hash it has."""
    entry = lookup(name, catalogue)
    folder = cache_dir(directory)
    with claim_output(folder, "datasets", option="--dir") as claim:
        with os_errors(claim.display, "cannot clean up"):
            _clean_temps(folder)
        record_path, csv_path = folder / f"{entry.name}.json", folder / f"{entry.name}.csv"
        archive_path, part_path = folder / _archive_name(entry), folder / f"{_archive_name(entry)}.part"
        record = _read_record(record_path) if record_path.is_file() else None
        trusted = entry.sha256 or (record or {}).get("archive_sha256")
        downloaded = False
        if archive_path.is_file():
            with progress_factory(f"checking {archive_path.name}") as prog:
                have = sha256_of(archive_path, prog)
            if trusted is not None and have != trusted:
                archive_path.unlink()  # damaged in the cache: fetch it again and check that copy
        if not archive_path.is_file():
            on_terms(entry)
            claim.adopt(part_path.name)
            with progress_factory(f"downloading {entry.url}") as prog:
                download(entry.url, part_path, prog)
            with progress_factory(f"checking {part_path.name}") as prog:
                have = sha256_of(part_path, prog)
            if trusted is not None and have != trusted:
                part_path.unlink()
                advice = (f"expected from {entry.sha256_source}" if entry.sha256 else
                          f"recorded at the first download; if the publisher changed the file, check it and "
                          f"delete {record_path} to trust the new one")
                raise DownloadError(f"{entry.url}: SHA-256 {have} is not the expected {trusted} ({advice}); "
                                    "the download was deleted and nothing was converted")
            claim.adopt(archive_path.name)
            with os_errors(claim.display):
                os.replace(part_path, archive_path)
            downloaded = True
            if trusted is None:
                on_trust(have)
        if (not downloaded and record is not None and csv_path.is_file()
                and record.get("archive_sha256") == have and record.get("converter") == CONVERTER_VERSION):
            with progress_factory(f"checking {csv_path.name}") as prog:
                csv_sha = sha256_of(csv_path, prog)
            if csv_sha == record.get("csv_sha256"):
                return {**record, "cached": True, "path": str(claim.path / csv_path.name),
                        "compare": compare_line(entry, claim.path / csv_path.name)}
        with open_archive(archive_path, str(archive_path)) as archive:
            claim.adopt(csv_path.name)
            tmp = _temp(folder, csv_path.name)
            try:
                with progress_factory(f"converting to {csv_path.name}") as prog, os_errors(claim.display):
                    prog(0, 1, {})
                    with open_new(tmp) as out:
                        rows = entry.convert(archive, str(archive_path), out)
                    prog(1, 1, {})
                    os.replace(tmp, csv_path)
            finally:
                tmp.unlink(missing_ok=True)
        with progress_factory(f"checking {csv_path.name}") as prog:
            csv_sha = sha256_of(csv_path, prog)
        first = (record or {}).get("first_downloaded") if (record or {}).get("archive_sha256") == have else None
        record = {"format": RECORD_FORMAT, "name": entry.name, "url": entry.url, "archive": archive_path.name,
                  "archive_bytes": archive_path.stat().st_size, "archive_sha256": have,
                  "sha256_checked_against": entry.sha256_source if entry.sha256 else
                  ("the first download (trust on first use)" if trusted else
                   "nothing: first download, hash recorded now (trust on first use)"),
                  "first_downloaded": first or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "converter": CONVERTER_VERSION, "csv": csv_path.name, "rows": rows, "csv_sha256": csv_sha,
                  "columns": list(entry.columns), "terms": entry.terms}
        _write_record(claim, record_path.name, record)
        return {**record, "cached": False, "path": str(claim.path / csv_path.name),
                "compare": compare_line(entry, claim.path / csv_path.name)}


__all__ = ["CATALOGUE", "DATA_ENV", "Entry", "cache_dir", "compare_line", "fetch", "listing", "lookup"]
