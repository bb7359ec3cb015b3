"""Cold users' recall@20 with WALS plain fold-in vs MAP fold-in (a feature-mean prior), from one fit.

Fits WALS (defaults) once, chooses the prior lam on validation users made pseudo-cold
(``experiment.coldstart.choose_fold_in_prior``), then evaluates the cold populations of the split
with the plain model and with ``with_fold_in_prior(lam)`` by ``evaluation.evaluator.evaluate_model``
(same queries, same targets), and prints the mean recall@20 at each revealed count r with the paired
difference and its standard error over the cold users.

    .venv/bin/python benchmarks/bench_fold_in_prior.py /work/data/ml100k/interactions.csv \\
        --weight-col rating --min-weight 4 --item-group-col genre --user-features age,gender,occupation
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn import api  # noqa: E402
from mfvsdnn.core.seeding import generator  # noqa: E402
from mfvsdnn.evaluation.evaluator import evaluate_model  # noqa: E402
from mfvsdnn.evaluation.populations import populations  # noqa: E402
from mfvsdnn.experiment.coldstart import choose_fold_in_prior  # noqa: E402
from mfvsdnn.models.wals import WALS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--weight-col", default=None)
    ap.add_argument("--min-weight", type=float, default=None)
    ap.add_argument("--item-group-col", default=None)
    ap.add_argument("--user-features", default="")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()
    ds = api.load_interactions(args.data, weight_col=args.weight_col, min_weight=args.min_weight,
                               item_group_col=args.item_group_col,
                               user_features=tuple(f for f in args.user_features.split(",") if f))
    split = api.make_split(ds, seed=args.seed)
    train = split.train_set()
    model = WALS().fit(train, generator(args.seed, "fit", "wals", 0))  # the seed compare fits WALS with
    t0 = time.perf_counter()
    choice = choose_fold_in_prior(model, train, split.config.revealed, generator(args.seed, "bench", "fold-in prior"),
                                  k=args.k)
    choose_s = time.perf_counter() - t0
    print(f"{args.data}: {train.matrix.shape[0]:,} users x {train.matrix.shape[1]:,} items, "
          f"{len(split.cold_eval_users):,} cold users evaluated; WALS {model.get_params()}")
    print(f"choice of lam on {choice.users:,} pseudo-cold validation users ({choose_s:.1f} s; V saw their rows: "
          f"a choice, not a test figure):")
    rs = sorted(choice.by_revealed)
    print(f"{'lam':>8} {'mean':>7} " + " ".join(f"{'r=' + str(r):>7}" for r in rs))
    for i, (lam, recall) in enumerate(choice.table):
        mark = "  <- chosen" if lam == choice.lam else ""
        print(f"{lam:>8g} {recall:>7.4f} " + " ".join(f"{choice.by_revealed[r][i]:>7.4f}" for r in rs) + mark)
    pops = [p for p in populations(split) if p.revealed is not None]
    plain = evaluate_model(model, split, ks=(args.k,), pops=pops)
    with_prior = evaluate_model(model.with_fold_in_prior(choice.lam), split, ks=(args.k,), pops=pops)
    print(f"\ncold users' recall@{args.k} (test targets), plain fold-in vs MAP fold-in at lam = {choice.lam:g}:")
    print(f"{'r':>3} {'users':>6} {'plain':>7} {'MAP':>7} {'MAP-plain':>10} {'s.e.':>7}")
    for p in pops:
        a = plain[p.name].per_user["recall", args.k]
        b = with_prior[p.name].per_user["recall", args.k]
        ok = ~(np.isnan(a) | np.isnan(b))
        diff = b[ok] - a[ok]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(f"{p.revealed:>3} {int(ok.sum()):>6} {a[ok].mean():>7.4f} {b[ok].mean():>7.4f} {diff.mean():>+10.4f} "
              f"{se:>7.4f}")


if __name__ == "__main__":
    main()
