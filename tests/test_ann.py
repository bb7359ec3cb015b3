"""Item-vector indexes: exact equals top_k, HNSW/IVF close to exact, stored index round-trips and is
refused for other vectors, the runner's index cost, and the message without faiss."""

from __future__ import annotations

import builtins
import json
import sys

import jsonschema
import numpy as np
import pytest
import scipy.sparse as sp

from mfvsdnn.core.errors import ModelError, StoreError
from mfvsdnn.core.topk import top_k, top_k_with_scores
from mfvsdnn.models import index as index_mod
from mfvsdnn.models.index import build_index, overlap_recall, vectors_hash

faiss = pytest.importorskip("faiss")


def _vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    # a low-rank structure plus noise, with norms that vary like trained factors' (popular items longer)
    low = rng.normal(size=(n, 4)) @ rng.normal(size=(4, d))
    return ((low + 0.5 * rng.normal(size=(n, d))) * rng.lognormal(0, 0.3, (n, 1))).astype(np.float32)


def _exclude(rng: np.random.Generator, q: int, n: int, per: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(q), per)
    cols = np.concatenate([rng.choice(n, per, replace=False) for _ in range(q)])
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(q, n))


def test_exact_index_equals_top_k():
    rng = np.random.default_rng(0)
    items, queries = _vectors(rng, 500, 8), _vectors(rng, 40, 8)
    ex = _exclude(rng, 40, 500, 7)
    idx, scores = build_index("exact", items).search(queries, 10, ex)
    ref, ref_s = top_k_with_scores(queries, items, ex, 10)
    assert np.array_equal(idx, ref) and np.array_equal(idx, top_k(queries, items, ex, 10))
    assert np.allclose(scores, ref_s)


# IVF's default probes 8 of ~50 lists here (measured 0.80): its floor is lower by design
@pytest.mark.parametrize(("kind", "floor"), [("hnsw", 0.9), ("ivf", 0.7)])
def test_ann_returns_most_of_exact_top10_and_never_an_excluded_item(kind, floor):
    rng = np.random.default_rng(1)
    items, queries = _vectors(rng, 2000, 16), _vectors(rng, 100, 16)
    ex = _exclude(rng, 100, 2000, 20)
    exact = top_k(queries, items, ex, 10)
    approx, scores = build_index(kind, items).search(queries, 10, ex)
    assert overlap_recall(approx, exact) >= floor
    assert (approx >= 0).all()  # the filter over k + max excluded still fills every list
    for r in range(100):
        assert not np.isin(approx[r], ex[r].indices).any()
        # the scores are the inner products (not L2 distances) of the returned items
        assert np.allclose(scores[r], items[approx[r]] @ queries[r], rtol=1e-4, atol=1e-4)
        assert (np.diff(scores[r]) <= 1e-6).all()


def test_search_setting_trades_recall():
    rng = np.random.default_rng(2)
    items, queries = _vectors(rng, 3000, 16), _vectors(rng, 100, 16)
    exact = top_k(queries, items, None, 10)
    ivf = build_index("ivf", items, 1)
    low = overlap_recall(ivf.search(queries, 10)[0], exact)
    ivf.set_search(ivf.index.nlist)  # every list probed: exact
    assert overlap_recall(ivf.search(queries, 10)[0], exact) == 1.0 >= low


def test_backend_ranks_like_the_index():
    from mfvsdnn.models.ranking import rank

    rng = np.random.default_rng(3)

    class Dot:
        capabilities = type("C", (), {"item_vectors": True})()
        item_vectors = _vectors(rng, 300, 8)

        def query_vectors(self, histories, features, users=None, groups=None):
            return np.asarray(histories @ self.item_vectors)

    model = Dot()
    hist = _exclude(rng, 20, 300, 3)
    exact_index = build_index("exact", model.item_vectors)
    got = rank(model, hist, None, None, None, hist, 10, backend=exact_index.backend())[0]
    assert np.array_equal(got, rank(model, hist, None, None, None, hist, 10)[0])


def test_zero_norm_items_warn():
    items = np.random.default_rng(4).normal(size=(200, 4)).astype(np.float32)
    items[[3, 7]] = 0
    with pytest.warns(UserWarning, match="2 of 200 item vectors are all zero"):
        build_index("hnsw", items)


def test_missing_faiss_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ModelError, match=r"mfvsdnn\[ann\]"):
        index_mod.check_kind("hnsw")
    index_mod.check_kind("exact")  # exact search needs no faiss


def test_unknown_index_kind():
    with pytest.raises(ModelError, match="--index must be one of exact, hnsw, ivf"):
        index_mod.check_kind("annoy")


# ---------------------------------------------------------------------------------------------
# the index stored in a run folder


@pytest.fixture(scope="module")
def wals_run(tmp_path_factory):
    from mfvsdnn.data import ColumnSpec, dataset_from_frame
    from mfvsdnn.data.split import SplitConfig, make_split
    from mfvsdnn.data.synthetic import SyntheticConfig, generate
    from mfvsdnn.experiment import runner
    from mfvsdnn.experiment.spec import ModelSpec

    frame = generate(SyntheticConfig(users=300, items=400, groups=3, mean_interactions=12, seed=5))
    ds = dataset_from_frame(frame, ColumnSpec(user_col="user_id", item_col="item_id", item_group_col="item_group",
                                              user_group_col="user_group"), name="tiny")
    split = make_split(ds, SplitConfig(seed=5, cold_users=0.1, test_frac=0.2, valid_frac=0.0, revealed=(0, 3)))
    out = tmp_path_factory.mktemp("runs") / "wals"
    runner.fit_model(ModelSpec("wals", {"factors": 8, "iterations": 3}), split, 5, save_to=out)
    return out, split


def test_stored_index_round_trips_and_is_covered_by_the_manifest(wals_run, tmp_path):
    import shutil

    from mfvsdnn.models.store import index_files, load_index, load_run, run_index, verify_manifest

    path = tmp_path / "copy"
    shutil.copytree(wals_run[0], path)  # the fixture's run stays without an index for the other tests
    run = load_run(path)
    built, fresh = run_index(run, "hnsw")
    assert fresh
    files = verify_manifest(path)
    assert set(index_files("hnsw")) <= set(files)
    again, fresh_again = run_index(load_run(path), "hnsw")
    assert not fresh_again  # served from the stored file
    queries = np.asarray(run.model.item_vectors[:30])
    assert np.array_equal(again.search(queries, 10)[0], built.search(queries, 10)[0])
    info = json.loads((path / index_files("hnsw")[1]).read_text())
    assert info["vectors_sha256"] == vectors_hash(run.model.item_vectors)
    # another model's vectors: refused
    with pytest.raises(StoreError, match="built from other item vectors"):
        load_index(path, "hnsw", run.model.item_vectors + 1.0)


def test_edited_index_file_is_refused(wals_run, tmp_path):
    import shutil

    from mfvsdnn.models.store import index_files, load_index, load_run, run_index

    path = tmp_path / "copy"
    shutil.copytree(wals_run[0], path)
    run = load_run(path)
    run_index(run, "ivf")
    f = path / index_files("ivf")[0]
    f.write_bytes(f.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(StoreError, match="does not match the manifest"):
        load_index(path, "ivf", run.model.item_vectors)


def test_index_cost_in_results_validates(wals_run):
    from mfvsdnn.experiment import runner
    from mfvsdnn.experiment.results import Results, schema
    from mfvsdnn.experiment.spec import ExperimentSpec, ModelSpec

    _, split = wals_run
    spec = ExperimentSpec(data=None, split=split.config, models=[ModelSpec("wals", {"factors": 8, "iterations": 3}),
                                                                 ModelSpec("random")],
                          bootstrap=0, serving_sample=20, cold=False, index="hnsw", index_settings=(8, 32))
    results = runner.run(spec, split=split).results
    doc = json.loads(results.to_json())
    jsonschema.validate(doc, schema())
    wals = results.model("wals").index
    assert results.model("random").index is None  # no item vectors to index
    assert [s.value for s in wals.settings] == [8, 32, 128] and wals.default.value == 128
    for s in wals.settings:
        assert 0.0 <= s.index_recall <= 1.0
        assert s.recall_loss == pytest.approx(wals.exact_recall - s.recall)
    assert Results.from_dict(doc).model("wals").index == wals

    from mfvsdnn.report.html import compare_html
    from mfvsdnn.report.markdown import compare_markdown
    from mfvsdnn.report.plots import compare_plots

    md = compare_markdown(results)
    assert "## Serving: exact vs approximate index vs candidate cache" in md
    assert "| WALS | hnsw ef_search=128 |" in md and "| WALS | candidate cache |" in md
    assert "recompute when U or V change" in md and "hnsw ef_search=8" in md
    plots = compare_plots(results, {})
    assert "index_curve" in plots
    assert "speed/accuracy settings" in compare_html(results, plots)


def test_bad_index_settings_refused():
    from mfvsdnn.core.errors import EvaluationError
    from mfvsdnn.data.split import SplitConfig
    from mfvsdnn.experiment.spec import ExperimentSpec, ModelSpec

    spec = ExperimentSpec(None, SplitConfig(), [ModelSpec("wals")], index="hnsw", index_settings=(0,))
    with pytest.raises(EvaluationError, match=r"--ef-search/--nprobe values must be in \[1, 100,000\]"):
        spec.check()


def test_stale_index_is_rebuilt(wals_run, tmp_path):
    import shutil

    from mfvsdnn.models.store import load_index, load_run, run_index, save_index

    path = tmp_path / "copy"
    shutil.copytree(wals_run[0], path)
    run = load_run(path)
    save_index(path, build_index("hnsw", run.model.item_vectors * 2.0))  # another model's vectors
    index, built = run_index(load_run(path), "hnsw")
    assert built and index.n_items == len(run.model.item_vectors)
    assert load_index(path, "hnsw", run.model.item_vectors) is not None  # the stored one now matches


def test_recommend_serves_from_the_stored_index(wals_run, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from mfvsdnn.cli import app
    from mfvsdnn.models.store import index_files, load_run

    path = tmp_path / "copy"
    shutil.copytree(wals_run[0], path)
    run = load_run(path)
    user = str(run.user_ids[int(np.flatnonzero(np.diff(run.known.indptr) > 0)[0])])
    cli = CliRunner()
    first = cli.invoke(app, ["recommend", str(path), "--user", user, "--k", "5", "--index", "hnsw", "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.output)
    assert any("built now and stored" in n for n in doc["notes"]) and len(doc["recommendations"]) == 5
    assert (path / index_files("hnsw")[0]).is_file()
    again = json.loads(cli.invoke(app, ["recommend", str(path), "--user", user, "--k", "5", "--index", "hnsw",
                                        "--json"]).output)
    assert any("stored in" in n and "built now" not in n for n in again["notes"])
    exact = json.loads(cli.invoke(app, ["recommend", str(path), "--user", user, "--k", "5", "--json"]).output)
    known = set(run.item_ids[run.known[run.user_index()[user]].indices].tolist())
    assert not known & {r["item_id"] for r in again["recommendations"]}
    # a small catalogue: HNSW finds the exact top-5
    assert [r["item_id"] for r in again["recommendations"]] == [r["item_id"] for r in exact["recommendations"]]
    new = cli.invoke(app, ["recommend", str(path), "--history", ",".join(run.item_ids[:3]), "--k", "5",
                           "--index", "hnsw", "--json"])
    assert new.exit_code == 0, new.output
    new_items = {r["item_id"] for r in json.loads(new.output)["recommendations"]}
    assert len(new_items) == 5 and not new_items & set(run.item_ids[:3].tolist())


def test_scale_index_point(wals_run):
    from mfvsdnn.experiment import runner
    from mfvsdnn.experiment.scale import CURVES, ScaleConfig, _index_point
    from mfvsdnn.experiment.spec import ModelSpec

    _, split = wals_run
    model = runner.fit_model(ModelSpec("wals", {"factors": 8, "iterations": 3}), split, 5).model
    point = _index_point(model, split, ScaleConfig(sizes=(100, 200), latency_queries=10, index="hnsw"))
    assert {"exact_search_ms_p50", "index_search_ms_p50", "index_build_seconds"} <= set(CURVES) & set(point)
    assert 0.0 <= point["index_recall"] <= 1.0 and point["index_setting"] == 128


def test_scale_cli_with_the_index_curve(tmp_path):
    from typer.testing import CliRunner

    from mfvsdnn.cli import app

    res = CliRunner().invoke(app, ["scale", "--sizes", "150,300", "--users-per-item", "1", "--examples-timed", "500",
                                   "--latency-queries", "3", "--factors", "8", "--index", "hnsw",
                                   "--report-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "scale.json").read_text())
    for key in ("exact_search_ms_p50", "index_search_ms_p50", "index_build_seconds"):
        assert all(p[key] > 0 for p in doc["points"]) and key in doc["fits"], key
    assert "approximate index search" in (tmp_path / "scale.md").read_text()


def test_hnsw_construction_settings_reach_the_graph():
    rng = np.random.default_rng(5)
    items, queries = _vectors(rng, 1500, 16), _vectors(rng, 50, 16)
    index = index_mod.HNSWIndex(64, m=12, ef_construction=40).build(items)
    # faiss keeps 2M neighbour slots on the bottom layer and M above it
    assert index.index.hnsw.nb_neighbors(0) == 24 and index.index.hnsw.nb_neighbors(1) == 12
    assert index.index.hnsw.efConstruction == 40 and index.index.hnsw.efSearch == 64
    default_index = index_mod.HNSWIndex().build(items)
    default = default_index.index.hnsw  # a view into the faiss index: keep the index alive while read
    assert default.nb_neighbors(1) == index_mod.HNSW_M
    assert default.efConstruction == index_mod.HNSW_EF_CONSTRUCTION
    assert overlap_recall(index.search(queries, 10)[0], top_k(queries, items, None, 10)) >= 0.9


@pytest.mark.parametrize(("m", "efc"), [(1, 80), (32, 0), (2.5, 80), (32, 10**6)])
def test_bad_hnsw_construction_settings_refused(m, efc):
    with pytest.raises(ModelError, match="HNSW"):
        index_mod.HNSWIndex(m=m, ef_construction=efc)
    with pytest.raises(ModelError, match="HNSW graph must be one of mobius, inner-product"):
        index_mod.HNSWIndex(graph="l2")
    with pytest.raises(ModelError, match="HNSW storage must be one of sq8, flat"):
        index_mod.HNSWIndex(storage="pq")


def test_mobius_transform_known_answers_and_zero_rows():
    x = np.array([[2.0, 0.0], [0.0, -0.5], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    y = index_mod.mobius_transform(x)
    assert np.allclose(y[:3], [[0.5, 0.0], [0.0, -2.0], [0.12, 0.16]])  # x / |x|^2: |y| = 1 / |x|
    # the zero rows: distinct points at twice the largest image norm (2.0), beyond every other image
    assert np.allclose(np.linalg.norm(y[3:], axis=1), 4.0) and not np.allclose(y[3], y[4])
    assert np.isfinite(index_mod.mobius_transform(np.full((2, 3), 1e-30, np.float32))).all()


@pytest.mark.parametrize("graph", ["mobius", "inner-product"])
@pytest.mark.parametrize("storage", ["sq8", "flat"])
def test_every_hnsw_graph_and_storage_searches_by_inner_product_and_round_trips(graph, storage):
    rng = np.random.default_rng(6)
    items, queries = _vectors(rng, 2000, 16), _vectors(rng, 60, 16)
    items[:30] = 0.0  # WALS's items without training interactions
    with pytest.warns(UserWarning, match="30 of 2,000 item vectors are all zero"):
        index = index_mod.HNSWIndex(64, graph=graph, storage=storage).build(items)
    assert ("SQ" in type(faiss.downcast_index(index.index)).__name__) == (storage == "sq8")
    exact = top_k(queries, items, None, 10)
    found, scores = index.search(queries, 10)
    assert overlap_recall(found, exact) >= 0.9
    assert np.allclose(scores, np.einsum("qkd,qd->qk", items[found], queries), rtol=1e-4, atol=1e-4)
    # what the run folder stores (faiss's serialization) searches the same graph the same way
    again = index_mod.HNSWIndex.from_faiss(faiss.deserialize_index(faiss.serialize_index(index.index)), items, 64)
    assert np.array_equal(again.search(queries, 10)[0], found)


def test_huge_page_advice_keeps_the_data_and_only_whole_pages():
    from mfvsdnn.core import hugepages

    start, length = hugepages.huge_span(3 * hugepages.HUGE_PAGE - 5, 2 * hugepages.HUGE_PAGE + 10)
    assert (start, length) == (3 * hugepages.HUGE_PAGE, 2 * hugepages.HUGE_PAGE)  # [3H, 5H) of [3H - 5, 5H + 5)
    assert hugepages.huge_span(hugepages.HUGE_PAGE + 1, hugepages.HUGE_PAGE) == (2 * hugepages.HUGE_PAGE, 0)
    data = np.random.default_rng(7).normal(size=(3 << 20) // 8 * 4)  # 12 MiB
    before = data.copy()
    advised = hugepages.advise_huge_pages(data.ctypes.data, data.nbytes)
    assert advised % hugepages.HUGE_PAGE == 0 and advised <= data.nbytes  # 0 where the system cannot
    assert np.array_equal(data, before)
    rng = np.random.default_rng(8)
    items, queries = _vectors(rng, 3000, 16), _vectors(rng, 20, 16)
    index = index_mod.HNSWIndex(64).build(items)
    found = index.search(queries, 5)[0]
    assert index._advise_huge_pages() % hugepages.HUGE_PAGE == 0
    assert np.array_equal(index.search(queries, 5)[0], found)


def test_hnsw_searching_every_item_returns_exact_lists_with_mixed_exclusion_widths():
    # a beam wider than the catalogue visits every item: the lists must then be exact top-k's, for rows
    # whose known items put them in different fetch widths (0, 3, 40 and 200 known items)
    rng = np.random.default_rng(9)
    items, queries = _vectors(rng, 300, 8), _vectors(rng, 8, 8)
    per_row = [0, 3, 40, 200, 0, 3, 40, 200]
    rows = np.repeat(np.arange(8), per_row)
    cols = np.concatenate([rng.choice(300, c, replace=False) for c in per_row])
    ex = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(8, 300))
    index = index_mod.HNSWIndex(1000, storage="flat").build(items)
    found, scores = index.search(queries, 10, ex)
    ref, ref_s = top_k_with_scores(queries, items, ex, 10)
    assert np.array_equal(found, ref) and np.allclose(scores, ref_s, atol=1e-5)
    # more asked than remain eligible: the rest is padding
    found, scores = index.search(queries[3:4], 150, ex[3:4])
    assert (found[0, :100] >= 0).all() and (found[0, 100:] == -1).all() and np.isinf(scores[0, 100:]).all()
