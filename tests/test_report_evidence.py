"""The compare report's renderers on hand-built results (schema 3): every new piece of evidence appears
in report.md, report.html and the terminal, p-values are shown raw and adjusted, and the terminal fits
80 columns without cutting a number."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mfvsdnn.experiment import (
    results as results_types,  # not TestFamily by name: pytest would collect it
)
from mfvsdnn.experiment.results import (
    WARM,
    ComparisonRow,
    FoldingResult,
    GrowthResult,
    MetricValue,
    ModelResult,
    PairedTest,
    PopulationResult,
    Results,
    ServingCost,
    Settings,
    TrainingCost,
    Verdict,
    cold,
)
from mfvsdnn.report.html import compare_html
from mfvsdnn.report.markdown import compare_markdown
from mfvsdnn.report.plots import compare_plots
from mfvsdnn.report.tables import fmt_p_pair, fmt_pvalue, ordered_models, tuning_summary
from mfvsdnn.report.terminal import render_compare

K = 20
PIDS = (WARM, cold(0), cold(3))
CAPS = {"item_vectors": True, "candidate_cache": False, "uses_features": True, "embeds_cold_users": True}
WARNING = "softmax does not beat the best baseline on warm users (recall@20 0.300 vs group-popularity 0.310)"
LONG_EVIDENCE = ("folding index at k = 20 on warm users (0 = as separated as the data's natural cross-group rate "
                 "0.100 [0.09, 0.11], 1 = as mixed as random, whose leakage is 0.600 [0.58, 0.62]); MF (w0): "
                 "wals(w0=0) index 0.40 [0.30, 0.50] vs wals 0.10 [0.05, 0.15], difference +0.300; DNN: the same; "
                 "both knobs reduce folding significantly")


def _model(name, kind, family, recalls, role="model", variant_of=None, seed_sd=0.0042, tuning=None):
    pops = [PopulationResult(pid, 120, [MetricValue("recall", K, r, (r - 0.02, r + 0.02), seed_sd),
                                        MetricValue("leakage", K, 0.2, (0.18, 0.22), seed_sd),
                                        MetricValue("natural_cross_rate", None, 0.1, (0.09, 0.11), 0.0)])
            for pid, r in zip(PIDS, recalls, strict=True)]
    serving = ServingCost(10, 0.01, 0.02, 1.0, 2.0, 0.1, 0.2, 0.5, 1000)
    return ModelResult(name, kind, family, CAPS, {"dim": 8}, 42, None, True, None, TrainingCost(1.0, 10, 0.1),
                       serving, pops, role=role, variant_of=variant_of, repeats=3, tuning=tuning)


def _test(a, b, pid, metric, diff, p, p_adjusted, family):
    return PairedTest(a, b, pid, metric, K, diff, (diff - 0.01, diff + 0.01), p, p_adjusted < 0.05, p_adjusted,
                      family, 0.005)


@pytest.fixture
def results():
    tuning = {"trials": [{"params": {"dim": 8}, "recall": 0.41}, {"params": {"dim": 16}, "recall": 0.43}],
              "best_params": {"dim": 16}, "space": {"dim": [8, 16]}}
    models = [
        # deliberately out of role order: the reports group them
        _model("wals(w0=0)", "wals", "mf", (0.35, 0.25, 0.3), role="contrast", variant_of="wals"),
        _model("wals", "wals", "mf", (0.40, 0.30, 0.35), tuning=tuning),
        _model("softmax", "softmax", "dnn", (0.45, 0.32, 0.38), tuning=dict(tuning, best_params={"dim": 8})),
        _model("popularity", "popularity", "baseline", (0.20, 0.20, 0.20), role="baseline", seed_sd=0.0),
        _model("random", "random", "baseline", (0.01, 0.01, 0.01), role="baseline"),
        _model("wals+map", "wals", "mf", (0.40, 0.33, 0.37), role="variant", variant_of="wals",
               tuning={"fold_in_prior": 3.0, "grid": [[0.0, 0.30], [3.0, 0.33]]}),
    ]
    paired = [_test("wals", "softmax", WARM, "recall", -0.05, 1.73e-204, 5.2e-203, "comparison"),
              _test("wals", "softmax", cold(3), "recall", -0.03, 0.0123, 0.0369, "comparison"),
              _test("softmax", "popularity", WARM, "recall", 0.25, 0.0004, 0.0012, "verdicts"),
              _test("wals(w0=0)", "wals", WARM, "folding_index", 0.3, 2e-9, 6e-9, "verdicts")]
    comparison = [ComparisonRow("retrieval quality (warm users)", "metric", "recall", K, WARM, "", "higher",
                                {m.name: m.warm.mean("recall", K) for m in models},
                                {m.name: m.warm.get("recall", K).ci for m in models}, "softmax", True,
                                p=1.73e-204, diff=-0.05, diff_ci=(-0.06, -0.04), p_adjusted=5.2e-203),
                  ComparisonRow("cold start", "metric", "recall", K, cold(3), "", "higher",
                                {m.name: m.population(cold(3)).mean("recall", K) for m in models}, {}, "softmax",
                                True, p=0.0123, diff=-0.03, p_adjusted=0.0369)]
    settings = Settings(seed=42, ks=[K], main_k=K, bootstrap=200, confidence_level=0.95, serving_sample=10,
                        user_features=["country"], contrast=["wals", "softmax"], repeats=3, tune=8,
                        command="mfvsdnn compare data.csv --repeats 3 --tune 8")
    r = Results({"source": "data.csv", "items": 100, "groups": {"natural_cross_group_rate": 0.1}},
                {"fingerprint": "abc123", "config": {"seed": 42}, "warm_eval_users": 120, "cold_eval_users": 120},
                settings, models, paired, comparison)
    r.verdicts = [Verdict("folding", "MF: reduced by w0.", "agrees", LONG_EVIDENCE),
                  Verdict("serving scalability", "MF: U and V static.", "agrees",
                          "by design, wals's query vectors are stored rows; the DNN's request-time embedding costs "
                          "more here", "by design")]
    r.families = [results_types.TestFamily("comparison", "wals − softmax: every metric at k = 20 on every population", 2),
                  results_types.TestFamily("verdicts", "the tests the verdicts decide with", 2)]
    r.folding = [FoldingResult(name, WARM, K, index, (index - 0.05, index + 0.05), 0.1 + index * 0.5, 0.1,
                               (0.09, 0.11), 0.6, (0.58, 0.62), False)
                 for name, index in (("wals(w0=0)", 0.4), ("wals", 0.1), ("softmax", 0.05), ("popularity", 0.9),
                                     ("wals+map", 0.1))]
    r.growth = [GrowthResult("wals", "wals", "iteration", [0.25, 0.5, 1.0], [250, 500, 1000], [0.01, 0.02, 0.04],
                             1.0, 0.998, 3),
                GrowthResult("softmax", "softmax", "epoch", [0.25, 0.5, 1.0], [250, 500, 1000], [0.1, 0.26, 0.7],
                             1.4, 0.991, 3)]
    r.warnings = [WARNING]
    return r


def test_p_values_known_answers():
    assert fmt_pvalue(0.0123) == "0.012" and fmt_pvalue(0.0004) == "4.0e-04"
    assert fmt_pvalue(1.73e-204) == "< 1e-6" and fmt_pvalue(0.0) == "< 1e-6" and fmt_pvalue(float("nan")) == ""
    assert fmt_p_pair(0.0123, 0.0369) == "p 0.012, adj. 0.037"
    assert fmt_p_pair(0.0123, float("nan")) == "p 0.012" and fmt_p_pair(None, 0.5) == ""


def test_models_are_grouped_by_role(results):
    assert [m.name for m in ordered_models(results)] == ["wals", "softmax", "popularity", "random", "wals(w0=0)",
                                                         "wals+map"]


def test_tuning_is_read_generically():
    assert tuning_summary({"trials": [{"recall": 0.2}, {"validation_recall": 0.3}], "best_params": {"a": 1}}) == (
        "2", "a=1", "0.3000")
    assert tuning_summary({"trials": [], "best_params": {}, "best_value": 0.5})[2] == "0.5000"
    # the form experiment/tuning.py writes
    record = {"kind": "wals", "tuned": True, "reason": "", "trials": [{"params": {"w0": 0.1}, "valid_recall": 0.2},
                                                                    {"params": {"w0": 0.3}, "valid_recall": 0.25}],
              "best_trial": 1, "best_params": {"w0": 0.3}, "best_valid_recall": 0.25}
    assert tuning_summary(record) == ("2", "w0=0.3", "0.2500")
    assert tuning_summary(dict(record, tuned=False, reason="a loaded run"))[1] == "not tuned (a loaded run); w0=0.3"
    # trial 0 won: best_params lists nothing changed, the report shows what was fitted
    assert tuning_summary(dict(record, best_trial=0, best_params={}))[1] == "w0=0.1 (trial 0: the parameters as given)"


def test_markdown_shows_every_piece_of_evidence(results):
    md = compare_markdown(results)
    assert "3 model seeds per model; intervals: two-level bootstrap over seeds, then users" in md
    assert "tuning: 8 random-search trials per learned model on validation" in md
    # warnings near the top, before the verdicts and every table
    assert md.index("## Warnings") < md.index("## The trade-off table") < md.index("## Along the trade-off axes")
    assert WARNING in md
    assert "**agrees (by design)**" in md and "**agrees**" in md
    # raw and adjusted p, tiny ones as "< 1e-6", never a 204-digit exponent
    assert "p < 1e-6, adj. < 1e-6" in md and "p 0.012, adj. 0.037" in md and "e-204" not in md
    assert "| wals(w0=0) − WALS | warm | folding index@20 | +0.3000 [0.2900, 0.3100] | < 1e-6 | < 1e-6 | yes |" in md
    assert 'Test family "comparison" (2 paired tests, Holm–Bonferroni' in md
    assert 'Test family "verdicts" (2 paired tests' in md
    # the seed spread in the population tables, left out where every seed agreed
    assert "0.4000 [0.3800, 0.4200] ±0.0042 seeds" in md and "0.2000 [0.1800, 0.2200] |" in md
    # every model a column, grouped by role, baselines included
    header = next(line for line in md.splitlines() if line.startswith("| metric | WALS"))
    assert header.index("most popular (baseline)") < header.index("wals(w0=0) (contrast of wals)") < header.index(
        "wals+map (variant of wals)")


def test_markdown_folding_growth_tuning_and_fold_in_tables(results):
    md = compare_markdown(results)
    fold = md[md.index("## Folding (warm users, k = 20)"):]
    rows = [line for line in fold.splitlines()[4:9] if line.startswith("|")]
    assert rows[0].startswith("| WALS | 0.1500 | 0.100 [0.050, 0.150] | — |")
    assert rows[1].startswith("| wals(w0=0) (contrast of wals) | 0.3000 | 0.400 [0.350, 0.450] | +0.3000")  # next to it
    assert "natural cross-group rate 0.1000 [0.0900, 0.1100]" in fold and "leakage is 0.6000 [0.5800, 0.6200]" in fold
    assert "groups are too weak" not in md
    assert "| wals | iteration | 0.01 s | 0.02 s | 0.04 s | 1.00 | 1.00 | 3 |" in md
    assert "| softmax | epoch | 0.1 s | 0.26 s | 0.7 s | 1.40 | 0.99 | 3 |" in md
    assert "| WALS | 2 | dim=16 | 0.4300 |" in md and "| softmax DNN | 2 | dim=8 | 0.4300 |" in md
    assert "| wals+map (variant of wals) | 3 | 0: 0.3000, 3: 0.3300 |" in md


def test_weak_groups_are_flagged(results):
    results.folding[1].weak_groups = True
    assert "groups are too weak to see folding" in compare_markdown(results)


def test_html_shows_verdicts_then_warnings_and_draws_folding_and_growth(results):
    plots = compare_plots(results, {})
    assert {"folding_index", "growth", "recall_at_k", "cold_start", "leakage"} <= set(plots)
    assert all(png.startswith(b"\x89PNG") for _, png in plots.values())
    page = compare_html(results, plots)
    assert page.index("The trade-off table, measured") < page.index("<h2>Warnings</h2>") < page.index("<h2>Along")
    assert WARNING in page and "agrees (by design)" in page
    assert "p &lt; 1e-6, adj. &lt; 1e-6" in page and "p 0.012, adj. 0.037" in page and "e-204" not in page
    assert "Folding (warm users, k = 20)" in page and "Training growth on subsamples" in page
    assert "3 model seeds per model" in page and "±0.0042 seeds" in page
    assert re.search(r"<figure id='folding_index'>", page) and re.search(r"<figure id='growth'>", page)


def _terminal(results) -> str:
    buf = io.StringIO()
    render_compare(results, Console(file=buf, width=80, color_system=None, legacy_windows=False))
    return buf.getvalue()


def test_terminal_fits_80_columns_without_cutting_a_number(results):
    out = _terminal(results)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines if not line.startswith("reproduce:")), \
        [line for line in lines if len(line) > 80]
    assert "…" not in out
    words = set(out.split())
    for f in results.folding:  # every folding index and its interval bounds, whole
        assert f"{f.index:.3f}" in words and f"[{f.ci[0]:.3f}," in words and f"{f.ci[1]:.3f}]" in words
    for m in ordered_models(results, ("model", "baseline")):
        assert f"{m.warm.mean('recall', K):.4f}" in words
    assert "±0.0042" in words
    assert "< 1e-6" in out and "adj. < 1e-6" in out and "p 0.012" in out and "adj. 0.037" in out


def test_terminal_sections_hold_contrasts_variants_verdicts_and_warnings(results):
    out = _terminal(results)
    overview = out[out.index("Every model at k = 20"):out.index("Folding on warm users")]
    for name in ("WALS", "softmax DNN", "most popular", "random"):  # baselines stay visible
        assert name in overview
    assert "w0=0" not in overview and "wals+map" not in overview
    folding = out[out.index("Folding on warm users"):out.index("Cold start: recall@20")]
    assert folding.index("WALS") < folding.index("↳ wals(w0=0)") < folding.index("softmax DNN")
    assert "wals+map" not in folding  # a variant shares its model's factors: it is shown under cold start
    assert "natural cross-group rate 0.1000" in folding and "random's leakage 0.6000" in folding
    cold_start = out[out.index("Cold start: recall@20"):]
    assert "↳ wals+map" in cold_start and "λ = 3" in cold_start and "most popular" in cold_start
    assert cold_start.index("WALS") < cold_start.index("↳ wals+map") < cold_start.index("softmax DNN")
    assert "training growth: wals seconds per iteration ~ interactions^1.00 (R² 1.00" in out
    assert "tuning: wals 2 trials, best validation recall 0.4300 at dim=16" in out
    assert "3 model seeds per model" in out and "8 random-search trials" in out
    verdicts = out.index("The trade-off table, measured")
    # the verdict table is short: the conclusion, not the whole evidence, and warnings right after it
    flat = " ".join(out.split())
    assert "both knobs reduce folding significantly" in flat and "as mixed as random" not in flat
    assert "agrees (by design)" in flat
    assert verdicts < out.index("Warnings") and WARNING.split()[0] in out[out.index("Warnings"):]
