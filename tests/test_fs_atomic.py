"""Replacement is atomic and exclusive: a write stopped between any two steps (a real kill, or Ctrl-C)
leaves a complete old or new run at the path and the next write cleans up; a second writer is refused
before it starts; permissions follow the umask; a full disk or read-only folder is one clean message."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfvsdnn import api
from mfvsdnn.cli import app
from mfvsdnn.core import fsutil
from mfvsdnn.core.errors import StoreError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv
from mfvsdnn.models.registry import get as model_class
from mfvsdnn.models.store import load_run, save_run

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
TRAIN = ["--factors", "3", "--iterations", "1"]
EXCHANGE_STEPS = ["staged", "swapped", "cleaned"]
FALLBACK_STEPS = ["staged", "aside", "swapped", "cleaned"]
NEW_AFTER = {"staged": False, "aside": False, "swapped": True, "cleaned": True}

# run the CLI in a child that dies (os._exit: no clean-up of any kind) at one step of the replacement
KILL_AT = r"""
import os, sys
from mfvsdnn.core import fsutil
step, mode = sys.argv[1], sys.argv[2]
if mode == "fallback":
    fsutil.exchange = lambda a, b: False
def die(s):
    if s == step:
        os._exit(17)
fsutil._fault = die
from mfvsdnn.cli import app
app(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("atomic") / "small.csv"
    write_csv(SyntheticConfig(users=120, items=40, groups=2, seed=3), p)
    return p


@pytest.fixture(scope="module")
def models(csv):
    split = api.prepare_split(csv, ColumnSpec(), SplitConfig(seed=1))
    fit = {f: model_class("wals")(factors=f, iterations=1).fit(split.train_set(), __import__("numpy").random
                                                                .default_rng(0)) for f in (2, 3)}
    return split, fit


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(e for e in os.listdir(parent) if e.startswith(f".{name}."))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("mode, step", [("exchange", s) for s in EXCHANGE_STEPS]
                         + [("fallback", s) for s in FALLBACK_STEPS])
def test_killed_between_steps_leaves_old_or_new_and_next_write_cleans(csv, tmp_path, mode, step):
    out = tmp_path / "run"
    assert invoke("train-wals", csv, "--out", out, "--factors", "2", "--iterations", "1").exit_code == 0
    child = subprocess.run([sys.executable, "-c", KILL_AT, step, mode, "train-wals", str(csv), "--out", str(out),
                            *TRAIN], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert child.returncode == 17, child.stderr
    if step == "aside":
        assert not out.exists()  # the one window of the two-rename fallback ...
    run = load_run(out)  # ... which a reader repairs: it puts the old run back
    assert run.model.factors == (3 if NEW_AFTER[step] else 2)
    res = invoke("train-wals", csv, "--out", out, "--factors", "4", "--iterations", "1")
    assert res.exit_code == 0, res.output
    assert load_run(out).model.factors == 4
    assert leftovers(tmp_path, "run") == []  # staging, set-aside and lock files all gone


@pytest.mark.parametrize("mode, step", [("exchange", s) for s in EXCHANGE_STEPS]
                         + [("fallback", s) for s in FALLBACK_STEPS])
def test_ctrl_c_at_any_step_leaves_old_or_new_and_cleans_its_temporaries(models, tmp_path, monkeypatch, mode, step):
    split, fit = models
    out = tmp_path / "run"
    save_run(out, fit[2], split, seed=0)

    def interrupt(s):
        if s == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(fsutil, "_fault", interrupt)
    if mode == "fallback":
        monkeypatch.setattr(fsutil, "exchange", lambda a, b: False)
    with pytest.raises(KeyboardInterrupt):
        save_run(out, fit[3], split, seed=0)
    assert leftovers(tmp_path, "run") == []
    assert load_run(out).model.factors == (3 if NEW_AFTER[step] else 2)


def test_first_write_is_all_or_nothing(models, tmp_path, monkeypatch):
    split, fit = models

    def interrupt(s):
        if s == "staged":
            raise KeyboardInterrupt

    monkeypatch.setattr(fsutil, "_fault", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_run(tmp_path / "new", fit[2], split, seed=0)
    assert sorted(os.listdir(tmp_path)) == []


def hold_lock(target: Path) -> int:
    """Take the lock of ``target`` as another mfvsdnn process would (flock on .NAME.lock)."""
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def test_second_writer_is_refused_before_it_reads_or_trains(csv, tmp_path, monkeypatch):
    rep = tmp_path / "rep"  # a report folder holding a run of its own (another mfvsdnn output)
    rep.mkdir()
    (rep / fsutil.MARKER).write_text('{"format": "mfvsdnn-output", "what": "compare", "entries": []}')
    out = rep / "wals"
    assert invoke("train-wals", csv, "--out", out, "--factors", "2", "--iterations", "1").exit_code == 0

    def no_work(*a, **k):
        raise AssertionError("trained although the output is locked")

    monkeypatch.setattr(api, "prepare_split", no_work)
    fd = hold_lock(out)
    try:
        res = invoke("train-wals", csv, "--out", out, *TRAIN)
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert f"another mfvsdnn process (pid {os.getpid()}) is writing {out};" in res.output
        assert "wait for it or choose another --out" in res.output
        res = invoke("compare", csv, "--report-dir", rep)  # would replace the folder holding the locked one
        assert res.exit_code == 1 and f"is writing {rep / 'wals'};" in res.output, res.output
    finally:
        os.close(fd)
    assert load_run(out).model.factors == 2
    fd = hold_lock(rep)
    try:
        res = invoke("compare", csv, "--report-dir", rep)
        assert res.exit_code == 1 and "choose another --report-dir" in res.output and "is writing" in res.output
        res = invoke("train-wals", csv, "--out", out, *TRAIN)  # inside a folder being written
        assert res.exit_code == 1 and f"is writing {rep}, which holds {out}" in res.output, res.output
    finally:
        os.close(fd)


def test_stale_temporaries_are_cleaned_by_the_next_write(csv, tmp_path):
    out = tmp_path / "run"
    assert invoke("train-wals", csv, "--out", out, "--factors", "2", "--iterations", "1").exit_code == 0
    for name in (".run.mfvsdnn-tmp-99999-abcd", ".run.mfvsdnn-old-99999-beef", ".run.abcd_123.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.npz").write_bytes(b"half")
    (tmp_path / ".run.lock").write_text("99999\n")  # a crashed holder's lock file
    (tmp_path / "keep.txt").write_text("not the tool's")
    assert invoke("train-wals", csv, "--out", out, *TRAIN).exit_code == 0
    assert sorted(os.listdir(tmp_path)) == ["keep.txt", "run"]
    assert load_run(out).model.factors == 3


def test_a_reader_restores_a_run_set_aside_by_a_crash(models, tmp_path):
    split, fit = models
    save_run(tmp_path / "run", fit[2], split, seed=0)
    os.rename(tmp_path / "run", tmp_path / ".run.mfvsdnn-old-99999-0abc")
    assert load_run(tmp_path / "run").model.factors == 2
    assert sorted(os.listdir(tmp_path)) == ["run"]


@pytest.mark.parametrize("umask, fmode, dmode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_modes_follow_the_umask(csv, tmp_path, umask, fmode, dmode):
    old = os.umask(umask)
    try:
        assert invoke("train-wals", csv, "--out", tmp_path / "runs" / "w", *TRAIN).exit_code == 0
        assert invoke("recommend", tmp_path / "runs" / "w", "--all", "--out", tmp_path / "recs.csv").exit_code == 0
        assert invoke("make-data", tmp_path / "d.csv", "--users", 60, "--items", 20, "--groups", 2).exit_code == 0
        res = invoke("sweep", csv, "--w0", "0.1", "--negatives", "", "--sampler", "", "--gravity", "",
                     "--wals-param", "factors=2", "--wals-param", "iterations=1", "--bootstrap", 0,
                     "--report-dir", tmp_path / "sweep")
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    paths = list(tmp_path.rglob("*"))
    assert len(paths) > 10
    for p in paths:
        assert (p.stat().st_mode & 0o777) == (dmode if p.is_dir() else fmode), p


def test_full_disk_and_read_only_folder_are_one_line_and_the_old_run_stays(csv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert invoke("train-wals", csv, "--out", out, "--factors", "2", "--iterations", "1").exit_code == 0
    real_open_new = fsutil.open_new

    def full_disk(path, text=False):
        if str(path).endswith("model.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open_new(path, text)

    monkeypatch.setattr(fsutil, "open_new", full_disk)
    res = invoke("train-wals", csv, "--out", out, *TRAIN)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{out}: cannot write (No space left on device [ENOSPC]); nothing was replaced" in res.output
    monkeypatch.setattr(fsutil, "open_new", real_open_new)

    def read_only(path, mode=0o777):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    res = invoke("train-wals", csv, "--out", out, *TRAIN)
    assert res.exit_code == 1 and "Read-only file system" in res.output and "Traceback" not in res.output
    monkeypatch.undo()
    assert load_run(out).model.factors == 2
    assert leftovers(tmp_path, "run") == []


def test_an_unwritable_place_is_a_clean_message(csv):
    # /proc refuses new files even for root: a real fault, not an injected one
    res = invoke("train-wals", csv, "--out", "/proc/mfvsdnn-test/run", *TRAIN)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "/proc/mfvsdnn-test/run: cannot" in res.output


def test_full_disk_while_writing_a_csv_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "d.csv"
    write_csv(SyntheticConfig(users=60, items=20, groups=2, seed=1), out)
    before = out.read_bytes()

    def full(s):
        if s == "file-staged":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil, "_fault", full)
    with pytest.raises(StoreError, match="No space left on device"):
        write_csv(SyntheticConfig(users=70, items=20, groups=2, seed=1), out)
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["d.csv"]


def test_exchange_swaps_two_folders_in_one_step_on_this_filesystem(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "1").touch()
    (b / "2").touch()
    if not fsutil.exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported here: replacements use the two-rename fallback")
    assert os.listdir(a) == ["2"] and os.listdir(b) == ["1"]


def test_a_reader_does_not_race_a_writer_mid_swap(models, tmp_path):
    split, fit = models
    save_run(tmp_path / "run", fit[2], split, seed=0)
    os.rename(tmp_path / "run", tmp_path / ".run.mfvsdnn-old-99999-0abc")
    fd = hold_lock(tmp_path / "run")  # the writer between its two renames
    try:
        with pytest.raises(StoreError, match="replacing it right now"):
            load_run(tmp_path / "run")
    finally:
        os.close(fd)
    assert load_run(tmp_path / "run").model.factors == 2


def test_missing_parents_are_created_but_not_under_a_file(csv, tmp_path):
    assert invoke("train-wals", csv, "--out", tmp_path / "a" / "b" / "run", *TRAIN).exit_code == 0
    assert load_run(tmp_path / "a" / "b" / "run").model.factors == 3
    (tmp_path / "f").write_text("x")
    res = invoke("make-data", tmp_path / "f" / "d.csv", "--users", 60, "--items", 20, "--groups", 2)
    assert res.exit_code == 1 and "is a file, not a folder" in res.output and "Traceback" not in res.output
    res = invoke("compare", csv, "--report-dir", tmp_path / "f" / "rep")
    assert res.exit_code == 1 and "is a file, not a folder" in res.output
    assert (tmp_path / "f").read_text() == "x"


def test_a_real_full_disk_and_read_only_mount(csv, tmp_path):
    """Where the tests may mount (root in a container): a 64 KiB tmpfs fills up, then turns read-only."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC/EROFS tests cover these paths")
    try:
        assert invoke("train-wals", csv, "--out", mnt / "run", "--factors", "2", "--iterations", "1").exit_code == 0
        res = invoke("train-wals", csv, "--out", mnt / "run", "--factors", "40", "--iterations", "1")
        assert res.exit_code == 1 and "No space left on device" in res.output and "Traceback" not in res.output
        assert load_run(mnt / "run").model.factors == 2 and os.listdir(mnt) == ["run"]
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        res = invoke("train-wals", csv, "--out", mnt / "run", *TRAIN)
        assert res.exit_code == 1 and "Read-only file system" in res.output
        assert load_run(mnt / "run").model.factors == 2
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


PAUSE_AT_STAGED = r"""
import sys
from mfvsdnn.core import fsutil
def pause(s):
    if s == "staged":
        print("ready", flush=True)
        sys.stdin.readline()
fsutil._fault = pause
from mfvsdnn.cli import app
app(sys.argv[1:])
"""


def test_two_processes_one_out_the_second_is_refused_with_the_first_ones_pid(csv, tmp_path):
    out = tmp_path / "run"
    assert invoke("train-wals", csv, "--out", out, "--factors", "2", "--iterations", "1").exit_code == 0
    first = subprocess.Popen([sys.executable, "-c", PAUSE_AT_STAGED, "train-wals", str(csv), "--out", str(out),
                              *TRAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    try:
        assert first.stdout.readline().strip() == "ready"  # the first writer holds the lock, its new run staged
        res = invoke("train-wals", csv, "--out", out, "--factors", "4", "--iterations", "1")
        assert res.exit_code == 1 and f"another mfvsdnn process (pid {first.pid}) is writing {out}" in res.output
        assert load_run(out).model.factors == 2
    finally:
        first.communicate("\n")
    assert first.returncode == 0
    assert load_run(out).model.factors == 3 and leftovers(tmp_path, "run") == []
