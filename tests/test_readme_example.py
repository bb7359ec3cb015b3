"""The README's Python API example runs verbatim (extracted from README.md, run from the repo root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_api_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 3)]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_python_api_example_runs_verbatim():
    code = python_api_block()
    assert "from mfvsdnn import" in code and "compare(" in code and ".recommend(" in code
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "u000001" in out and "new user 0" in out  # both recommend calls answered in raw ids
    assert "wals" in out and "popularity" in out and "softmax" in out  # every model in the table
    assert "('folding'," in out  # the verdicts
