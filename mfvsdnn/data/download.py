"""Downloading one file over HTTP(S) into a resumable ``.part`` file, SHA-256 of files, and zip archives
checked before any member is read.

Standard library only (urllib). A partial file is continued with a ``Range:`` request; a server that
answers the whole file instead (status 200) or a range that does not start where the file ends makes
the download start again from zero. Every network failure becomes one :class:`DownloadError` line.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from ..core.errors import DataError
from ..core.progress import ProgressFn, no_progress

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0
USER_AGENT = "mfvsdnn-datasets"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(DataError):
    """A download failed (offline, unknown host, HTTP error, interrupted) or its bytes are not the expected ones."""


def sha256_of(path: Path, progress: ProgressFn = no_progress) -> str:
    """Hex SHA-256 of a file, read in chunks (memory-bounded)."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            progress(done, total, {})
    return digest.hexdigest()


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _network_error(url: str, e: BaseException, resume_hint: str) -> DownloadError:
    host = _host(url)
    if isinstance(e, urllib.error.HTTPError):
        return DownloadError(f"{url}: the server answered HTTP {e.code} {e.reason}")
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, socket.gaierror):
        return DownloadError(f"{url}: cannot resolve {host} ({reason.strerror or reason}); are you offline? "
                             f"{resume_hint}")
    if isinstance(reason, ssl.SSLError):
        return DownloadError(f"{url}: TLS error with {host} ({reason}); {resume_hint}")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return DownloadError(f"{url}: {host} did not answer within {TIMEOUT_SECONDS:g} s; are you offline? "
                             f"{resume_hint}")
    if isinstance(reason, OSError):
        return DownloadError(f"{url}: cannot reach {host} ({reason.strerror or reason}); are you offline? "
                             f"{resume_hint}")
    return DownloadError(f"{url}: download failed ({type(reason).__name__}: {reason}); {resume_hint}")


def _open(url: str, start: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_SECONDS)


def download(url: str, part: Path, progress: ProgressFn = no_progress) -> None:
    """Fetch ``url`` into ``part``, continuing what ``part`` already holds. On return the file is complete
    (as long as the server announced a length); on failure it keeps what arrived, for the next attempt."""
    start = part.stat().st_size if part.exists() else 0
    hint = (f"the {start:,} bytes already downloaded are kept in {part} and the next fetch continues them"
            if start else "nothing was downloaded")
    receiving = False
    try:
        try:
            response = _open(url, start)
        except urllib.error.HTTPError as e:
            if e.code != 416 or start == 0:  # 416: the partial file is not a prefix the server knows
                raise
            start = 0
            response = _open(url, 0)
        with response:
            total = None
            if response.status == 206:
                m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if m is None or int(m.group(1)) != start:  # not the range asked for: start again
                    response.close()
                    start = 0
                    response = _open(url, 0)
                elif m.group(3) != "*":
                    total = int(m.group(3))
            if response.status != 206:
                start = 0  # the server sent the whole file
            if total is None:
                length = response.headers.get("Content-Length")
                total = start + int(length) if length and length.isdigit() else None
            done = start
            with open(part, "ab" if start else "wb") as f:
                progress(done, total or 0, {})
                receiving = True
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    done += len(chunk)
                    progress(done, total or 0, {})
                f.flush()
                os.fsync(f.fileno())
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        if receiving:  # the connection broke mid-file: keep what arrived
            have = part.stat().st_size if part.exists() else 0
            raise DownloadError(f"{url}: the download stopped after {have:,} bytes ({type(e).__name__}: {e}); "
                                f"what arrived is kept in {part} and the next fetch continues it") from None
        raise _network_error(url, e, hint) from None
    if total is not None and done != total:
        raise DownloadError(f"{url}: the download stopped after {done:,} of {total:,} bytes; what arrived is "
                            f"kept in {part} and the next fetch continues it")


def check_members(archive: zipfile.ZipFile, display: str) -> None:
    """Refuse an archive with a member that would land outside the folder it is extracted into."""
    for info in archive.infolist():
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", name):
            raise DownloadError(f"{display}: refusing the archive: member {name!r} points outside the "
                                "extraction folder")


def open_archive(path: Path, display: str) -> zipfile.ZipFile:
    """The zip at ``path``, its member names checked; a broken archive is one clear error."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{display}: not a readable zip archive ({e})") from None
    try:
        check_members(archive, display)
    except DownloadError:
        archive.close()
        raise
    return archive
