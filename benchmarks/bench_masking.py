"""The cost of masking every training positive of the example's user out of the sampled negatives.

Every sampler masks the user's training positives (``mask_positives=True``, the default), not only
the example's own target; this times training epochs of each sampler with and without that mask on
one split, interleaved in the same process (on, off, on, off, ...) so that load from other processes
hits both alike, and prints the median seconds per epoch, the ratio and the share of candidates that
were another of the user's positives (what would have been pushed down without the mask).

    .venv/bin/python benchmarks/bench_masking.py data/sample.csv --user-features country,age_band
    .venv/bin/python benchmarks/bench_masking.py /work/data/ml100k/interactions.csv --weight-col rating \\
        --min-weight 4 --item-group-col genre --user-features age,gender,occupation
"""

from __future__ import annotations

import mfvsdnn  # noqa: F401  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from mfvsdnn.api import prepare_split  # noqa: E402
from mfvsdnn.core.seeding import generator  # noqa: E402
from mfvsdnn.data import ColumnSpec  # noqa: E402
from mfvsdnn.data.split import SplitConfig  # noqa: E402
from mfvsdnn.models.softmax.model import SoftmaxDNN  # noqa: E402
from mfvsdnn.models.softmax.sampling import SAMPLERS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--weight-col", default=None)
    ap.add_argument("--min-weight", type=float, default=None)
    ap.add_argument("--item-group-col", default=None)
    ap.add_argument("--user-features", default="")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--negatives", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="epochs timed per sampler and setting")
    args = ap.parse_args()
    columns = ColumnSpec(weight_col=args.weight_col, min_weight=args.min_weight, item_group_col=args.item_group_col,
                         user_features=tuple(f for f in args.user_features.split(",") if f))
    split = prepare_split(args.data, columns, SplitConfig())
    train = split.train_set()
    print(f"{args.data}: {train.matrix.shape[0]:,} users x {train.matrix.shape[1]:,} items, {train.matrix.nnz:,} "
          f"training pairs; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machine: "
          "only the ratios measured here, in one run, count)")
    print(f"{'sampler':>10} {'s/epoch masked':>15} {'s/epoch unmasked':>17} {'ratio':>6} {'other positives':>16}")
    for name in args.samplers.split(","):
        secs: dict[bool, list[float]] = {True: [], False: []}
        share = float("nan")
        for r in range(args.repeats):
            for mask in (True, False):
                model = SoftmaxDNN(negatives=args.negatives, sampler=name, mask_positives=mask, epochs=1, patience=0)
                model.fit(train, generator(0, "bench", name, r))
                secs[mask].append(model.history_[0]["seconds"])
                if mask and model.masked_[1]:
                    share = model.masked_[0] / model.masked_[1]
        on, off = float(np.median(secs[True])), float(np.median(secs[False]))
        print(f"{name:>10} {on:>15.2f} {off:>17.2f} {on / off:>6.2f} {share:>16.2%}")


if __name__ == "__main__":
    main()
