"""The trade-off table, measured: each of its five rows against the evidence of one ``compare`` run.

For each row — query features, cold start, folding, training scalability, serving scalability — this
restates the textbook claim, collects the numbers this run measured for it and says whether this data
set **agrees**, **disagrees** or **cannot tell** (no user features, no groups, no cold users, or no
significant difference). Pure: it reads the report dictionary assembled by ``api.compare``.
"""

from __future__ import annotations

import math
from typing import Any

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


def _paired(report: dict, pop: str, key: str) -> dict:
    return report.get("comparison", {}).get("paired", {}).get(pop, {}).get(key, {}) or {}


def _folds(leak: float, natural: float) -> bool:
    return leak > natural + max(FOLD_ABS, FOLD_REL * natural)


def _query_features(report: dict) -> dict:
    feats = report.get("settings", {}).get("user_features") or []
    cold = report["models"]["wals"].get("cold", {})
    if not feats:
        return {"verdict": CANNOT_TELL, "evidence": "the run used no user features (pass --user-features to "
                                                   "measure what they are worth)"}
    if "r=0" not in cold or not cold["r=0"].get("users"):
        return {"verdict": CANNOT_TELL, "evidence": "no cold users evaluated with features only (r = 0)"}
    w, s = _num(cold["r=0"].get("recall@20")), _num(report["models"]["softmax"]["cold"]["r=0"].get("recall@20"))
    p = _paired(report, "r=0", "recall@20")
    ev = (f"features-only cold users (r = 0, features {', '.join(feats)}): recall@20 WALS (mean embedding of "
          f"users sharing the features) {w:.3f}, DNN (features through the tower) {s:.3f}")
    if not p.get("significant"):
        return {"verdict": CANNOT_TELL, "evidence": ev + f"; the difference is not significant (p = {_num(p.get('p')):.3f})"}
    if s > w:
        return {"verdict": AGREES, "evidence": ev + "; the DNN uses the features significantly better"}
    return {"verdict": DISAGREES, "evidence": ev + "; the MF feature heuristic is significantly better here"}


def _cold_start(report: dict) -> dict:
    cold_w = report["models"]["wals"].get("cold", {})
    rs = sorted((k for k in cold_w if k != "r=0" and cold_w[k].get("users")), key=lambda k: int(k[2:]))
    if not rs:
        return {"verdict": CANNOT_TELL, "evidence": "no cold users with revealed history were evaluated"}
    parts, wins, losses = [], 0, 0
    for k in rs:
        w = _num(cold_w[k].get("recall@20"))
        s = _num(report["models"]["softmax"]["cold"][k].get("recall@20"))
        p = _paired(report, k, "recall@20")
        sig = bool(p.get("significant"))
        wins += sig and s > w
        losses += sig and w > s
        parts.append(f"{k}: WALS fold-in {w:.3f} vs DNN {s:.3f}{'*' if sig else ''}")
    ev = "recall@20 of new users from their revealed history — " + "; ".join(parts) + " (* significant)"
    if wins > len(rs) / 2:
        return {"verdict": AGREES, "evidence": ev + "; the DNN embeds new queries better directly"}
    if losses > len(rs) / 2:
        return {"verdict": DISAGREES, "evidence": ev + "; WALS's fold-in solve handles new queries better here"}
    return {"verdict": CANNOT_TELL, "evidence": ev + "; no consistent significant difference"}


def _folding(report: dict) -> dict:
    if not (report.get("dataset", {}).get("groups")):
        return {"verdict": CANNOT_TELL, "evidence": "the data has no item groups (item_group / --item-group-col), "
                                                   "so cross-group leakage cannot be measured"}
    ww, sw = report["models"]["wals"]["warm"], report["models"]["softmax"]["warm"]
    nat = _num(ww.get("natural_cross_rate"))
    lw, ls = _num(ww.get("leakage@20")), _num(sw.get("leakage@20"))
    if any(math.isnan(x) for x in (nat, lw, ls)):
        return {"verdict": CANNOT_TELL, "evidence": "leakage could not be measured for the warm users"}
    w0 = _num(report["models"]["wals"]["params"].get("w0"))
    sp = report["models"]["softmax"]["params"]
    neg, grav = sp.get("negatives"), _num(sp.get("gravity", 0.0))
    protected = neg == "all" or (isinstance(neg, int) and neg > 0) or grav > 0
    ev = (f"warm leakage@20: WALS (w0 = {w0:g}) {lw:.3f}, DNN (negatives = {neg}, gravity = {grav:g}) {ls:.3f}, "
          f"against the natural cross-group rate {nat:.3f} (folding = above {nat + max(FOLD_ABS, FOLD_REL * nat):.3f})")
    mf_ok = (w0 > 0) != _folds(lw, nat)  # w0 > 0 should not fold; w0 = 0 should
    dnn_ok = protected != _folds(ls, nat)  # protected should not fold; positives-only should
    ev += "; run `mfvsdnn sweep` to watch leakage move with w0, negatives and gravity"
    if mf_ok and dnn_ok:
        return {"verdict": AGREES, "evidence": ev}
    which = [n for n, ok in (("WALS", mf_ok), ("DNN", dnn_ok)) if not ok]
    return {"verdict": DISAGREES, "evidence": ev + f"; unexpected for {' and '.join(which)}"}


def _training(report: dict) -> dict:
    tw, ts = _num(report["models"]["wals"].get("train_seconds")), _num(report["models"]["softmax"].get("train_seconds"))
    iw = report["models"]["wals"].get("training", {})
    is_ = report["models"]["softmax"].get("training", {})
    ev = (f"training time at this size ({report['dataset'].get('items')} items, {report['dataset'].get('interactions')} "
          f"interactions): WALS {tw:.2f} s ({_num(iw.get('seconds_per_iteration')):.3f} s/iteration), DNN {ts:.2f} s "
          f"({_num(is_.get('seconds_per_iteration')):.3f} s/epoch); how each grows with the corpus is measured by "
          "`mfvsdnn scale`")
    if math.isnan(tw) or math.isnan(ts):
        return {"verdict": CANNOT_TELL, "evidence": ev}
    if tw < ts:
        return {"verdict": AGREES, "evidence": ev + "; WALS trains faster here"}
    return {"verdict": DISAGREES, "evidence": ev + "; the DNN trains at least as fast at this size"}


def _serving(report: dict) -> dict:
    sw, ss = report["models"]["wals"]["serving"], report["models"]["softmax"]["serving"]
    qw, qs = _num(sw.get("query_ms_p50")), _num(ss.get("query_ms_p50"))
    cb, cbytes = _num(sw.get("cache_build_seconds")), sw.get("cache_bytes")
    ev = (f"query embedding p50: WALS (stored row) {qw:.3f} ms, DNN (tower forward pass) {qs:.3f} ms; scoring + "
          f"top-k p50 {_num(sw.get('topk_ms_p50')):.2f} / {_num(ss.get('topk_ms_p50')):.2f} ms; WALS candidate cache "
          f"for every warm user built in {cb:.2f} s, {cbytes} bytes (not applicable to the DNN)")
    if math.isnan(qw) or math.isnan(qs):
        return {"verdict": CANNOT_TELL, "evidence": ev}
    if qw <= qs and not math.isnan(cb):
        return {"verdict": AGREES, "evidence": ev}
    return {"verdict": DISAGREES, "evidence": ev + "; the DNN's request-time embedding is not slower here"}


def measured_table(report: dict) -> list[dict]:
    """One dict per trade-off row: axis, claim, evidence, verdict (agrees / disagrees / cannot tell)."""
    rows = []
    for axis, fn in (("query features", _query_features), ("cold start", _cold_start), ("folding", _folding),
                     ("training scalability", _training), ("serving scalability", _serving)):
        rows.append({"axis": axis, "claim": CLAIMS[axis], **fn(report)})
    return rows
