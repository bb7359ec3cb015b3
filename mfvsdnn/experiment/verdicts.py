"""The trade-off table, measured: each of its rows against the evidence of one ``compare`` run.

For each row — query features, cold start, folding, training scalability, serving scalability, and the
table's closing advice, scoring a pre-filtered set (a two-stage pipeline, ``compare --pipeline``) — this
restates the textbook claim, collects the numbers this run measured for it and says whether this data
set **agrees**, **disagrees** or **cannot tell** (no user features, no groups, no cold users, or no
significant difference). Pure: it reads the typed :class:`~mfvsdnn.experiment.results.Results` of one run. The MF and the DNN model
are the first of each family (a model's declared ``family``), never found by kind; without both, every row
is "cannot tell".
"""

from __future__ import annotations

import math
from typing import Any

from .results import WARM, ModelResult, Results, Verdict, cold

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"

#: How far above the natural cross-group rate leakage may go before it counts as folding:
#: leakage > natural + max(FOLD_ABS, FOLD_REL * natural).
FOLD_ABS = 0.05
FOLD_REL = 0.5

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


def _folds(leak: float, natural: float) -> bool:
    return leak > natural + max(FOLD_ABS, FOLD_REL * natural)


def _pair(results: Results) -> tuple[ModelResult | None, ModelResult | None]:
    """The MF and the DNN model of the run (first of each family), or None where missing."""
    mf = next((m for m in results.models if m.family == "mf"), None)
    dnn = next((m for m in results.models if m.family == "dnn"), None)
    return mf, dnn


def _significant(results: Results, mf: ModelResult, dnn: ModelResult, pid: Any, metric: str, k: int) -> tuple[bool, float]:
    """Significance and p of the paired test between the MF and DNN model, when they are the contrast."""
    if set(results.settings.contrast) != {mf.name, dnn.name}:
        return False, float("nan")
    t = results.paired_test(pid, metric, k)
    return (bool(t.significant), _num(t.p)) if t is not None else (False, float("nan"))


def _query_features(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    feats = results.settings.user_features
    if not feats:
        return CANNOT_TELL, "the run used no user features (pass --user-features to measure what they are worth)"
    pw, ps = mf.population(cold(0)), dnn.population(cold(0))
    if pw is None or ps is None or not pw.users:
        return CANNOT_TELL, "no cold users evaluated with features only (r = 0)"
    w, s = pw.mean("recall", k), ps.mean("recall", k)
    sig, p = _significant(results, mf, dnn, cold(0), "recall", k)
    ev = (f"features-only cold users (r = 0, features {', '.join(feats)}): recall@{k} {mf.name} (mean embedding of "
          f"users sharing the features) {w:.3f}, {dnn.name} (features through the tower) {s:.3f}")
    if not sig:
        return CANNOT_TELL, ev + f"; the difference is not significant (p = {p:.3f})"
    if s > w:
        return AGREES, ev + "; the DNN uses the features significantly better"
    return DISAGREES, ev + "; the MF feature heuristic is significantly better here"


def _cold_start(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    pids = sorted((p.population for p in mf.populations
                   if not p.population.is_warm and p.population.revealed and p.users), key=lambda p: p.revealed)
    if not pids:
        return CANNOT_TELL, "no cold users with revealed history were evaluated"
    parts, wins, losses = [], 0, 0
    for pid in pids:
        w, s = mf.population(pid).mean("recall", k), dnn.population(pid).mean("recall", k)
        sig, _ = _significant(results, mf, dnn, pid, "recall", k)
        wins += sig and s > w
        losses += sig and w > s
        parts.append(f"r={pid.revealed}: {mf.name} fold-in {w:.3f} vs {dnn.name} {s:.3f}{'*' if sig else ''}")
    ev = f"recall@{k} of new users from their revealed history — " + "; ".join(parts) + " (* significant)"
    if wins > len(pids) / 2:
        return AGREES, ev + "; the DNN embeds new queries better directly"
    if losses > len(pids) / 2:
        return DISAGREES, ev + "; the MF fold-in solve handles new queries better here"
    return CANNOT_TELL, ev + "; no consistent significant difference"


def _folding(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    if not results.dataset.get("groups"):
        return CANNOT_TELL, ("the data has no item groups (item_group / --item-group-col), so cross-group leakage "
                             "cannot be measured")
    ww, sw = mf.warm, dnn.warm
    nat = _num(ww.mean("natural_cross_rate")) if ww else float("nan")
    lw = _num(ww.mean("leakage", k)) if ww else float("nan")
    ls = _num(sw.mean("leakage", k)) if sw else float("nan")
    if any(math.isnan(x) for x in (nat, lw, ls)):
        return CANNOT_TELL, "leakage could not be measured for the warm users"
    w0 = _num(mf.params.get("w0"))
    neg, grav = dnn.params.get("negatives"), _num(dnn.params.get("gravity", 0.0))
    protected = neg == "all" or (isinstance(neg, int) and neg > 0) or grav > 0
    ev = (f"warm leakage@{k}: {mf.name} (w0 = {w0:g}) {lw:.3f}, {dnn.name} (negatives = {neg}, gravity = {grav:g}) "
          f"{ls:.3f}, against the natural cross-group rate {nat:.3f} (folding = above "
          f"{nat + max(FOLD_ABS, FOLD_REL * nat):.3f})")
    mf_ok = (w0 > 0) != _folds(lw, nat)  # w0 > 0 should not fold; w0 = 0 should
    dnn_ok = protected != _folds(ls, nat)  # protected should not fold; positives-only should
    ev += "; run `mfvsdnn sweep` to watch leakage move with w0, negatives and gravity"
    if mf_ok and dnn_ok:
        return AGREES, ev
    which = [n for n, ok in ((mf.name, mf_ok), (dnn.name, dnn_ok)) if not ok]
    return DISAGREES, ev + f"; unexpected for {' and '.join(which)}"


def _training(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    tw, ts = mf.training.seconds, dnn.training.seconds
    ev = (f"training time at this size ({results.dataset.get('items')} items, {results.dataset.get('interactions')} "
          f"interactions): {mf.name} {tw:.2f} s ({mf.training.seconds_per_iteration:.3f} s/iteration), {dnn.name} "
          f"{ts:.2f} s ({dnn.training.seconds_per_iteration:.3f} s/epoch); how each grows with the corpus is "
          "measured by `mfvsdnn scale`")
    if math.isnan(tw) or math.isnan(ts):
        return CANNOT_TELL, ev
    if tw < ts:
        return AGREES, ev + "; the MF model trains faster here"
    return DISAGREES, ev + "; the DNN trains at least as fast at this size"


def _serving(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    if mf.serving is None or dnn.serving is None:
        return CANNOT_TELL, "serving was not measured (--serving-sample 0)"
    sw, ss = mf.serving, dnn.serving
    qw, qs = sw.query_ms_p50, ss.query_ms_p50
    cb = _num(sw.cache_build_seconds)
    ev = (f"query embedding p50: {mf.name} (stored row) {qw:.3f} ms, {dnn.name} (tower forward pass) {qs:.3f} ms; "
          f"scoring + top-k p50 {sw.topk_ms_p50:.2f} / {ss.topk_ms_p50:.2f} ms; {mf.name} candidate cache for every "
          f"warm user built in {cb:.2f} s, {sw.cache_bytes} bytes (not applicable to the DNN)")
    if math.isnan(qw) or math.isnan(qs):
        return CANNOT_TELL, ev
    if qw <= qs and not math.isnan(cb):
        return AGREES, ev
    return DISAGREES, ev + "; the DNN's request-time embedding is not slower here"


def folding_index(leak: float, natural: float, leak_random: float) -> float:
    """(leak − natural) / (leak_random − natural): 0 = no folding beyond the data's own cross-group rate,
    1 = as mixed as random recommendations; NaN when random does not leak beyond the natural rate."""
    span = leak_random - natural
    return (leak - natural) / span if span > 0 else float("nan")


def _scoring_pipeline(results: Results) -> tuple[ModelResult, ModelResult, ModelResult] | None:
    """The first pipeline of an MF retriever and a DNN scorer, with its two stages, or None."""
    by = {m.name: m for m in results.models}
    for m in results.models:
        st = m.stages or {}
        r, s = by.get(st.get("retriever", "")), by.get(st.get("scorer", ""))
        if r is not None and s is not None and r.family == "mf" and s.family == "dnn":
            return m, r, s
    return None


def _prefiltered(results: Results, mf: ModelResult, dnn: ModelResult, k: int) -> tuple[str, str]:
    found = _scoring_pipeline(results)
    if found is None:
        return CANNOT_TELL, ("no pipeline of an MF retriever and a DNN scorer was run "
                             "(compare --pipeline 'wals>softmax')")
    pipe, ret, sc = found
    rec = {m.name: _num(m.warm.mean("recall", k)) if m.warm else float("nan") for m in (pipe, ret, sc)}
    cand = pipe.warm.mean("candidate_recall", pipe.stages["candidates"]) if pipe.warm else float("nan")
    tests = {m.name: results.paired_test(WARM, "recall", k, pipe.name, m.name) for m in (ret, sc)}
    ev = (f"warm recall@{k}: {pipe.name} (the {sc.name} scoring {ret.name}'s top {pipe.stages['candidates']}) "
          f"{rec[pipe.name]:.3f}, candidate recall (its ceiling) {_num(cand):.3f}; {ret.name} alone {rec[ret.name]:.3f}, "
          f"{sc.name} alone {rec[sc.name]:.3f}")
    parts = []
    for name, t in tests.items():
        parts.append(f"vs {name} {_num(t.diff):+.3f} (p = {_num(t.p):.3f})" if t is not None else f"vs {name}: no test")
    ev += " — " + "; ".join(parts)
    fold_ok = None
    if results.dataset.get("groups") and all(m.warm is not None for m in (pipe, ret, sc)):
        nat = _num(pipe.warm.mean("natural_cross_rate"))
        leak = {m.name: _num(m.warm.mean("leakage", k)) for m in (pipe, ret, sc)}
        if not any(math.isnan(x) for x in (nat, *leak.values())):
            margin = max(FOLD_ABS, FOLD_REL * nat)
            fold_ok = leak[pipe.name] - leak[ret.name] <= margin
            rnd = next((m for m in results.models if m.kind == "random" and m.warm is not None), None)
            lr = _num(rnd.warm.mean("leakage", k)) if rnd is not None else float("nan")
            idx = {n: folding_index(v, nat, lr) for n, v in leak.items()}
            shown = "; ".join(f"{n} {leak[n]:.3f}" + ("" if math.isnan(idx[n]) else f" (folding index {idx[n]:+.2f})")
                              for n in leak)
            ev += (f". Warm leakage@{k} against the natural rate {nat:.3f}: {shown}; the pipeline "
                   + ("stays" if fold_ok else "does not stay") + f" within {margin:.3f} of {ret.name}'s")
    if fold_ok is None:
        ev += ". Folding could not be measured (no item groups)"
    baselines = [_num(m.warm.mean("recall", k)) for m in results.models if m.family == "baseline" and m.warm]
    best = max((b for b in baselines if not math.isnan(b)), default=float("nan"))
    if any(t is None or math.isnan(_num(t.p)) for t in tests.values()):
        return CANNOT_TELL, ev + "; no paired test (--bootstrap 0)"
    if not math.isnan(best) and not rec[pipe.name] > best:
        return CANNOT_TELL, ev + f"; the pipeline does not beat the best baseline ({best:.3f})"
    better = all(t.significant and t.diff > 0 for t in tests.values())
    worse = any(t.significant and t.diff < 0 for t in tests.values())
    if worse or (better and fold_ok is False):
        why = ("the pipeline scores significantly worse than a stage alone" if worse
               else "the DNN's folding still shows through the candidates")
        return DISAGREES, ev + f"; {why}"
    if better:
        return AGREES, ev + "; the DNN scores MF's candidates significantly better than either model alone" + (
            "" if fold_ok else " (folding not measured)")
    return CANNOT_TELL, ev + "; the differences are not all significant"


RULES = (("query features", _query_features), ("cold start", _cold_start), ("folding", _folding),
         ("training scalability", _training), ("serving scalability", _serving),
         ("scoring a pre-filtered set", _prefiltered))


def measured_table(results: Results) -> list[Verdict]:
    """One verdict per trade-off row: claim, evidence, agrees / disagrees / cannot tell."""
    mf, dnn = _pair(results)
    k = results.settings.main_k
    out = []
    for axis, rule in RULES:
        if mf is None or dnn is None:
            verdict, evidence = CANNOT_TELL, ("the trade-off table compares a matrix factorization and a DNN model; "
                                              "this run has " + (", ".join(m.name for m in results.models) or "none"))
        else:
            verdict, evidence = rule(results, mf, dnn, k)
        out.append(Verdict(axis, CLAIMS[axis], verdict, evidence))
    return out
