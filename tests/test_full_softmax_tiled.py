"""The tiled full softmax: equal to the untiled reference (float64 and float32, tile sizes that do and
do not divide n, B = 1, several threads), finite-difference gradients of the tiled path, buffers reused
across steps of different sizes, and a fit whose parameters match a fit through the reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.data.split import TrainSet
from mfvsdnn.models.softmax import full_softmax as fs
from mfvsdnn.models.softmax import losses, tower
from mfvsdnn.models.softmax.model import SoftmaxDNN


def _problem(B: int, n: int, d: int, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    psi = rng.normal(0, 1.0, (B, d)).astype(dtype)
    V = rng.normal(0, 1.0, (n, d)).astype(dtype)
    return psi, V, rng.integers(0, n, B)


CASES = [  # (B, n, d, tile, threads)
    (1, 7, 3, 16, 1),     # B = 1, one short tile
    (1, 50, 4, 16, 2),    # B = 1, n not a multiple of the tile, two threads
    (6, 48, 5, 16, 1),    # n a multiple of the tile
    (9, 101, 4, 32, 3),   # three ranges, the last tile short
    (4, 33, 2, 16, 8),    # more threads than tiles
    (5, 40, 3, None, None),  # defaults: the stored untiled form
]


@pytest.mark.parametrize("B,n,d,tile,threads", CASES)
def test_tiled_equals_untiled_float64(B, n, d, tile, threads):
    psi, V, t = _problem(B, n, d, np.float64)
    ref = losses.full_softmax_loss(psi, V, t)
    got = fs.full_softmax_tiled(psi, V, t, tile=tile, threads=threads)
    assert got[0] == pytest.approx(ref[0], rel=1e-13, abs=1e-13)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("B,n,d,tile,threads", CASES + [(64, 3000, 8, 128, 2)])
def test_tiled_equals_untiled_float32(B, n, d, tile, threads):
    psi, V, t = _problem(B, n, d, np.float32, seed=1)
    ref = losses.full_softmax_loss(psi.astype(np.float64), V.astype(np.float64), t)
    got = fs.full_softmax_tiled(psi, V, t, tile=tile, threads=threads)
    assert got[1].dtype == np.float32 and got[2].dtype == np.float32
    assert got[0] == pytest.approx(ref[0], rel=1e-6)
    scale1, scale2 = np.abs(ref[1]).max(), np.abs(ref[2]).max()
    np.testing.assert_allclose(got[1], ref[1], atol=2e-6 * scale1)
    np.testing.assert_allclose(got[2], ref[2], atol=2e-6 * scale2)


def test_large_logits_do_not_overflow():
    # logits of hundreds: exp would overflow without the running max, in both passes
    psi, V, t = _problem(3, 70, 4, np.float64, seed=2)
    psi *= 60.0
    ref = losses.full_softmax_loss(psi, V, t)
    for dtype in (np.float64, np.float32):
        got = fs.full_softmax_tiled(psi.astype(dtype), V.astype(dtype), t, tile=16, threads=2)
        assert np.isfinite(got[0]) and got[0] == pytest.approx(ref[0], rel=1e-5)
        np.testing.assert_allclose(got[2], ref[2], atol=1e-5 * np.abs(ref[2]).max())


def test_finite_difference_gradients_of_the_tiled_path():
    psi, V, t = _problem(5, 37, 3, np.float64, seed=3)

    def loss(p, v):
        return fs.full_softmax_tiled(p, v, t, tile=16, threads=2)[0]

    _, dpsi, dV = fs.full_softmax_tiled(psi, V, t, tile=16, threads=2)
    dV = dV.copy()
    eps = 1e-6
    for arr, grad in ((psi, dpsi), (V, dV)):
        rng = np.random.default_rng(4)
        picks = list(rng.choice(arr.size, 8, replace=False)) + [int(np.argmax(np.abs(grad)))]
        for f in picks:
            i = np.unravel_index(f, arr.shape)
            old = arr[i]
            arr[i] = old + eps
            lp = loss(psi, V)
            arr[i] = old - eps
            lm = loss(psi, V)
            arr[i] = old
            num = (lp - lm) / (2 * eps)
            assert abs(num - grad[i]) <= 1e-8 + 1e-6 * abs(num), (i, num, grad[i])
    assert np.abs(dV[t]).max() > 0


def test_one_work_serves_steps_of_different_sizes():
    work = fs.FullSoftmaxWork()
    for B, n, tile, d in ((8, 60, 16, 4), (3, 60, 16, 4), (8, 60, None, 4), (8, 25, 16, 4), (4, 60, 32, 3),
                          (8, 60, 16, 4)):
        psi, V, t = _problem(B, n, d, np.float32, seed=B + n)
        got = fs.full_softmax_tiled(psi, V, t, work, tile=tile, threads=2)
        ref = fs.full_softmax_tiled(psi, V, t, tile=tile, threads=1)
        assert got[0] == pytest.approx(ref[0], rel=1e-6)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got[2], ref[2], rtol=1e-5, atol=1e-7)
    held = [b.size for b in work.tiles]
    fs.full_softmax_tiled(*_problem(3, 20, 4, np.float32), work, tile=16, threads=2)
    assert [b.size for b in work.tiles] == held  # a smaller step reuses the buffers


def test_ranges_cover_the_items_in_whole_tiles():
    for n, T, parts in ((7, 16, 2), (100, 16, 3), (64, 16, 4), (1000, 32, 2)):
        r = fs._ranges(n, T, parts)
        assert r[0][0] == 0 and r[-1][1] == n
        assert all(a < b for a, b in r) and all(r[k][1] == r[k + 1][0] for k in range(len(r) - 1))
        assert all(a % T == 0 for a, _ in r)


def _train_set(seed: int = 0) -> TrainSet:
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 90
    rows = np.repeat(np.arange(n_users), 5)
    cols = rng.integers(0, n_items, rows.size)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0
    return TrainSet(X, np.arange(n_users), features={"f": rng.integers(0, 3, n_users)}, cardinalities={"f": 3})


def test_fit_through_the_tiled_path_matches_a_fit_through_the_reference(monkeypatch):
    # small tiles and two threads so the tiled path (not the stored one) trains; the reference is the
    # untiled row-chunked loss
    def tiled(psi, V, t, work=None):
        return fs.full_softmax_tiled(psi, V, t, work, tile=16, threads=2)

    def reference(psi, V, t, work=None):
        return losses.full_softmax_loss(psi, V, t)

    params = {}
    for name, impl in (("tiled", tiled), ("reference", reference)):
        monkeypatch.setattr(tower, "full_softmax_tiled", impl)
        m = SoftmaxDNN(negatives="all", dim=8, hidden=(6,), feature_dim=3, epochs=2, batch_size=16,
                       min_steps=0, patience=0, lr=0.01)
        m.fit(_train_set(), rng=np.random.default_rng(5))
        params[name] = m.params_
        assert m.steps_ >= 20
    for k, ref in params["reference"].items():
        np.testing.assert_allclose(params["tiled"][k], ref, rtol=2e-4, atol=2e-6, err_msg=k)


def test_the_tiled_path_holds_tiles_not_the_logits():
    psi, V, t = _problem(32, 5000, 4, np.float32, seed=7)
    work = fs.FullSoftmaxWork()
    fs.full_softmax_tiled(psi, V, t, work, tile=64, threads=2)
    assert work.logits.size == 0
    assert [b.size for b in work.tiles] == [32 * 64] * 2
    # the default switches to tiles once the logits outgrow STORED_BYTES
    B = 64
    n = fs.STORED_BYTES // (4 * B) + 1
    psi, V, t = _problem(B, n, 2, np.float32, seed=8)
    work = fs.FullSoftmaxWork()
    fs.full_softmax_tiled(psi, V, t, work, threads=1)
    assert work.logits.size == 0 and work.tiles[0].size == B * fs.tile_rows(B, 4)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    import os
    import select
    import signal

    psi, V, t = _problem(4, 100, 3, np.float64)
    ref = fs.full_softmax_tiled(psi, V, t, tile=16, threads=2)  # the parent's pool exists now
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the tiled step must run (not hang on the parent's thread-less pool)
        got = fs.full_softmax_tiled(psi, V, t, tile=16, threads=2)
        os.write(w, b"1" if abs(got[0] - ref[0]) < 1e-12 else b"0")
        os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 120)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert ready and os.read(r, 1) == b"1", "the forked child's tiled step did not finish"
