"""Where the interactions come from: file checks, the file's format, its header row, reading the used
columns as Arrow arrays, and the physical line of a data row (for messages).

Formats: CSV as plain text, gzip, bzip2, xz, zstd or the only file of a zip archive, and Parquet. The
content decides (magic bytes); a name that promises a different format is refused, since that is
usually a broken download or a wrong rename.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import itertools
import lzma
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from ..core.errors import DataError
from .columns import ColumnSpec, clean_header

PLAIN, GZIP, BZ2, XZ, ZSTD, ZIP, PARQUET = "csv", "gzip", "bz2", "xz", "zstd", "zip", "parquet"
KIND_WORDS = {PLAIN: "plain text", GZIP: "gzip data", BZ2: "bzip2 data", XZ: "xz data", ZSTD: "zstd data",
              ZIP: "a zip archive", PARQUET: "a Parquet file"}
SUFFIXES = {".gz": GZIP, ".gzip": GZIP, ".bz2": BZ2, ".xz": XZ, ".zst": ZSTD, ".zstd": ZSTD, ".zip": ZIP,
            ".parquet": PARQUET, ".pq": PARQUET}
_MAGIC = [(re.compile(rb"\x1f\x8b"), GZIP), (re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)"), BZ2),
          (re.compile(rb"\xfd7zXZ\x00"), XZ), (re.compile(rb"\x28\xb5\x2f\xfd"), ZSTD),
          (re.compile(rb"PK(\x03\x04|\x05\x06)"), ZIP), (re.compile(rb"PAR1"), PARQUET)]
_CORRUPT = (EOFError, OSError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)

BLOCK_BYTES = 16 << 20  # the CSV reader's block; a single row may not be longer
CHUNK_BYTES = 1 << 20


@dataclass
class Source:
    """One input file after reading: its path, its data rows, and how to name a row in a message."""

    path: Path
    n_rows: int
    line_of: Callable[[Sequence[int]], dict[int, int]] | None = None  # CSV: data row -> physical line

    def where(self, rows: Sequence[int]) -> list[str]:
        """``"line N"`` (the physical line, CSV) or ``"row N"`` (1-based, Parquet and frames) per row."""
        lines = self.line_of(rows) if self.line_of is not None else {}
        return [f"line {lines[r]}" if r in lines else f"row {r + 1}" for r in rows]


# ----------------------------------------------------------------------------------------------
# the file and its format


def check_regular_file(path: Path) -> None:
    """Refuse what is not a readable, non-empty regular file, before anything opens it (a FIFO would block)."""
    if str(path) == "-":
        raise DataError("-: not a regular file: reading from standard input is not supported; give a file path")
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a character device"
                if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
        raise DataError(f"{path}: not a regular file but {kind}; give the path of a CSV or Parquet file")
    if st.st_size == 0:
        raise DataError(f"{path}: the file is empty (expected a header row and interactions)")


def _kind_of(head: bytes) -> str:
    return next((kind for magic, kind in _MAGIC if magic.match(head)), PLAIN)


def detect_format(path: Path) -> str:
    """The format by content; refused when the name's suffix says another one."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    kind = _kind_of(head)
    named = SUFFIXES.get(path.suffix.lower())
    if named is not None and named != kind:
        raise DataError(f"{path}: the name says {KIND_WORDS[named]} ({path.suffix}) but the content is "
                        f"{KIND_WORDS[kind]}; rename the file or fix its content")
    return kind


def _zip_member(path: Path, zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    files = [i for i in zf.infolist() if not i.is_dir()]
    if len(files) != 1:
        names = ", ".join(i.filename for i in files[:5]) + (", ..." if len(files) > 5 else "")
        held = "no file" if not files else f"{len(files)} files ({names})"
        raise DataError(f"{path}: the zip archive holds {held}; it must hold exactly one CSV file")
    return files[0]


@contextlib.contextmanager
def open_csv_bytes(path: Path, kind: str) -> Iterator[BinaryIO]:
    """The CSV's bytes, decompressed; decompression errors become one message."""
    with contextlib.ExitStack() as stack:
        try:
            if kind == ZIP:
                zf = stack.enter_context(zipfile.ZipFile(path))
                member = _zip_member(path, zf)
                f = stack.enter_context(zf.open(member))
                inner = _kind_of(f.peek(16) if hasattr(f, "peek") else b"")
                if inner != PLAIN:
                    raise DataError(f"{path}: the zip member {member.filename} is {KIND_WORDS[inner]}, "
                                    "not a CSV; unpack it")
            elif kind == ZSTD:
                f = stack.enter_context(pa.input_stream(str(path), compression="zstd"))
            else:
                opener = {PLAIN: open, GZIP: gzip.open, BZ2: bz2.open, XZ: lzma.open}[kind]
                f = stack.enter_context(opener(path, "rb"))
        except (RuntimeError, NotImplementedError, *_CORRUPT) as e:  # RuntimeError: an encrypted member
            raise DataError(f"{path}: cannot read {KIND_WORDS[kind]} ({e})") from None
        try:
            yield f
        except _CORRUPT as e:
            what = "cannot read" if kind == PLAIN else f"the {KIND_WORDS[kind]} is corrupt or truncated"
            raise DataError(f"{path}: {what} ({e})") from None


def physical_lines(stream: BinaryIO, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The stream's lines with their ends; ``\\n``, ``\\r\\n`` and a lone ``\\r`` each end one line."""
    pending: list[bytes] = []
    while True:
        block = stream.read(chunk)
        if not block:
            break
        while block.endswith(b"\r"):  # keep a \r\n split across blocks together
            extra = stream.read(1)
            block += extra
            if extra != b"\r":
                break
        parts = block.splitlines(keepends=True)
        complete = parts[-1].endswith((b"\n", b"\r"))
        if len(parts) == 1 and not complete:
            pending.append(parts[0])
            continue
        if pending:
            parts[0] = b"".join(pending) + parts[0]
            pending = []
        if not complete:
            pending.append(parts.pop())
        yield from parts
    if pending:
        yield b"".join(pending)


@contextlib.contextmanager
def _any_field_size() -> Iterator[None]:
    """The csv module's field limit (128 KiB) is lifted while it re-reads a file we already accepted."""
    old = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(old)


# ----------------------------------------------------------------------------------------------
# the header


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read as Parquet ({str(e).strip().splitlines()[0]})") from None


def _csv_header(path: Path, stream: BinaryIO, sep: str) -> list[str]:
    lines = physical_lines(stream)
    first = next(lines, b"")
    if not first:
        raise DataError(f"{path}: the file is empty (expected a header row and interactions)")
    if not first.strip():
        raise DataError(f"{path}: line 1 is blank; a header row naming the columns is required")

    def decoded() -> Iterator[str]:  # line by line, so a bad byte further down does not count here
        for k, raw in enumerate(itertools.chain([first], lines), start=1):
            try:
                yield raw.decode("utf-8-sig" if k == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: line {k} is not valid UTF-8 text (is this a CSV file?)") from None

    try:
        return clean_header(next(csv.reader(decoded(), delimiter=sep)))
    except csv.Error as e:  # mostly the csv module's 128 KiB field limit
        hint = "; is a quote left open on line 1?" if "field limit" in str(e) else ""
        raise DataError(f"{path}: cannot read the header row ({e}){hint}") from None


def read_header(path: str | os.PathLike, sep: str) -> list[str]:
    """The column names (header row of a CSV, schema of a Parquet file), cleaned by the whitespace rule."""
    path = Path(path)
    check_regular_file(path)
    kind = detect_format(path)
    if kind == PARQUET:
        return clean_header(_parquet_file(path).schema_arrow.names)
    with open_csv_bytes(path, kind) as f:
        return _csv_header(path, f, sep)


# ----------------------------------------------------------------------------------------------
# physical lines of data rows (only computed for a message)


def _records(path: Path, kind: str, sep: str) -> Iterator[tuple[int, int, int, list[str]]]:
    """(data row, first line, last line, fields) of each data row, as the CSV reader sees rows: the
    header is not a data row and blank lines are skipped. Bytes that are not UTF-8 come back as
    surrogate escapes (U+DC80..U+DCFF)."""
    with open_csv_bytes(path, kind) as f, _any_field_size():
        text = (raw.decode("utf-8-sig" if k == 0 else "utf-8", errors="surrogateescape")
                for k, raw in enumerate(physical_lines(f)))
        reader = csv.reader(text, delimiter=sep)
        last, row = 0, -1
        try:
            for rec in reader:
                first, last = last + 1, reader.line_num
                if not rec:
                    continue
                if row >= 0:
                    yield row, first, last, rec
                row += 1
        except csv.Error:
            return


def _line_finder(path: Path, kind: str, sep: str) -> Callable[[Sequence[int]], dict[int, int]]:
    def line_of(rows: Sequence[int]) -> dict[int, int]:
        wanted, found = set(rows), {}
        for row, first, _, _ in _records(path, kind, sep):
            if row in wanted:
                found[row] = first
                if len(found) == len(wanted):
                    break
        return found

    return line_of


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def first_bad_utf8_line(path: Path, kind: str, sep: str, positions: Sequence[int]) -> int | None:
    """Physical line of the first row whose used fields (``positions``) hold bytes that are not UTF-8.
    Columns the loader does not use are never decoded, so they may hold anything."""
    for _, first, _, rec in _records(path, kind, sep):
        if any(_NOT_UTF8.search(rec[p]) for p in positions if p < len(rec)):
            return first
    return None


def _parse_error(path: Path, kind: str, sep: str, n_fields: int, positions: Sequence[int],
                 message: str) -> DataError:
    if "UTF8" in message or "UTF-8" in message:
        line = first_bad_utf8_line(path, kind, sep, positions)
        if line is not None:
            return DataError(f"{path}: line {line} is not valid UTF-8 text")
    if "columns" in message:
        for _, first, last, rec in _records(path, kind, sep):
            n = len(rec)
            if n != n_fields:
                span = (f"; that row runs on to line {last} through a quoted line break: is a quote left open?"
                        if last > first else "")
                return DataError(f"{path}: line {first} has a different number of fields than the header "
                                 f"({n}, the header has {n_fields}){span}")
    if "straddl" in message:
        return DataError(f"{path}: a row is longer than {BLOCK_BYTES >> 20} MiB (is a quote left open?)")
    return DataError(f"{path}: cannot read as CSV with sep {sep!r}: {message.strip().splitlines()[0]}")


# ----------------------------------------------------------------------------------------------
# reading the used columns


def _read_csv(path: Path, kind: str, used: list[str], sep: str) -> tuple[pa.Table, Source]:
    with open_csv_bytes(path, kind) as f:
        header = _csv_header(path, f, sep)
    # Positional names: header names may repeat or carry spaces; the caller checked the used ones.
    positions = [header.index(c) for c in used]
    names = [f"f{p}" for p in positions]
    read_options = pv.ReadOptions(autogenerate_column_names=True, block_size=BLOCK_BYTES)
    parse_options = pv.ParseOptions(delimiter=sep, newlines_in_values=True, ignore_empty_lines=True)
    convert_options = pv.ConvertOptions(include_columns=names, column_types={c: pa.string() for c in names},
                                        strings_can_be_null=False, quoted_strings_can_be_null=False,
                                        null_values=[])
    with open_csv_bytes(path, kind) as f:
        try:
            table = pv.read_csv(f, read_options=read_options, parse_options=parse_options,
                                convert_options=convert_options)
        except pa.ArrowInvalid as e:
            raise _parse_error(path, kind, sep, len(header), positions, str(e)) from None
    table = table.slice(1).rename_columns(used)  # row 0 is the header row itself
    return table, Source(path, table.num_rows, _line_finder(path, kind, sep))


def _read_parquet(path: Path, used: list[str]) -> tuple[pa.Table, Source]:
    pf = _parquet_file(path)
    raw = pf.schema_arrow.names
    cleaned = clean_header(raw)
    try:
        table = pf.read(columns=[raw[cleaned.index(c)] for c in used])
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read as Parquet ({str(e).strip().splitlines()[0]})") from None
    table = table.rename_columns(used)
    return table, Source(path, table.num_rows)


def read_source(path: Path, spec: ColumnSpec) -> tuple[pa.Table, Source]:
    """The used columns of an interaction file (``spec`` resolved against it), named as in ``spec``."""
    return read_columns(path, spec.used(), spec.sep)


def read_columns(path: Path, used: list[str], sep: str) -> tuple[pa.Table, Source]:
    """The named columns of a file (each in its header), in that order.

    CSV columns come back as strings, exactly as written (no type is inferred); Parquet columns keep
    their stored types, which :mod:`mfvsdnn.values` converts under the same rules.
    """
    check_regular_file(path)
    kind = detect_format(path)
    return _read_parquet(path, used) if kind == PARQUET else _read_csv(path, kind, used, sep)
