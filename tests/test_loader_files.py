"""What is not a regular file is refused before anything opens it (a FIFO must not block the loader)."""

from __future__ import annotations

import os
import threading

import pytest
from helpers import cli_fails

from mfvsdnn.core.errors import DataError
from mfvsdnn.data import read_interactions


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    outcome: list[BaseException | str] = []

    def load() -> None:
        try:
            read_interactions(fifo)
            outcome.append("read")
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            outcome.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(60)  # a guard against a hang, not a timing: the refusal needs no reader or writer
    if worker.is_alive():  # it opened the FIFO: release it, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("the loader opened the FIFO and blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], DataError), outcome
    assert "not a regular file" in str(outcome[0]) and "FIFO" in str(outcome[0])
    cli_fails(["info", fifo], "not a regular file", "FIFO")


def test_a_device_and_stdin_are_not_regular_files(tmp_path):
    if os.path.exists("/dev/null"):
        cli_fails(["info", "/dev/null"], "/dev/null", "not a regular file", "character device")
    cli_fails(["info", "-"], "not a regular file", "standard input")


def test_test_file_must_be_a_regular_file_too(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("user_id,item_id\na,x\n")
    cli_fails(["info", train, "--test", "-"], "not a regular file")
    cli_fails(["info", train, "--test", tmp_path], "is a directory")
    cli_fails(["info", train, "--test", tmp_path / "nope.csv"], "nope.csv", "no such file")


def test_directory_missing_and_empty_files_keep_their_messages(tmp_path):
    cli_fails(["info", tmp_path], "is a directory")
    cli_fails(["info", tmp_path / "nope.csv"], "no such file")
    (tmp_path / "empty.csv").write_bytes(b"")
    cli_fails(["info", tmp_path / "empty.csv"], "empty")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_one_message(tmp_path):
    p = tmp_path / "secret.csv"
    p.write_text("user_id,item_id\na,x\n")
    p.chmod(0)
    try:
        cli_fails(["info", p], "secret.csv", "cannot read")
    finally:
        p.chmod(0o600)
