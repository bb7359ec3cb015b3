"""`mfvsdnn datasets`: fetch and conversion against a local HTTP server on the loopback address that
serves tiny archives with the publishers' real layouts. No test reaches the network."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfvsdnn.cli import app
from mfvsdnn.data import datasets
from mfvsdnn.data.download import DownloadError

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def _zip(members: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


GENRE_FLAGS = {"Action": "0|1" + "|0" * 17, "Comedy+Drama": "0|0|0|0|0|1|0|0|1" + "|0" * 10, "none": "|".join("0" * 19)}
ML100K = _zip({
    "ml-100k/u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    "ml-100k/u.item": (f"10|Toy Story (1995)|01-Jan-1995||http://x|{GENRE_FLAGS['Comedy+Drama']}\n"
                       f"20|GoldenEye (1995)|01-Jan-1995||http://x|{GENRE_FLAGS['Action']}\n"
                       f"30|Caf\xe9 (1995)|01-Jan-1995||http://x|{GENRE_FLAGS['none']}\n").encode("latin-1"),
    "ml-100k/u.data": "1\t10\t5\t881250949\n2\t20\t3\t891717742\n1\t30\t4\t878887116\n",
    "ml-100k/README": "MovieLens 100K (test copy)\n",
})
EXPECTED_100K = ["user_id,item_id,rating,timestamp,age,gender,occupation,genre",
                 "1,10,5,881250949,24,M,technician,Comedy", "2,20,3,891717742,53,F,other,Action",
                 "1,30,4,878887116,24,M,technician,unknown"]
ML1M = _zip({
    "ml-1m/users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
    "ml-1m/movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n",
    "ml-1m/ratings.dat": "1::1::5::978300760\n2::2::3::978302109\n",
})
ML20M = _zip({
    "ml-20m/movies.csv": 'movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
                         "2,Nothing (2000),(no genres listed)\n",
    "ml-20m/ratings.csv": "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,1,4.0,1112484676\n"
                          "7,1,0.5,1094785740\n",
})
LASTFM = _zip({"user_artists.dat": "userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t51\t7\r\n",
               "readme.txt": "HetRec 2011 (test copy)\n"})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` (path -> bytes) with Range support; ``ignore_range`` answers 200 with the whole
    file instead; ``cut_after`` closes the connection after that many body bytes of the next answer."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ignore_range = False
        self.cut_after: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not outer.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    body, outer.cut_after = body[:outer.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def catalogue(server: Server, name: str, data: bytes, sha256: str | None = "real") -> dict[str, datasets.Entry]:
    path = f"/datasets/{name}.zip"
    server.files[path] = data
    entry = dataclasses.replace(datasets.CATALOGUE[name], url=server.base + path,
                                sha256=sha(data) if sha256 == "real" else sha256)
    return {name: entry}


def test_ml100k_fetch_converts_and_caches(server, tmp_path):
    cat = catalogue(server, "ml-100k", ML100K)
    terms: list[str] = []
    record = datasets.fetch("ml-100k", tmp_path / "cache", catalogue=cat, on_terms=lambda e: terms.append(e.name))
    csv_path = tmp_path / "cache" / "ml-100k.csv"
    assert csv_path.read_text().splitlines() == EXPECTED_100K
    assert record["rows"] == 3 and record["archive_sha256"] == sha(ML100K) and not record["cached"]
    assert terms == ["ml-100k"]  # the licence is shown before the download
    assert record["compare"] == (f"mfvsdnn compare {csv_path} --weight-col rating --min-weight 4 "
                                 "--item-group-col genre --user-features age,gender,occupation")
    served = len(server.requests)
    again = datasets.fetch("ml-100k", tmp_path / "cache", catalogue=cat, on_terms=lambda e: terms.append(e.name))
    assert again["cached"] and len(server.requests) == served and terms == ["ml-100k"]  # no second download
    marker = json.loads((tmp_path / "cache" / ".mfvsdnn.json").read_text())
    assert marker["what"] == "datasets"
    assert sorted(marker["entries"]) == ["ml-100k.csv", "ml-100k.json", "ml-100k.zip"]
    assert not list((tmp_path / "cache").glob("*.part"))


def test_the_converted_csv_follows_the_compare_line(server, tmp_path):
    """The options printed after a fetch read the CSV with its groups and features."""
    cat = catalogue(server, "ml-100k", ML100K)
    record = datasets.fetch("ml-100k", tmp_path / "c", catalogue=cat)
    options = record["compare"].split()[3:]
    res = runner.invoke(app, ["info", record["path"], "--json", "--cold-users", "0", *options])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["interactions"] == 2  # ratings >= 4 are the positives
    assert set(summary["features"]) == {"age", "gender", "occupation"}


def test_checksum_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    cat = catalogue(server, "ml-100k", ML100K, sha256="0" * 64)
    with pytest.raises(DownloadError, match=f"SHA-256 {sha(ML100K)} is not the expected 0{{64}}"):
        datasets.fetch("ml-100k", tmp_path / "c", catalogue=cat)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".mfvsdnn.json"]


def test_trust_on_first_use_records_then_checks(server, tmp_path):
    cat = catalogue(server, "lastfm-2k", LASTFM, sha256=None)
    trusted: list[str] = []
    record = datasets.fetch("lastfm-2k", tmp_path / "c", catalogue=cat, on_trust=trusted.append)
    assert trusted == [sha(LASTFM)] and record["archive_sha256"] == sha(LASTFM)
    assert "trust on first use" in record["sha256_checked_against"]
    assert (tmp_path / "c" / "lastfm-2k.csv").read_text().splitlines() == [
        "user_id,item_id,plays", "2,51,13883", "2,52,11690", "3,51,7"]
    # the publisher's file changes and the cached archive is lost: the new bytes are refused
    server.files["/datasets/lastfm-2k.zip"] = _zip({"user_artists.dat": "userID\tartistID\tweight\n9\t9\t9\n"})
    (tmp_path / "c" / "lastfm-2k.zip").unlink()
    with pytest.raises(DownloadError, match="recorded at the first download"):
        datasets.fetch("lastfm-2k", tmp_path / "c", catalogue=cat, on_trust=trusted.append)
    assert trusted == [sha(LASTFM)]
    assert (tmp_path / "c" / "lastfm-2k.csv").read_text().splitlines()[1] == "2,51,13883"  # untouched


def test_a_damaged_cache_is_downloaded_again(server, tmp_path):
    cat = catalogue(server, "ml-1m", ML1M)
    datasets.fetch("ml-1m", tmp_path / "c", catalogue=cat)
    (tmp_path / "c" / "ml-1m.zip").write_bytes(b"PK damaged")
    record = datasets.fetch("ml-1m", tmp_path / "c", catalogue=cat)
    assert not record["cached"] and (tmp_path / "c" / "ml-1m.zip").read_bytes() == ML1M
    (tmp_path / "c" / "ml-1m.csv").write_text("edited\n")
    served = len(server.requests)
    record = datasets.fetch("ml-1m", tmp_path / "c", catalogue=cat)  # the archive is fine: converted again
    assert len(server.requests) == served and not record["cached"]
    assert (tmp_path / "c" / "ml-1m.csv").read_text().splitlines() == [
        "user_id,item_id,rating,timestamp,age,gender,occupation,genre",
        "1,1,5,978300760,1,F,K-12 student,Animation", "2,2,3,978302109,56,M,self-employed,Adventure"]


def test_partial_download_is_resumed_with_range(server, tmp_path):
    cat = catalogue(server, "ml-100k", ML100K)
    cut = len(ML100K) // 2
    server.cut_after = cut
    with pytest.raises(DownloadError, match=f"stopped after {cut:,} of {len(ML100K):,} bytes"):
        datasets.fetch("ml-100k", tmp_path / "c", catalogue=cat)
    part = tmp_path / "c" / "ml-100k.zip.part"
    assert part.read_bytes() == ML100K[:cut]
    record = datasets.fetch("ml-100k", tmp_path / "c", catalogue=cat)
    assert server.requests[-1][1] == f"bytes={cut}-"
    assert record["archive_sha256"] == sha(ML100K) and not part.exists()
    assert (tmp_path / "c" / "ml-100k.csv").read_text().splitlines() == EXPECTED_100K


def test_partial_download_restarts_when_the_server_ignores_range(server, tmp_path):
    cat = catalogue(server, "ml-100k", ML100K)
    (tmp_path / "c").mkdir()
    datasets.fetch("lastfm-2k", tmp_path / "c", catalogue=catalogue(server, "lastfm-2k", LASTFM))  # own the folder
    part = tmp_path / "c" / "ml-100k.zip.part"
    part.write_bytes(b"x" * 500)  # bytes that are not the file's prefix
    marker = tmp_path / "c" / ".mfvsdnn.json"
    doc = json.loads(marker.read_text())
    marker.write_text(json.dumps({**doc, "entries": [*doc["entries"], part.name]}))
    server.ignore_range = True
    record = datasets.fetch("ml-100k", tmp_path / "c", catalogue=cat)
    assert server.requests[-1][1] == "bytes=500-"  # asked, got the whole file, started again
    assert record["archive_sha256"] == sha(ML100K)


def test_movielens_csv_layout_converts_streaming(server, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "BLOCK_BYTES", 64)  # several blocks even for this tiny file
    record = datasets.fetch("ml-20m", tmp_path / "c", catalogue=catalogue(server, "ml-20m", ML20M))
    assert (tmp_path / "c" / "ml-20m.csv").read_text().splitlines() == [
        "user_id,item_id,rating,timestamp,genre", "1,2,3.5,1112486027,unknown", "1,1,4.0,1112484676,Adventure",
        "7,1,0.5,1094785740,Adventure"]
    assert record["rows"] == 3 and record["compare"].endswith("--min-weight 4 --item-group-col genre")


def test_path_traversal_members_are_refused(server, tmp_path):
    evil = _zip({"ml-100k/u.user": "1|24|M|x|1\n", "../../escape.txt": "boom"})
    with pytest.raises(DownloadError, match="points outside"):
        datasets.fetch("ml-100k", tmp_path / "c", catalogue=catalogue(server, "ml-100k", evil))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "c" / "ml-100k.csv").exists()


def test_an_archive_of_another_layout_is_one_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="has no ml-100k/u.user"):
        datasets.fetch("ml-100k", tmp_path / "c", catalogue=catalogue(server, "ml-100k", LASTFM))


def test_http_errors_and_offline_are_one_line_at_the_cli(server, tmp_path, monkeypatch):
    cat = catalogue(server, "ml-100k", ML100K)
    monkeypatch.setattr(datasets, "CATALOGUE", {"ml-100k": dataclasses.replace(
        cat["ml-100k"], url=server.base + "/missing.zip")})
    res = runner.invoke(app, ["datasets", "fetch", "ml-100k", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 1 and "HTTP 404" in res.output and "Traceback" not in res.output

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(datasets, "CATALOGUE", {"ml-100k": dataclasses.replace(
        cat["ml-100k"], url=f"http://127.0.0.1:{closed}/ml-100k.zip")})
    res = runner.invoke(app, ["datasets", "fetch", "ml-100k", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 1 and "cannot reach 127.0.0.1" in res.output and "offline" in res.output
    assert "nothing was downloaded" in res.output

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(datasets, "CATALOGUE", {"ml-100k": dataclasses.replace(
        cat["ml-100k"], url="https://files.example.invalid/ml-100k.zip")})
    res = runner.invoke(app, ["datasets", "fetch", "ml-100k", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 1 and "cannot resolve files.example.invalid" in res.output
    error_lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1


def test_cli_fetch_prints_terms_and_compare_line_and_list_shows_cached(server, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CATALOGUE", {**datasets.CATALOGUE, **catalogue(server, "ml-100k", ML100K)})
    res = runner.invoke(app, ["datasets", "list", "--json", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    listed = {d["name"]: d for d in json.loads(res.output)["datasets"]}
    assert set(listed) == {"ml-100k", "ml-1m", "ml-20m", "ml-25m", "lastfm-2k"} and not listed["ml-100k"]["cached"]
    res = runner.invoke(app, ["datasets", "fetch", "ml-100k", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "GroupLens MovieLens licence" in text and "research use" in text
    assert f"mfvsdnn compare {tmp_path / 'c' / 'ml-100k.csv'} --weight-col rating --min-weight 4" in text
    res = runner.invoke(app, ["datasets", "list", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 0 and "ml-100k" in res.output and "yes" in res.output


def test_unknown_name_and_foreign_dir_are_refused(tmp_path, monkeypatch):
    res = runner.invoke(app, ["datasets", "fetch", "ml-7", "--dir", str(tmp_path / "c")])
    assert res.exit_code == 1 and "unknown data set 'ml-7'" in res.output and not (tmp_path / "c").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["datasets", "fetch", "ml-100k", "--dir", str(tmp_path / "mine")])
    assert res.exit_code == 1 and "not written by mfvsdnn" in res.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_default_dir_is_the_environment_then_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "env"))
    assert datasets.cache_dir(None) == tmp_path / "env"
    assert datasets.cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(datasets.DATA_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir(None) == tmp_path / "home" / ".cache" / "mfvsdnn" / "datasets"


def test_catalogue_hashes_are_well_formed_and_sourced():
    for e in datasets.CATALOGUE.values():
        assert e.url.startswith("https://files.grouplens.org/datasets/")
        if e.sha256 is not None:
            assert len(e.sha256) == 64 and int(e.sha256, 16) >= 0 and "tensorflow" in e.sha256_source.lower()


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_documents_the_datasets_commands():
    text = README.read_text(encoding="utf-8")
    for needle in ("## Datasets", "`mfvsdnn datasets list", "`mfvsdnn datasets fetch NAME", "`--dir",
                   "`MFVSDNN_DATA`", "~/.cache/mfvsdnn/datasets", *datasets.CATALOGUE):
        assert needle in text, needle
