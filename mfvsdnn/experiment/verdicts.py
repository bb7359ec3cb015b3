"""The trade-off table, measured: each of its rows against the evidence of one ``compare`` run.

For each row — query features, cold start, folding, training scalability, serving scalability, and the
table's closing advice, scoring a pre-filtered set — this restates the textbook claim, collects the
numbers this run measured for it and says whether this data set **agrees**, **disagrees** or **cannot
tell**. Pure: it reads the typed :class:`~mfvsdnn.experiment.results.Results` of one run. Every rule
can come out each way, and a rule says "cannot tell" whenever the data cannot decide:

- "significant" is always the Holm–Bonferroni adjusted p of the test's family (``Results.families``);
- a verdict about a model is "cannot tell" when that model does not significantly beat the best
  baseline on the population the verdict reads (the baselines are rows of every table);
- feature use is credited only above the feature-blind most-popular baseline;
- folding is a contrast read from folding indices with intervals: the MF model at w0 = 0 against the
  chosen w0, the DNN without negatives against the chosen negatives, both trained inside compare;
  "cannot tell" when random's leakage lies inside the natural rate's interval (groups too weak);
- training scalability reads growth exponents fitted on subsamples of this data, not one wall-clock run;
- serving: the precompute claim is true by design (labelled so); measured end-to-end latency decides
  only beyond a tie tolerance.

The MF and the DNN model are the first of each family among the compared models (``role`` "model"),
never found by kind; without both, every row is "cannot tell".
"""

from __future__ import annotations

import math
from typing import Any

from .growth import MIN_POINTS as GROWTH_MIN_POINTS
from .growth import MIN_R2 as GROWTH_MIN_R2
from .growth import TOLERANCE
from .results import (
    WARM,
    FoldingResult,
    GrowthResult,
    ModelResult,
    PairedTest,
    PopulationId,
    Results,
    Verdict,
    best_baseline,
    cold,
)

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"
MEASURED, BY_DESIGN = "measured", "by design"

#: a folding-index difference whose interval lies entirely below this is "no meaningful reduction"
FOLD_MARGIN = 0.05
#: end-to-end single-request latencies within this relative difference are a tie
LATENCY_TIE = 0.10
#: growth exponents closer than EXPONENT_TIE are a tie; fits with R² below MIN_R2 or fewer than
#: MIN_POINTS subsamples cannot decide (the constants of the growth measurement, see ``growth``)
EXPONENT_TIE, MIN_R2, MIN_POINTS = TOLERANCE, GROWTH_MIN_R2, GROWTH_MIN_POINTS

CLAIMS = {
    "query features": "MF: hard to include. DNN: included naturally.",
    "cold start": "MF: new queries need a heuristic or a fold-in solve. DNN: handles new queries directly.",
    "folding": "MF: reduced by the unobserved weight w0 of WALS. DNN: prone to folding unless trained with "
               "negative sampling or gravity.",
    "training scalability": "MF scales to huge sparse corpora. DNN: harder; needs sampling or hashing.",
    "serving scalability": "MF: U and V are static, candidates can be precomputed. DNN: V is static, the query "
                           "embedding is computed at request time.",
    "scoring a pre-filtered set": "MF for retrieval over a large corpus, the DNN for scoring the candidates it "
                                  "retrieves; there the DNN may fold, as the candidates are assumed relevant.",
}


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and x is not None else float("nan")


def _pair(results: Results) -> tuple[ModelResult | None, ModelResult | None]:
    """The MF and the DNN model of the run (first compared model of each family), or None where missing."""
    compared = [m for m in results.models if m.role == "model"]
    return (next((m for m in compared if m.family == "mf"), None),
            next((m for m in compared if m.family == "dnn"), None))


def _test(results: Results, a: str, b: str, pid: PopulationId, metric: str, k: int | None) -> PairedTest | None:
    """The paired test of a − b (or of b − a, sign flipped) on one population, whichever was run."""
    for t in results.paired:
        if t.population == pid and t.metric == metric and t.k == k:
            if (t.a, t.b) == (a, b):
                return t
            if (t.a, t.b) == (b, a):
                lo, hi = t.ci if t.ci is not None else (float("nan"), float("nan"))
                return PairedTest(a, b, pid, metric, k, -t.diff, (-hi, -lo), t.p, t.significant, t.p_adjusted,
                                  t.family, t.se)
    return None


def _better(t: PairedTest | None) -> bool:
    """a is significantly better than b (adjusted p)."""
    return t is not None and bool(t.significant) and t.diff > 0


def _worse(t: PairedTest | None) -> bool:
    return t is not None and bool(t.significant) and t.diff < 0


def _pv(p: float) -> str:
    """A p-value as the reports print it (bootstrap-normal p-values below 1e-6 carry no more meaning)."""
    return "< 1e-6" if p < 1e-6 else f"{p:.2g}"


def _p(t: PairedTest | None) -> str:
    if t is None:
        return "no test"
    return f"{t.diff:+.3f}, p {_pv(_num(t.p))}, adjusted {_pv(_num(t.p_adjusted))}"


def _beats_baseline(results: Results, m: ModelResult, pid: PopulationId, k: int) -> tuple[bool | None, str]:
    """Does ``m`` significantly beat the best baseline on ``pid``? (None when there is no baseline.)"""
    base = best_baseline(results.models, pid, k)
    if base is None:
        return None, ""
    t = _test(results, m.name, base.name, pid, "recall", k)
    mine, theirs = m.population(pid).mean("recall", k), base.population(pid).mean("recall", k)
    text = f"best baseline {base.name} {theirs:.3f} ({m.name} {mine:.3f}; {_p(t)})"
    return _better(t), text


def _where(pid: PopulationId) -> str:
    return "warm users" if pid.is_warm else f"cold users at r = {pid.revealed}"


def _query_features(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    feats = results.settings.user_features
    if not feats:
        return CANNOT_TELL, "the run used no user features (pass --user-features to measure what they are worth)", MEASURED
    pw, ps = mf.population(cold(0)), dnn.population(cold(0))
    if pw is None or ps is None or not pw.users:
        return CANNOT_TELL, "no cold users evaluated with features only (r = 0)", MEASURED
    blind = next((m for m in results.models if m.kind == "popularity" and m.role == "baseline"), None)
    w, s = pw.mean("recall", k), ps.mean("recall", k)
    ev = (f"features-only cold users (r = 0, features {', '.join(feats)}), recall@{k}: {mf.name} (mean embedding of "
          f"users sharing the features) {w:.3f}, {dnn.name} (features through the tower) {s:.3f}")
    beats, text = _beats_baseline(results, dnn, cold(0), k)
    if text:
        ev += f"; {text}"
    credit = {}
    if blind is not None:
        for m in (mf, dnn):
            t = _test(results, m.name, blind.name, cold(0), "recall", k)
            credit[m.name] = _better(t)
        ev += (f"; above the feature-blind {blind.name} ({blind.population(cold(0)).mean('recall', k):.3f}): "
               + ", ".join(f"{n} {'yes' if ok else 'no'}" for n, ok in credit.items()))
    if beats is False:
        return CANNOT_TELL, ev + f"; {dnn.name} does not significantly beat the best baseline here", MEASURED
    t = _test(results, dnn.name, mf.name, cold(0), "recall", k)
    ev += f"; {dnn.name} − {mf.name} {_p(t)}"
    if _better(t):
        return AGREES, ev + "; the DNN uses the features significantly better", MEASURED
    if _worse(t):
        return DISAGREES, ev + "; the MF feature heuristic is significantly better here", MEASURED
    if credit.get(dnn.name) and credit.get(mf.name) is False:
        return AGREES, ev + "; only the DNN gets anything from the features beyond popularity", MEASURED
    return CANNOT_TELL, ev + "; no significant difference", MEASURED


def _cold_start(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    pids = sorted((p.population for p in mf.populations
                   if not p.population.is_warm and p.population.revealed and p.users), key=lambda p: p.revealed)
    if not pids:
        return CANNOT_TELL, "no cold users with revealed history were evaluated", MEASURED
    variant = next((m for m in results.models if m.role == "variant" and m.variant_of == mf.name), None)
    lam = (variant.tuning or {}).get("fold_in_prior") if variant is not None else None
    machinery = (f"{mf.name} needs the feature heuristic at r = 0 and a fold-in solve per new query at r >= 1"
                 + (f" (cold query p50 {mf.serving.cold_query_ms_p50:.3f} ms)" if mf.serving else "")
                 + (f", or the MAP fold-in {variant.name} (prior weight {lam:g}, chosen on validation)" if variant else "")
                 + f"; {dnn.name} embeds a new query with one forward pass"
                 + (f" ({dnn.serving.cold_query_ms_p50:.3f} ms)" if dnn.serving else ""))
    parts, wins, losses, unbeaten = [], 0, 0, 0
    for pid in pids:
        fold_ins = [m for m in (mf, variant) if m is not None and m.population(pid) is not None]
        tests = {m.name: _test(results, dnn.name, m.name, pid, "recall", k) for m in fold_ins}
        beats, _ = _beats_baseline(results, dnn, pid, k)
        unbeaten += beats is False
        s = dnn.population(pid).mean("recall", k)
        shown = ", ".join(f"{m.name} {m.population(pid).mean('recall', k):.3f}" for m in fold_ins)
        won = all(_better(t) for t in tests.values())
        lost = any(_worse(t) for t in tests.values())
        wins += won
        losses += lost
        parts.append(f"r={pid.revealed}: {dnn.name} {s:.3f} vs {shown}" + (" (DNN better*)" if won else "")
                     + (" (fold-in better*)" if lost else ""))
    ev = machinery + f". recall@{k} of new users from their revealed history: " + "; ".join(parts)
    ev += " (* significant after Holm)"
    if unbeaten > len(pids) / 2:
        return CANNOT_TELL, ev + f"; {dnn.name} does not beat the best baseline at most r", MEASURED
    if wins > len(pids) / 2 and not losses:
        return AGREES, ev + "; the DNN handles new queries better, without extra machinery", MEASURED
    if losses > len(pids) / 2:
        return DISAGREES, ev + "; with its fold-in solve, MF handles new queries better here", MEASURED
    return CANNOT_TELL, ev + "; no consistent significant difference", MEASURED


def _folding_of(results: Results, name: str) -> FoldingResult | None:
    return next((f for f in results.folding if f.model == name and f.population == WARM), None)


def _ci(c: Any) -> str:
    return "" if c is None or any(math.isnan(_num(x)) for x in c) else f" [{c[0]:.2f}, {c[1]:.2f}]"


def _contrast_part(results: Results, model: ModelResult, knob: str, k: int) -> tuple[bool | None, str]:
    """Does the claimed knob reduce folding? (True / False / None = cannot tell) and the evidence."""
    contrast = next((m for m in results.models if m.role == "contrast" and m.variant_of == model.name), None)
    if contrast is None:
        return None, f"{model.name}: no contrast was trained ({knob} is already at the folding-prone setting, " \
                     "or --no-folding-contrasts)"
    t = _test(results, contrast.name, model.name, WARM, "folding_index", k)
    fa, fb = _folding_of(results, contrast.name), _folding_of(results, model.name)
    text = (f"{contrast.name} index {_num(fa.index if fa else None):.2f}{_ci(fa.ci if fa else None)} vs "
            f"{model.name} {_num(fb.index if fb else None):.2f}{_ci(fb.ci if fb else None)}")
    if t is None:
        return None, text + " (no test)"
    text += f", difference {_p(t)}{_ci(t.ci)}"
    beats, _ = _beats_baseline(results, model, WARM, k)
    if beats is False:
        return None, text + f"; {model.name} does not beat the best baseline on warm users"
    if _better(t):
        return True, text
    if t.ci is not None and t.ci[1] < FOLD_MARGIN:
        return False, text + f" (no reduction of {FOLD_MARGIN} or more)"
    return None, text


def _folding(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    if not results.dataset.get("groups"):
        return CANNOT_TELL, ("the data has no item groups (item_group / --item-group-col), so cross-group leakage "
                             "cannot be measured"), MEASURED
    fm = _folding_of(results, mf.name)
    if fm is None:
        return CANNOT_TELL, (f"no folding index at k = {k} (needs leakage@{k} and the random baseline, which this run "
                             "did not have)"), MEASURED
    ev = (f"folding index at k = {k} on warm users (0 = as separated as the data's natural cross-group rate "
          f"{fm.natural:.3f}{_ci(fm.natural_ci)}, 1 = as mixed as random, whose leakage is {fm.random_leakage:.3f}"
          f"{_ci(fm.random_ci)})")
    if fm.weak_groups:
        return CANNOT_TELL, ev + "; random's leakage lies inside the natural rate's interval: the groups are too " \
                                 "weak to see folding", MEASURED
    mf_ok, mf_text = _contrast_part(results, mf, "w0", k)
    dnn_ok, dnn_text = _contrast_part(results, dnn, "negatives", k)
    ev += f"; MF (w0): {mf_text}; DNN (negatives, gravity): {dnn_text}"
    if mf_ok is False or dnn_ok is False:
        which = [n for n, ok in (("w0", mf_ok), ("negative sampling", dnn_ok)) if ok is False]
        return DISAGREES, ev + f"; {' and '.join(which)} did not reduce folding here", MEASURED
    if mf_ok and dnn_ok:
        return AGREES, ev + "; both knobs reduce folding significantly", MEASURED
    return CANNOT_TELL, ev + "; not every contrast is significant", MEASURED


def _growth_of(results: Results, name: str) -> GrowthResult | None:
    return next((g for g in results.growth if g.model == name), None)


def _training(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    gm, gd = _growth_of(results, mf.name), _growth_of(results, dnn.name)
    ev = (f"training time at full size: {mf.name} {mf.training.seconds:.2f} s, {dnn.name} {dnn.training.seconds:.2f} s"
          " (median over model seeds; not what decides)")
    if gm is None or gd is None:
        return CANNOT_TELL, ev + "; growth on subsamples was not measured (--growth-repeats 0)", MEASURED
    pts = min(sum(1 for x in g.seconds if not math.isnan(x)) for g in (gm, gd))
    ev = (f"seconds per {gm.unit} of {mf.name} grow as interactions^{gm.exponent:.2f} (R² {gm.r2:.2f}), per {gd.unit} "
          f"of {dnn.name} as interactions^{gd.exponent:.2f} (R² {gd.r2:.2f}), on {pts} subsamples of this training "
          f"set ({', '.join(f'{f:g}' for f in gm.fractions)}; median of {gm.repeats} after a warm-up); " + ev)
    if pts < MIN_POINTS or not (gm.r2 >= MIN_R2 and gd.r2 >= MIN_R2):
        return CANNOT_TELL, ev + f"; the fits are too poor to compare (R² below {MIN_R2} or fewer than {MIN_POINTS} " \
                                 "points)", MEASURED
    gap = gd.exponent - gm.exponent
    if gap > EXPONENT_TIE:
        return AGREES, ev + f"; the DNN's cost grows faster (by {gap:.2f} in the exponent)", MEASURED
    if gap < -EXPONENT_TIE:
        return DISAGREES, ev + f"; MF's cost grows faster here (by {-gap:.2f} in the exponent)", MEASURED
    return CANNOT_TELL, ev + f"; the exponents tie (within {EXPONENT_TIE}) at the sizes this data allows; " \
                             "`mfvsdnn scale` measures larger corpora", MEASURED


def _serving(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    if mf.serving is None or dnn.serving is None:
        return CANNOT_TELL, "serving was not measured (--serving-sample 0)", MEASURED
    sw, ss = mf.serving, dnn.serving
    ew, es = sw.query_ms_p50 + sw.topk_ms_p50, ss.query_ms_p50 + ss.topk_ms_p50
    cb = _num(sw.cache_build_seconds)
    ev = (f"by design, {mf.name}'s query vectors are stored rows, so every warm user's candidates can be precomputed "
          + (f"(here: built in {cb:.2f} s, {sw.cache_bytes:,} bytes; recomputed whenever U or V change)"
             if not math.isnan(cb) else "(no cache was built)")
          + f", while {dnn.name} computes the query embedding at request time. Measured single-request latency "
          f"p50, embedding + scoring + top-k: {mf.name} {sw.query_ms_p50:.3f} + {sw.topk_ms_p50:.3f} = {ew:.3f} ms, "
          f"{dnn.name} {ss.query_ms_p50:.3f} + {ss.topk_ms_p50:.3f} = {es:.3f} ms")
    if math.isnan(ew) or math.isnan(es):
        return CANNOT_TELL, ev, MEASURED
    if abs(ew - es) <= LATENCY_TIE * max(ew, es):
        return AGREES, ev + f"; a tie within {LATENCY_TIE:.0%}: the row holds by design, latency does not separate " \
                            "them here", BY_DESIGN
    if es > ew:
        return AGREES, ev + "; the DNN's request-time embedding costs more here", MEASURED
    return DISAGREES, ev + "; the DNN answers a request faster here (the precompute advantage is by design only)", \
        MEASURED


def _scoring_pipeline(results: Results) -> tuple[ModelResult, ModelResult, ModelResult] | None:
    """The first pipeline of an MF retriever and a DNN scorer, with its two stages, or None."""
    by = {m.name: m for m in results.models}
    for m in results.models:
        st = m.stages or {}
        r, s = by.get(st.get("retriever", "")), by.get(st.get("scorer", ""))
        if r is not None and s is not None and r.family == "mf" and s.family == "dnn":
            return m, r, s
    return None


def _prefiltered(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str, str]:
    found = _scoring_pipeline(results)
    if found is None:
        return CANNOT_TELL, ("no pipeline of an MF retriever and a DNN scorer was run "
                             "(compare --pipeline 'wals>softmax')"), MEASURED
    pipe, ret, sc = found
    rec = {m.name: _num(m.warm.mean("recall", k)) if m.warm else float("nan") for m in (pipe, ret, sc)}
    cand = pipe.warm.mean("candidate_recall", pipe.stages["candidates"]) if pipe.warm else float("nan")
    tests = {m.name: _test(results, pipe.name, m.name, WARM, "recall", k) for m in (ret, sc)}
    ev = (f"warm recall@{k}: {pipe.name} (the {sc.name} scoring {ret.name}'s top {pipe.stages['candidates']}) "
          f"{rec[pipe.name]:.3f}, candidate recall (its ceiling) {_num(cand):.3f}; {ret.name} alone {rec[ret.name]:.3f}, "
          f"{sc.name} alone {rec[sc.name]:.3f} — " + "; ".join(f"vs {n} {_p(t)}" for n, t in tests.items()))
    fold_ok = None
    idx = {m.name: _folding_of(results, m.name) for m in (pipe, ret, sc)}
    if all(f is not None and not math.isnan(f.index) for f in idx.values()):
        fp, fr = idx[pipe.name], idx[ret.name]
        fold_ok = fp.index - fr.index <= FOLD_MARGIN or (fp.ci is not None and fr.ci is not None
                                                         and fp.ci[0] <= fr.ci[1])
        ev += (". Folding index on warm users: " + "; ".join(f"{n} {f.index:+.2f}{_ci(f.ci)}" for n, f in idx.items())
               + f"; the pipeline {'stays' if fold_ok else 'does not stay'} at its retriever's level")
    else:
        ev += ". Folding could not be measured (no item groups or no random baseline)"
    base = best_baseline(results.models, WARM, k)
    if any(t is None or math.isnan(_num(t.p)) for t in tests.values()):
        return CANNOT_TELL, ev + "; no paired test (--bootstrap 0)", MEASURED
    if base is not None and not rec[pipe.name] > base.warm.mean("recall", k):
        return CANNOT_TELL, ev + f"; the pipeline does not beat the best baseline ({base.name} " \
                                 f"{base.warm.mean('recall', k):.3f})", MEASURED
    better = all(_better(t) for t in tests.values())
    worse = any(_worse(t) for t in tests.values())
    if worse or (better and fold_ok is False):
        why = ("the pipeline scores significantly worse than a stage alone" if worse
               else "the DNN's folding still shows through the candidates")
        return DISAGREES, ev + f"; {why}", MEASURED
    if better:
        return AGREES, ev + "; the DNN scores MF's candidates significantly better than either model alone" + (
            "" if fold_ok else " (folding not measured)"), MEASURED
    return CANNOT_TELL, ev + "; the differences are not all significant", MEASURED


RULES = (("query features", _query_features), ("cold start", _cold_start), ("folding", _folding),
         ("training scalability", _training), ("serving scalability", _serving),
         ("scoring a pre-filtered set", _prefiltered))


def measured_table(results: Results) -> list[Verdict]:
    """One verdict per trade-off row: claim, evidence, agrees / disagrees / cannot tell, and its basis."""
    mf, dnn = _pair(results)
    k = results.settings.main_k
    out = []
    for axis, rule in RULES:
        if mf is None or dnn is None:
            verdict, evidence, basis = CANNOT_TELL, ("the trade-off table compares a matrix factorization and a DNN "
                                                     "model; this run has "
                                                     + (", ".join(m.name for m in results.models) or "none")), MEASURED
        else:
            verdict, evidence, basis = rule(results, mf, dnn, k)
        out.append(Verdict(axis, CLAIMS[axis], verdict, evidence, basis))
    return out
