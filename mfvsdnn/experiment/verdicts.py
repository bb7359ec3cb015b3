"""The trade-off table, measured: each of its five rows against the evidence of one ``compare`` run.

For each row — query features, cold start, folding, training scalability, serving scalability — this
restates the textbook claim, collects the numbers this run measured for it and says whether this data
set **agrees**, **disagrees** or **cannot tell** (no user features, no groups, no cold users, or no
significant difference). Pure: it reads the typed :class:`~mfvsdnn.experiment.results.Results` of one run. The MF and the DNN model
are the first of each family (a model's declared ``family``), never found by kind; without both, every row
is "cannot tell".
"""

from __future__ import annotations

import math
from typing import Any

from .results import ModelResult, Results, Verdict, cold

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


RULES = (("query features", _query_features), ("cold start", _cold_start), ("folding", _folding),
         ("training scalability", _training), ("serving scalability", _serving))


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
