"""The performance table `make bench` regenerates: summaries written by the benchmarks, rendered."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_summary  # noqa: E402
import perf_table  # noqa: E402


def test_command_line_drops_the_summary_option(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/benchmarks/bench_eval.py", "--users", "10", "--summary", "out.json",
                                      "--summary=b.json", "--items", "5"])
    assert bench_summary.command_line() == ".venv/bin/python benchmarks/bench_eval.py --users 10 --items 5"


def test_summaries_render_in_benchmark_order_with_verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_ann.py"])
    bench_summary.write(str(tmp_path / "ann.json"), [{"what": "HNSW", "result": "0.96 at 1/25", "goal": ">= 0.95",
                                                      "met": True}], started=0.0)
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_wals.py", "--users", "9"])
    bench_summary.write(str(tmp_path / "wals.json"), [{"what": "WALS", "result": "20% of peak", "goal": ">= 25%",
                                                       "met": False}], started=0.0)
    doc = json.loads((tmp_path / "wals.json").read_text())
    assert doc["command"] == ".venv/bin/python benchmarks/bench_wals.py --users 9" and doc["schema"] == 1
    table = perf_table.render(str(tmp_path))
    lines = table.splitlines()
    assert "cores" in lines[0] and lines[0].startswith("Measured by `make bench` on ")
    rows = [ln for ln in lines if ln.startswith("| WALS") or ln.startswith("| HNSW")]
    assert rows[0].startswith("| WALS") and rows[0].endswith("**not met** |")  # wals before ann
    assert rows[1].startswith("| HNSW") and rows[1].endswith("**met** |")
    assert "`.venv/bin/python benchmarks/bench_wals.py --users 9`" in rows[0]


def test_no_summaries_is_one_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="no benchmark summaries"):
        perf_table.render(str(tmp_path))
