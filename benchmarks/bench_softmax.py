"""Softmax DNN training-step speed: full vs sampled softmax as the corpus grows, against its floors and
a PyTorch CPU model of the same design.

For each corpus size (default 2k, 20k, 200k items) it times whole training steps (batch build,
query tower forward/backward, loss, embedding-gradient scatter, optimiser update) of the default
model (dim 32, one hidden layer of 64, two user features, batch 256) with ``--negatives all`` and
``--negatives 50``, and in the same run:

- the bare logits product ``Q @ V.T`` of the same shapes (B x d times d x n, allocating and into a
  preallocated buffer), on every core only when the product is big enough for fit() to thread it;
- the floor: the three products that carry the step's useful flops (psi V_t^T, G_t V_t, G_t^T psi),
  run tile by tile on cache-resident logits tiles of the tiled softmax's size, split over the same
  threads as the step (no exp, no recomputed products, no optimiser, no tower);
- the sgemm peak: best of three 2048^3 float32 products on the same threads; the step's useful flops
  (3 products of 2 B n d each, plus the tower's 3 x 2 B (width h + h d)) per second as a fraction of it.

PyTorch peer (skipped with one line when torch is not installed): the same design in torch --
EmbeddingBag over the history (mode "sum" with per-sample weights 1/(|H|-1) for the history and
-1/(|H|-1) for the target: the mean of the history without its target, as ours), the learned
empty-history vector, the two feature embeddings, Linear(48, 64) + ReLU + Linear(64, 32), then the
full softmax cross-entropy over every item vector (``F.cross_entropy`` of psi V^T) or the sampled
softmax over 50 uniform negatives shared by the batch with the logQ correction, the example's own
training positives masked as ours. Both build the batch with the same numpy code (``make_batch``, the
dropouts, the positives mask): only the model, loss, backward and optimiser differ. Optimisers: torch's
Adam on the dense parameters (layers, biases, the empty vector; and the output item table under the
full softmax, which ours also updates densely), SparseAdam -- lazy Adam, as ours -- on the embedding
tables with sparse gradients (history bag, features; the output table under sampled softmax).
What differs: SparseAdam keeps its own step count per table (equal to ours here: every table is
touched every step); torch's Adam is not fused with anything. torch.set_num_threads gets the
step's thread count; both are timed the same way (2 warm-up steps, then the mean over the budget).

Targets (issue 15): the full step <= 2.5x the bare product at 2k, 20k and 200k items; ours <= 0.5x
torch's time for the full and the sampled-50 step; sampled-50 at 200k items >= 20x faster than full.

    .venv/bin/python benchmarks/bench_softmax.py [--items 2000,20000,200000] [--batch 256] [--seconds 3]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # this checkout's mfvsdnn, not an install

import mfvsdnn  # noqa: F401, E402  (first: sets the thread-pool defaults before numpy loads, as the CLI does)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from mfvsdnn.models.softmax import full_softmax  # noqa: E402
from mfvsdnn.models.softmax.batch import make_batch  # noqa: E402
from mfvsdnn.models.softmax.model import SoftmaxDNN  # noqa: E402
from mfvsdnn.models.softmax.optim import make_optimizer  # noqa: E402
from mfvsdnn.models.softmax.sampling import make_sampler, positive_hits  # noqa: E402
from mfvsdnn.models.softmax.threads import blas_threads  # noqa: E402

import bench_summary  # noqa: E402  (benchmarks/: the README performance-table row)

PHASES = ("batch", "tower", "loss", "scatter", "optimizer")
HIDDEN, FEATURE_DIM, CARDS = 64, 8, {"f0": 10, "f1": 5}


def uniform_interactions(n_items: int, n_users: int, per_user: int, rng: np.random.Generator) -> sp.csr_matrix:
    """csr (n_users, n_items) of ``per_user`` uniformly drawn items per user (binary, sorted indices)."""
    cols = rng.integers(0, n_items, size=n_users * per_user)
    rows = np.repeat(np.arange(n_users), per_user)
    X = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0
    X.sort_indices()
    return X


def _timed(step, seconds: float, warm=None) -> tuple[float, int]:
    """Mean seconds per call after 2 warm-up calls (then ``warm()``), over at least 3 calls and ``seconds``."""
    step()
    step()
    if warm is not None:
        warm()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return (time.perf_counter() - t0) / n, n


def _time_steps(model: SoftmaxDNN, X: sp.csr_matrix, codes: list, batch: int, seconds: float,
                rng: np.random.Generator) -> tuple[float, dict[str, float], int]:
    """Mean seconds per training step, mean per-phase seconds, steps timed (after 2 warm-up steps)."""
    n_users, n_items = X.shape
    P = model.init_params(n_items, CARDS, rng)
    opt = make_optimizer(model.optimizer, model.lr)
    cfg = model._loss_config()
    if model.negatives == "all":  # as fit() does: the full softmax's buffers reused by every step
        cfg.full_work = full_softmax.FullSoftmaxWork()
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    pair_u = np.repeat(np.arange(n_users), np.diff(indptr))
    counts = np.bincount(indices, minlength=n_items)
    sampled = isinstance(model.negatives, int) and model.negatives > 0
    sampler = make_sampler(model.sampler, counts) if sampled else None
    n_draw = model.negatives if sampled else 0
    timings: dict[str, float] = {}

    def step():
        idx = rng.integers(0, len(pair_u), batch)
        model._train_step(P, opt, cfg, indptr, indices, codes, pair_u[idx], indices[idx], rng, sampler,
                          n_draw, 0, timings)

    sec, n = _timed(step, seconds, timings.clear)
    return sec, {k: v / n for k, v in timings.items()}, n


def _time_product(B: int, n_items: int, d: int, seconds: float, rng: np.random.Generator) -> tuple[float, float]:
    """Median seconds of ``Q @ V.T`` (allocating its result, as written) and of the same product into
    a preallocated buffer (no page faults)."""
    Q = rng.normal(size=(B, d)).astype(np.float32)
    V = rng.normal(size=(n_items, d)).astype(np.float32)
    out = np.empty((B, n_items), dtype=np.float32)
    res = []
    for f in (lambda: Q @ V.T, lambda: np.matmul(Q, V.T, out=out)):
        f()
        ts = []
        t0 = time.perf_counter()
        while len(ts) < 3 or time.perf_counter() - t0 < seconds / 2:
            s = time.perf_counter()
            f()
            ts.append(time.perf_counter() - s)
        res.append(float(np.median(ts)))
    return res[0], res[1]


def _time_floor(B: int, n_items: int, d: int, threads: int, seconds: float, rng: np.random.Generator) -> float:
    """Median seconds of the step's three useful products (psi V_t^T, G_t V_t, G_t^T psi) over every
    item tile, each tile's logits in cache, the item ranges split over ``threads`` Python threads with
    one BLAS thread each (as the tiled softmax runs)."""
    psi = rng.normal(size=(B, d)).astype(np.float32)
    V = rng.normal(size=(n_items, d)).astype(np.float32)
    T = full_softmax.tile_rows(B, 4)
    ranges = full_softmax._ranges(n_items, T, threads)
    bufs = [(np.empty((B, T), np.float32), np.empty((B, d), np.float32), np.empty((T, d), np.float32))
            for _ in ranges]

    def products(k: int) -> None:
        (lo, hi), (Z, dpsi, dV) = ranges[k], bufs[k]
        for j in range(lo, hi, T):
            w = min(hi, j + T) - j
            Zt, Vt = Z[:, :w] if w == T else np.empty((B, w), np.float32), V[j:j + w]
            np.matmul(psi, Vt.T, out=Zt)
            np.matmul(Zt, Vt, out=dpsi)
            np.matmul(Zt.T, psi, out=dV[:w])

    def run() -> None:
        if len(ranges) == 1:
            products(0)
        else:
            list(full_softmax._pool().map(products, range(len(ranges))))

    with blas_threads(None):
        run()
        ts = []
        t0 = time.perf_counter()
        while len(ts) < 3 or time.perf_counter() - t0 < seconds / 2:
            s = time.perf_counter()
            run()
            ts.append(time.perf_counter() - s)
    return float(np.median(ts))


def _sgemm_peak(threads: int) -> float:
    """FLOP/s of the best of three 2048^3 float32 products on ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    A = np.random.default_rng(1).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(threads, user_api="blas"):
        A @ A
        best = min(_once(lambda: A @ A) for _ in range(3))
    return 2 * 2048 ** 3 / best


def _once(f) -> float:
    s = time.perf_counter()
    f()
    return time.perf_counter() - s


def _torch_steps(X: sp.csr_matrix, codes: list, batch: int, negatives: str | int, threads: int, seconds: float,
                 rng: np.random.Generator) -> float | None:
    """Mean seconds per training step of the PyTorch model of the same design (module docstring), or
    None when torch is not installed."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n_users, n_items = X.shape
    d, fd = 32, FEATURE_DIM
    indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    pair_u = np.repeat(np.arange(n_users), np.diff(indptr))
    full = negatives == "all"

    def table(rows: int, dim: int, sparse: bool) -> torch.nn.Embedding:
        e = torch.nn.Embedding(rows, dim, sparse=sparse)
        torch.nn.init.normal_(e.weight, 0.0, 0.1)
        return e

    bag = torch.nn.EmbeddingBag(n_items, d, mode="sum", sparse=True)
    torch.nn.init.normal_(bag.weight, 0.0, 0.1)
    feats = [table(c + 1, fd, True) for c in CARDS.values()]
    empty = torch.nn.Parameter(torch.randn(d) * 0.1)
    hidden = torch.nn.Linear(d + fd * len(feats), HIDDEN)
    out = torch.nn.Linear(HIDDEN, d)
    item_out = table(n_items, d, sparse=not full)
    dense = [empty, *hidden.parameters(), *out.parameters()] + ([item_out.weight] if full else [])
    sparse = [bag.weight] + [f.weight for f in feats] + ([] if full else [item_out.weight])
    opt_dense = torch.optim.Adam(dense, lr=0.002)
    opt_sparse = torch.optim.SparseAdam(sparse, lr=0.002)
    log_q = float(-np.log(n_items))  # uniform sampler: the logQ correction is this constant
    unknown = [c for c in CARDS.values()]

    def step() -> None:
        idx = rng.integers(0, len(pair_u), batch)
        users, targets = pair_u[idx], indices[idx]
        drop = rng.random(batch) < 0.1
        b = make_batch(indptr, indices, users, targets, codes, np.float32, drop)
        for j in range(len(b.codes)):
            b.codes[j] = np.where(rng.random(batch) < 0.05, unknown[j], b.codes[j])
        order = np.argsort(b.bag_ex, kind="stable")
        offsets = np.searchsorted(b.bag_ex[order], np.arange(batch))
        h = bag(torch.from_numpy(b.bag_idx[order]), torch.from_numpy(offsets),
                per_sample_weights=torch.from_numpy(b.bag_w[order]))
        h = torch.where(torch.from_numpy(b.empty)[:, None], empty, h)
        x = torch.cat([h] + [f(torch.from_numpy(c)) for f, c in zip(feats, b.codes, strict=True)], dim=1)
        psi = out(F.relu(hidden(x)))
        t = torch.from_numpy(b.targets)
        if full:
            loss = F.cross_entropy(psi @ item_out.weight.T, t)
        else:
            cand = rng.integers(0, n_items, int(negatives))
            dead = torch.from_numpy(positive_hits(indptr, indices, users, cand, n_items)
                                    | (cand[None, :] == targets[:, None]))
            s = (psi * item_out(t)).sum(dim=1, keepdim=True) - log_q
            z = (psi @ item_out(torch.from_numpy(cand)).T - log_q).masked_fill(dead, float("-inf"))
            loss = (torch.logsumexp(torch.cat([s, z], dim=1), dim=1) - s[:, 0]).mean()
        opt_dense.zero_grad(set_to_none=True)
        opt_sparse.zero_grad(set_to_none=True)
        loss.backward()
        opt_dense.step()
        opt_sparse.step()

    return _timed(step, seconds)[0]


def add_data_arguments(ap: argparse.ArgumentParser) -> None:
    """The catalogue sizes, batch and interactions (``bench_lazy_adam.py`` takes the same)."""
    ap.add_argument("--items", default="2000,20000,200000")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--per-user", type=int, default=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(ap)
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")
    ap.add_argument("--threads", type=int, default=0,
                    help="1 = everything (steps, floors, peak, torch) on one thread: far less sensitive to other "
                         "load on shared cores; 0 = as fit() runs (all cores for the big products)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    bench_summary.add_argument(ap)
    args = ap.parse_args()
    started = time.perf_counter()
    threads = 1 if args.threads == 1 else (os.cpu_count() or 1)
    if args.threads == 1:
        import mfvsdnn.models.softmax.kernels as softmax_kernels
        import mfvsdnn.models.softmax.threads as softmax_threads

        softmax_threads.BIG_PRODUCT = 1 << 62
        softmax_kernels.PAR_MIN = 1 << 62
        full_softmax.BIG_PRODUCT = 1 << 62
    rng = np.random.default_rng(0)
    d = 32
    width = d + FEATURE_DIM * len(CARDS)
    print(f"batch {args.batch}, dim {d}, hidden {HIDDEN}, 2 features, {args.users} users x {args.per_user} items; "
          f"{os.cpu_count()} cores, {threads} thread(s); load average before {os.getloadavg()[0]:.1f} "
          "(other processes slow every figure)")
    peak = _sgemm_peak(threads)
    print(f"sgemm peak (best of three 2048^3 float32 products, {threads} BLAS thread(s)): {peak / 1e9:.0f} GFLOP/s")
    torch_ok = not args.no_torch
    if torch_ok:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch is not installed: the PyTorch peer columns are skipped")
            torch_ok = False
    header = (f"{'items':>8} {'negatives':>9} {'ms/step':>9} {'examples/s':>11} {'Q@V.T ms':>9} {'(out=)':>7} "
              f"{'floor ms':>9} {'step/QV':>8} {'(out=)':>7} {'/floor':>7} {'%peak':>6} {'torch ms':>9} "
              f"{'ours/torch':>10}  " + " ".join(f"{p:>9}" for p in PHASES))
    print(header)
    results, ratios, full = {}, {}, {}
    for n_items in [int(x) for x in args.items.split(",")]:
        X = uniform_interactions(n_items, args.users, args.per_user, rng)
        codes = [rng.integers(0, 10, args.users), rng.integers(0, 5, args.users)]
        big = args.batch * n_items * d >= full_softmax.BIG_PRODUCT  # as fit() runs: threads only for big products
        with contextlib.nullcontext() if big else blas_threads(None):
            qv, qv_out = _time_product(args.batch, n_items, d, args.seconds, rng)
        floor = _time_floor(args.batch, n_items, d, threads if big else 1, args.seconds, rng)
        useful = 3 * 2 * args.batch * n_items * d + 3 * 2 * args.batch * (width * HIDDEN + HIDDEN * d)
        for neg in ("all", 50):
            model = SoftmaxDNN(negatives=neg, dim=d, hidden=(HIDDEN,), feature_dim=FEATURE_DIM, batch_size=args.batch)
            with blas_threads(None):  # as in fit(): one BLAS thread except the full softmax products
                sec, phases, _ = _time_steps(model, X, codes, args.batch, args.seconds, rng)
            results[(n_items, neg)] = sec
            peer = _torch_steps(X, codes, args.batch, neg, threads, args.seconds, rng) if torch_ok else None
            if peer is not None:
                ratios[(n_items, neg)] = sec / peer
            share = " ".join(f"{phases.get(p, 0.0) / sec:>8.0%} " for p in PHASES)
            if neg == "all":
                full[n_items] = (sec / qv, sec / floor, useful / sec / peak)
                ratio = (f"{sec / qv:>8.2f} {sec / qv_out:>7.2f} {sec / floor:>7.2f} "
                         f"{useful / sec / peak:>6.0%}")
            else:
                ratio = f"{'':>31}"
            vs = f"{peer * 1e3:>9.2f} {sec / peer:>10.2f}" if peer is not None else f"{'-':>9} {'-':>10}"
            print(f"{n_items:>8} {neg!s:>9} {sec * 1e3:>9.2f} {args.batch / sec:>11,.0f} {qv * 1e3:>9.2f} "
                  f"{qv_out * 1e3:>7.2f} {floor * 1e3:>9.2f} {ratio} {vs}  {share}")
    print()
    sizes = sorted({k[0] for k in results})
    for a, b in zip(sizes, sizes[1:], strict=False):
        print(f"{a} -> {b} items ({b / a:.0f}x): full step x{results[(b, 'all')] / results[(a, 'all')]:.1f}, "
              f"sampled-50 step x{results[(b, 50)] / results[(a, 50)]:.2f}")
    big = sizes[-1]
    print(f"sampled-50 vs full at {big} items: {results[(big, 'all')] / results[(big, 50)]:.1f}x faster "
          "(target >= 20x)")
    if ratios:
        for neg, name in (("all", "full"), (50, "sampled-50")):
            got = [f"{ratios[(n, neg)]:.2f}x at {n}" for n in sizes if (n, neg) in ratios]
            print(f"ours/torch, {name}: {', '.join(got)} (target <= 0.5x)")
    k = "/".join(f"{n // 1000}k" if n >= 1000 else str(n) for n in sizes)
    rows = [{"what": f"full-softmax step (batch {args.batch}, d = {d}), {k} items, {threads} thread(s)",
             "result": (f"{' / '.join(f'{full[n][0]:.2f}x' for n in sizes)} the bare `Q@V.T`; "
                        f"{' / '.join(f'{full[n][1]:.2f}x' for n in sizes)} the floor (the step's three products on "
                        f"cached tiles); {' / '.join(f'{full[n][2]:.0%}' for n in sizes)} of the sgemm peak "
                        f"({peak / 1e9:.0f} GFLOP/s); sampled-50 {results[(big, 'all')] / results[(big, 50)]:.0f}x "
                        f"faster than full at {big // 1000}k"),
             "goal": "<= 2.5x the bare product at every size", "met": all(full[n][0] <= 2.5 for n in sizes)}]
    if ratios:
        parts = [f"{name} {' / '.join(f'{ratios[(n, neg)]:.2f}x' for n in sizes)}"
                 for neg, name in (("all", "full"), (50, "sampled-50"))]
        rows.append({"what": f"training step vs a PyTorch {torch.__version__} CPU model of the same design, {k} items",
                     "result": "ours / torch time: " + "; ".join(parts),
                     "goal": "<= 0.5x both", "met": all(v <= 0.5 for v in ratios.values())})
    else:
        rows.append({"what": "training step vs a PyTorch CPU model of the same design", "result": "torch not installed",
                     "goal": "<= 0.5x both", "met": None})
    bench_summary.write(args.summary, rows, started)


if __name__ == "__main__":
    main()
