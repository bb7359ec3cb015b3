"""The HTML reports read well: alignment, no literal backticks, the verdicts first, legends outside the
axes, map colours, the folding threshold, legible sweep panels, scale tick formats; and the report check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfvsdnn.experiment.verdicts import FOLD_MARGIN
from mfvsdnn.report import curves, html, plots

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text", ["0.4100 [0.3800, 0.4400]", "+0.0765 [0.0604, 0.0895] p < 1e-6, adj. < 1e-6",
                                  "266.2 KiB", "0.0662 ms", "—", "n/a", "1.2e-05", "42", "-0.05", "3.2 s"])
def test_figures_are_numbers(text):
    assert html.is_number(text)


@pytest.mark.parametrize("text", ["WALS", "cold r=1", "recall@20", "softmax(negatives=0) (contrast of softmax)",
                                  "yes (p < 1e-6)", ""])
def test_words_are_not_numbers(text):
    assert not html.is_number(text)


def test_table_aligns_numbers_right_and_prose_left_without_backticks():
    out = html.table_html(["metric", "WALS"], [["recall@20", "0.41 [0.38, 0.44]"], ["note `--w0` here", "—"]])
    assert "<th class='text'>metric</th>" in out and "<th class='num'>WALS</th>" in out
    assert "<td class='num'>0.41<span class='ci'>[0.38, 0.44]</span></td>" in out
    assert "<code>--w0</code>" in out and "`" not in out
    assert "td.num,th.num{text-align:right" in html.HTML_STYLE and "text-align:left" in html.HTML_STYLE


def test_prose_escapes_then_sets_code():
    assert html.prose("a < b `x<y>` and a stray `") == "a &lt; b <code>x&lt;y&gt;</code> and a stray "


def test_map_groups_at_most_eight_colours_plus_other():
    names = [f"g{i}" for i in range(12)]
    groups = np.repeat(np.arange(12), np.arange(12, 0, -1))  # g0 largest
    drawn = plots.map_groups(groups, names)
    assert drawn[0][0] == "other (4 groups)" and drawn[0][1] == plots.OTHER_GROUP_COLOR
    assert [d[0] for d in drawn[1:]] == names[:8]
    assert [d[1] for d in drawn[1:]] == list(plots.GROUP_COLORS)
    assert sum(int(d[2].sum()) for d in drawn) == len(groups)
    few = plots.map_groups(np.array([0, 1, 1]), ["a", "b"])
    assert [d[0] for d in few] == ["b", "a"]


def _inside(fig, artist, ax) -> bool:
    fig.canvas.draw()
    legend, box = artist.get_window_extent(), ax.get_window_extent()
    return legend.overlaps(box)


def sweep_doc(categorical: bool = True) -> dict:
    def point(model, knob, value, recall, leak):
        pops = [{"population": {"kind": "warm", "revealed": None}, "users": 100, "values": [
            {"metric": "recall", "k": 20, "mean": recall}, {"metric": "leakage", "k": 20, "mean": leak},
            {"metric": "ndcg", "k": 20, "mean": recall / 2}, {"metric": "natural_cross_rate", "k": None,
                                                              "mean": 0.05}]}]
        return {"model": model, "knob": knob, "value": value, "populations": pops, "train_seconds": 1.0}
    pts = [point("wals", "w0", 0.0, 0.3, 0.6), point("wals", "w0", 0.1, 0.4, 0.03)]
    if categorical:
        pts += [point("softmax", "sampler", "uniform", 0.38, 0.01), point("softmax", "sampler", "popularity", 0.39, 0.03)]
    return {"points": pts, "config": {"ks": [10, 20, 50]}, "split": {"config": {"revealed": []}}}


def test_sweep_panels_legible_categorical_points_no_negative_leakage():
    doc = sweep_doc()
    figs = curves.sweep_figures(doc)
    for name in ("wals-w0", "softmax-sampler"):
        fig = figs[name][1]
        fig.canvas.draw()
        for ax in fig.axes:
            assert fig.get_figwidth() * plots.DPI / len(fig.axes) >= 360  # each panel's share of the PNG
            for text in [ax.title, ax.xaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]:
                if text.get_text():
                    assert text.get_fontsize() >= 9, (name, text.get_text())
            if "leakage" in ax.get_title():
                assert min(ax.get_yticks()) >= 0 and ax.get_ylim()[0] == 0
                assert not _inside(fig, ax.get_legend(), ax)
    sampler_lines = figs["softmax-sampler"][1].axes[0].get_lines()
    assert sampler_lines[0].get_linestyle() == "None"  # named values: points only
    assert figs["wals-w0"][1].axes[0].get_lines()[0].get_linestyle() == "-"
    frontier = figs["frontier"][1]
    ax = frontier.axes[0]
    assert min(ax.get_xticks()) >= 0 and not _inside(frontier, ax.get_legend(), ax)


def test_scale_ticks_one_format_and_r2_in_legend():
    doc = {"points": [{"items": n, "users": n, "interactions": 10 * n, "wals_seconds_per_iteration": n / 1e4}
                      for n in (150, 300, 600, 1200)],
           "fits": {"wals_seconds_per_iteration": {"exponent": 1.0, "r2": 0.98}}, "x": "items", "config": {"seed": 0}}
    figs = curves.scale_figures(doc)
    fig = figs["training"][1]
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert labels and not any("$" in t or "^" in t for t in labels)  # no 10^x mathtext beside plain figures
    assert "1,200" in labels
    assert "R² = 0.98" in ax.get_legend().get_texts()[0].get_text()
    assert not _inside(fig, ax.get_legend(), ax)
    assert curves.tick_text(0.00123) == "0.00123" and curves.tick_text(25000) == "25,000"


def test_folding_threshold_marks_each_contrast(monkeypatch):
    from types import SimpleNamespace as NS

    folding = [NS(model="wals", index=0.1, ci=(0.05, 0.15), natural=0.05, random_leakage=0.7, k=20,
                  population="warm"),
               NS(model="wals(w0=0)", index=0.4, ci=(0.3, 0.5), natural=0.05, random_leakage=0.7, k=20,
                  population="warm")]
    models = [NS(name="wals", role="model", variant_of=None), NS(name="wals(w0=0)", role="contrast", variant_of="wals")]
    results = NS(models=models, folding=folding, paired=[])
    monkeypatch.setattr(plots, "folding_order", lambda r: r.folding)
    monkeypatch.setattr(plots, "labels", lambda r: {})
    monkeypatch.setattr(plots, "folding_test", lambda r, f: None)
    with plots.legible():
        fig = plots.folding_figure(results, {"wals": "#1b9e77"})
    ax = fig.axes[0]
    marks = [line for line in ax.get_lines() if line.get_label().startswith("verdict threshold")]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == pytest.approx([0.1 + FOLD_MARGIN] * 2)
    assert not _inside(fig, ax.get_legend(), ax)


def test_compare_html_puts_the_verdicts_first(monkeypatch):
    from types import SimpleNamespace as NS

    verdict = NS(axis="folding", claim="MF: reduced by `w0`.", evidence="index 0.1 [0.05, 0.15]", verdict="agrees")
    results = NS(settings=NS(seed=1, command="mfvsdnn compare x.csv"), dataset={"source": "x.csv"},
                 models=[NS(name="wals", role="model")], split={"fingerprint": "abc"}, verdicts=[verdict],
                 warnings=["few cold users"], notes=[])
    monkeypatch.setattr(html, "labels", lambda r: {"wals": "WALS"})
    monkeypatch.setattr(html, "method_text", lambda r: "one seed")
    monkeypatch.setattr(html, "family_note", lambda r, name: "")
    monkeypatch.setattr(html, "verdict_text", lambda v: v.verdict)
    monkeypatch.setattr(html, "compare_tables", lambda r: [NS(title="Side by side", header=["metric", "WALS"],
                                                              rows=[["recall@20", "0.4"]], grouped=False, note="")])
    page = html.compare_html(results, {})
    assert page.index("<table") > page.index("The trade-off table") and page.index("<table") < page.index("Warnings")
    assert page.index("Warnings") < page.index("Side by side") and "`" not in page


def test_report_check_skips_without_chromium(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report_check.py"), "--browser",
                           str(tmp_path / "no-such-browser"), str(tmp_path / "x.html")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "SKIPPED" in done.stdout


def test_report_check_probe_finds_overflow_and_broken_image(tmp_path):
    import shutil

    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><head></head><body><div style='width:3000px'>wide</div>"
                   "<img alt='broken' src='data:image/png;base64,AAAA'><p>`tick`</p></body></html>")
    good = tmp_path / "good.html"
    good.write_text("<html><head></head><body><p>fine</p></body></html>")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report_check.py"), "--out", str(tmp_path / "png"),
                           str(bad), str(good)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout
    assert re.search(r"bad.html: overflows: div", done.stdout) and "image did not load: broken" in done.stdout
    assert "literal backtick" in done.stdout and "ok   " + str(good) in done.stdout
    assert (tmp_path / "png" / "good.png").stat().st_size > 0
