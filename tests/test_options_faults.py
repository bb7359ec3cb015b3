"""No traceback ever: Ctrl-C (in a command and during start-up), OSError, MemoryError, any other
exception, and a numba cache that cannot be written."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mfvsdnn
import mfvsdnn.api as api
from mfvsdnn.cli import app
from mfvsdnn.data.synthetic import SyntheticConfig, write_csv

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    write_csv(SyntheticConfig(users=200, items=60, groups=3, seed=1), path)
    return path


def _raising(exc):
    def f(*args, **kwargs):
        raise exc
    return f


def _python(code: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    full_env.pop("MFVSDNN_NUMBA_NOTE_SHOWN", None)
    # a child started from a background job inherits SIGINT ignored (and Python then installs no
    # KeyboardInterrupt handler): give it the default disposition a user's terminal gives
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=600, cwd=kw.pop("cwd", REPO),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


# ------------------------------------------------------------------------------------------------
# in-process (CliRunner)


def test_ctrl_c_in_a_command_prints_aborted_and_exits_130(tiny, monkeypatch):
    monkeypatch.setattr(api, "prepare_split", _raising(KeyboardInterrupt()))
    res = runner.invoke(app, ["info", str(tiny)])
    assert res.exit_code == 130
    assert res.output.strip() == "Aborted" and "Traceback" not in res.output


def test_os_error_is_one_line_with_the_path_and_reason(tiny, monkeypatch):
    err = OSError(errno.ENOSPC, "No space left on device", "/data/runs/wals/model.npz")
    monkeypatch.setattr(api, "prepare_split", _raising(err))
    res = runner.invoke(app, ["info", str(tiny)])
    assert res.exit_code == 1
    assert res.output == "error: /data/runs/wals/model.npz: No space left on device\n"


def test_os_error_from_the_file_system_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    res = runner.invoke(app, ["make-data", str(tmp_path / "file" / "x.csv"), "--users", "10", "--items", "5"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.startswith(f"error: {tmp_path / 'file'}") and res.output.count("\n") == 1
    assert (tmp_path / "file").read_text() == "not a folder"


def test_memory_error_says_not_enough_memory(tiny, monkeypatch):
    msg = "Unable to allocate 74.5 GiB for an array with shape (200, 100000000) and data type float32"
    monkeypatch.setattr(api, "prepare_split", _raising(MemoryError(msg)))
    res = runner.invoke(app, ["info", str(tiny)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.startswith(f"error: not enough memory for mfvsdnn info: {msg}")


def test_any_other_exception_is_one_line_unless_asked_for_the_traceback(tiny, monkeypatch):
    monkeypatch.setattr(api, "prepare_split", _raising(ValueError("boom")))
    res = runner.invoke(app, ["info", str(tiny)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.startswith("error: unexpected ValueError in mfvsdnn info: boom")
    monkeypatch.setenv("MFVSDNN_TRACEBACK", "1")
    res = runner.invoke(app, ["info", str(tiny)])
    assert isinstance(res.exception, ValueError)


def test_library_error_text_is_not_read_as_markup(tiny, monkeypatch):
    from mfvsdnn.core.errors import DataError

    monkeypatch.setattr(api, "prepare_split", _raising(DataError("column [bold]x[/bold] is missing")))
    res = runner.invoke(app, ["info", str(tiny)])
    assert res.exit_code == 1 and res.output == "error: column [bold]x[/bold] is missing\n"


def test_usage_errors_are_one_line_with_exit_1():
    for argv in (["--bogus"], ["bogus"], ["info", "x.csv", "--nosuch"], ["train-wals", "x.csv", "--factors", "a"]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 1, (argv, res.output)
        assert res.output.startswith("error: ") and res.output.count("\n") == 1, (argv, res.output)


# ------------------------------------------------------------------------------------------------
# subprocesses: a real SIGINT, the console script


def test_console_script_is_the_tiny_entry_function():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "mfvsdnn"]
    assert ep.value == "mfvsdnn.__main__:main"
    res = subprocess.run([sys.executable, "-m", "mfvsdnn", "--version"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 0 and res.stdout.startswith("mfvsdnn ")


def test_ctrl_c_during_start_up_imports():
    """A real SIGINT delivered while the CLI imports pandas (the slow part of start-up)."""
    res = _python("""
        import builtins, os, signal, sys
        real_import = builtins.__import__
        def import_(name, *args, **kwargs):
            if name == "pandas":
                os.kill(os.getpid(), signal.SIGINT)
            return real_import(name, *args, **kwargs)
        builtins.__import__ = import_
        sys.argv = ["mfvsdnn", "info", "never-read.csv"]
        from mfvsdnn.__main__ import main
        main()
    """)
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip() == "Aborted" and "Traceback" not in res.stderr


def test_ctrl_c_while_a_command_runs(tiny):
    """A real SIGINT delivered while the command reads its data."""
    res = _python(f"""
        import os, signal, sys, time
        import mfvsdnn.api as api
        def read(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)  # the signal interrupts this
        api.prepare_split = read
        sys.argv = ["mfvsdnn", "info", {str(tiny)!r}]
        from mfvsdnn.__main__ import main
        main()
    """)
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip() == "Aborted" and "Traceback" not in res.stderr


# ------------------------------------------------------------------------------------------------
# the numba cache


@pytest.fixture
def unwritable(tmp_path):
    """A path numba cannot create (a folder under a regular file: refused even to root)."""
    (tmp_path / "file").write_text("")
    return str(tmp_path / "file" / "cache")


def test_unwritable_numba_cache_dir_falls_back_with_one_note(tiny, tmp_path, unwritable, pytestconfig):
    fallback_home = pytestconfig.cache.mkdir("numba-fallback")  # kept between runs: compiled once
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "mfvsdnn", "train-wals", str(tiny), "--out", str(out),
                          "--iterations", "1", "--factors", "4"], capture_output=True, text=True, timeout=600,
                         cwd=REPO, env={**os.environ, "NUMBA_CACHE_DIR": unwritable,
                                        "XDG_CACHE_HOME": str(fallback_home)})
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: NUMBA_CACHE_DIR={unwritable} is not writable (Not a directory); compiled kernels "
                     f"are cached in {fallback_home / 'mfvsdnn' / 'numba'} instead"]
    assert (out / "model.json").exists()
    assert any((fallback_home / "mfvsdnn" / "numba").rglob("*.nbi"))  # numba's cache index files


def test_no_writable_cache_anywhere_compiles_without_one(tmp_path, unwritable):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / f"mfvsdnn-numba-{os.getuid()}").write_text("")  # the last fallback is taken too
    env = {"NUMBA_CACHE_DIR": unwritable, "XDG_CACHE_HOME": unwritable, "TMPDIR": str(tmp),
           "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}  # numba's own defaults off as well
    res = _python("""
        import numpy as np
        import mfvsdnn.models.softmax.kernels as K
        from mfvsdnn.core.numba_util import CACHE
        out = np.zeros((3, 2), dtype=np.float32)
        K.scatter_rows(np.array([0, 2, 0]), np.ones((3, 2), dtype=np.float32), out)
        print(CACHE, out.sum())
    """, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "6.0"]
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "compiling the kernels without a cache" in notes[0]
    assert "Traceback" not in res.stderr


def test_without_the_fallback_numba_would_fail(tmp_path, unwritable):
    """The situation the fallback exists for: numba refuses to decorate a cached kernel (the control
    with a writable NUMBA_CACHE_DIR decorates fine)."""
    (tmp_path / "kernel.py").write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x\n")
    code = """
        try:
            import kernel
            print("decorated")
        except RuntimeError as e:
            print("refused:", e)
    """
    only_given_dir = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    res = _python(code, env={**only_given_dir, "NUMBA_CACHE_DIR": unwritable}, cwd=tmp_path)
    assert "refused: cannot cache function 'f'" in res.stdout, res.stdout + res.stderr
    res = _python(code, env={**only_given_dir, "NUMBA_CACHE_DIR": str(tmp_path / "ok")}, cwd=tmp_path)
    assert res.stdout.strip() == "decorated", res.stdout + res.stderr


def test_the_cache_probe_covers_every_kernel_module():
    """The probe must look at every module whose kernels use the cache flag (it compiles a function
    'in' each of them), or a read-only install would still fail in the module it missed."""
    from mfvsdnn.core.numba_util import KERNEL_SOURCES

    package = Path(mfvsdnn.__file__).resolve().parent
    assert all(p.exists() for p in KERNEL_SOURCES), KERNEL_SOURCES
    users = {p.resolve() for p in package.rglob("*.py") if "cache=CACHE" in p.read_text(encoding="utf-8")}
    assert users and users <= {p.resolve() for p in KERNEL_SOURCES}, users
