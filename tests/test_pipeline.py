"""Two-stage pipelines: known answers (N = all items, an oracle scorer), stage reuse, the report and
its schema, the CLI, and the verdict row "scoring a pre-filtered set"."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import jsonschema
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import QUICK_COMPARE
from typer.testing import CliRunner

from mfvsdnn import api
from mfvsdnn.cli import app
from mfvsdnn.core.errors import EvaluationError, ModelError
from mfvsdnn.data import ColumnSpec
from mfvsdnn.data.split import SplitConfig
from mfvsdnn.data.synthetic import SyntheticConfig, generate
from mfvsdnn.evaluation import evaluator
from mfvsdnn.evaluation.populations import populations
from mfvsdnn.experiment import runner
from mfvsdnn.experiment.results import (
    WARM,
    FoldingResult,
    MetricValue,
    ModelResult,
    PairedTest,
    PopulationResult,
    Results,
    Settings,
    TrainingCost,
    schema,
)
from mfvsdnn.experiment.spec import ExperimentSpec, ModelSpec, PipelineSpec
from mfvsdnn.experiment.verdicts import (
    AGREES,
    CANNOT_TELL,
    DISAGREES,
    measured_table,
)
from mfvsdnn.models.base import Capabilities
from mfvsdnn.models.baselines import MostPopular
from mfvsdnn.models.pipeline import Pipeline
from mfvsdnn.models.ranking import rank
from mfvsdnn.models.wals import WALS

cli = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
ROW = "scoring a pre-filtered set"


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    df = generate(SyntheticConfig(users=200, items=60, groups=3, cross_rate=0.1, mean_interactions=10, seed=4))
    p = tmp_path_factory.mktemp("pipe") / "tiny.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="module")
def split(csv):
    return api.prepare_split(csv, ColumnSpec(), SplitConfig(seed=3))


@pytest.fixture(scope="module")
def wals(split):
    return WALS(factors=6, iterations=3).fit(split, np.random.default_rng(0))


@pytest.fixture(scope="module")
def popular(split):
    return MostPopular().fit(split, np.random.default_rng(0))


def _warm(split):
    return next(p for p in populations(split) if p.name == "warm")


class TestKnownAnswers:
    def test_all_items_as_candidates_equal_the_scorer_alone(self, split, wals, popular):
        pop = _warm(split)
        n_items = split.train.shape[1]
        pipe = Pipeline(popular, wals, candidates=n_items)
        args = (pop.histories, pop.features, pop.model_users, pop.query_groups, pop.exclude, 20)
        got_idx, got_s = rank(pipe, *args)
        want_idx, want_s = rank(wals, *args)
        np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-6)
        assert (got_idx == want_idx).mean() > 0.99  # float ties aside, the same ranking
        assert set(got_idx[0]) == set(want_idx[0])

    def test_the_scorer_ranks_only_the_candidates(self, split, wals, popular):
        pop = _warm(split)
        pipe = Pipeline(wals, popular, candidates=7)
        s = pipe.scores(pop.histories[:5], None, pop.model_users[:5], None)
        cand = pipe.candidate_items(pop.histories[:5], None, pop.model_users[:5], None)
        finite = np.isfinite(s)
        assert (finite.sum(axis=1) == 7).all()
        for row, c in zip(finite, cand, strict=True):
            assert set(np.flatnonzero(row)) == set(c)
        own = popular.query_vectors(pop.histories[:5], None, users=pop.model_users[:5]) @ popular.item_vectors.T
        np.testing.assert_allclose(s[finite], own[finite], rtol=1e-6)  # the scorer's own scores there

    def test_an_oracle_scorer_reaches_the_candidate_recall(self, split, wals):
        oracle = Oracle(split.test)
        n = 15
        pipe = Pipeline(wals, oracle, candidates=n)
        pop = _warm(split)
        ev = evaluator.evaluate_population(pipe, pop, (5, n), evaluator.item_popularity(split), None)
        cand = ev.per_user["candidate_recall", n]
        np.testing.assert_allclose(ev.per_user["recall", n], cand)
        assert (ev.per_user["recall", 5] <= cand + 1e-12).all()
        # the ceiling is the retriever's own recall@N
        alone = evaluator.evaluate_population(wals, pop, (n,), evaluator.item_popularity(split), None)
        np.testing.assert_allclose(cand, alone.per_user["recall", n])
        assert 0 < cand.mean() < 1

    def test_fewer_eligible_items_than_n_leave_the_rest_unranked(self, split, popular):
        pop = _warm(split)
        n_items = split.train.shape[1]
        pipe = Pipeline(popular, popular, candidates=10 * n_items)
        idx = rank(pipe, pop.histories[:3], None, None, None, pop.histories[:3], n_items)[0]
        for row, h in zip(idx, pop.histories[:3], strict=True):
            assert (row[:n_items - h.nnz] >= 0).all() and (row[n_items - h.nnz:] == -1).all()

    def test_state_round_trip_and_bad_arguments(self, split, wals, popular):
        pipe = Pipeline(wals, popular, candidates=9)
        again = Pipeline.from_state(pipe.get_params(), pipe.state(), {})
        pop = _warm(split)
        a = pipe.scores(pop.histories[:4], None, pop.model_users[:4], None)
        b = again.scores(pop.histories[:4], None, pop.model_users[:4], None)
        np.testing.assert_array_equal(a, b)
        with pytest.raises(ModelError, match="--candidates"):
            Pipeline(wals, popular, candidates=0)
        with pytest.raises(ModelError, match="scorer must be a model"):
            Pipeline(wals, object())

    def test_fit_trains_both_stages_and_recommends_in_raw_ids(self, split):
        pipe = Pipeline(WALS(factors=4, iterations=2), MostPopular(), candidates=5).fit(split)
        recs = pipe.recommend([str(split.dataset.user_ids[0])], k=3)
        assert recs.item_ids.shape == (1, 3) and all(recs.item_ids[0])
        assert pipe.train_seconds_ > 0


class Oracle:
    """Scores a warm user's held-out items 1, everything else 0: a perfect scorer."""

    kind: ClassVar[str] = "oracle"
    family: ClassVar[str] = "other"
    capabilities: ClassVar[Capabilities] = Capabilities(item_vectors=False, embeds_cold_users=False)

    def __init__(self, test: sp.csr_matrix):
        self.test = sp.csr_matrix(test)

    def scores(self, histories, features=None, users=None, groups=None) -> np.ndarray:
        return self.test[users].toarray().astype(np.float32)

    def get_params(self) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------------------------------
# planning: stages reuse the compared models


def _spec(pipelines, models=("wals", "softmax")):
    return ExperimentSpec(None, SplitConfig(), [ModelSpec(k) for k in models], pipelines=list(pipelines))


def test_a_stage_without_parameters_is_the_compared_model():
    spec = _spec([PipelineSpec("wals", "softmax", (200,))])
    plans = runner.plan_pipelines(spec)
    assert [(p.name, p.retriever, p.scorer, p.candidates) for p in plans] == [("wals>softmax", "wals", "softmax", 200)]
    assert [m.label for m in spec.models] == ["wals", "softmax"]


def test_stage_parameters_add_one_stage_model_and_a_sweep_names_each_n():
    spec = _spec([PipelineSpec("wals", "softmax", (50, 200), scorer_params={"negatives": 0}),
                  PipelineSpec("popularity", "softmax", (100,), scorer_params={"negatives": 0})])
    plans = runner.plan_pipelines(spec)
    assert [p.name for p in plans] == ["wals>softmax(negatives=0)@50", "wals>softmax(negatives=0)@200",
                                       "popularity>softmax(negatives=0)"]
    assert [m.label for m in spec.models] == ["wals", "softmax", "softmax(negatives=0)", "popularity"]
    assert spec.models[2].params == {"negatives": 0}
    runner.plan_pipelines(spec)  # planning again adds nothing
    assert len(spec.models) == 4


def test_stage_parameters_equal_to_the_compared_model_reuse_it():
    spec = ExperimentSpec(None, SplitConfig(), [ModelSpec("wals"), ModelSpec("softmax", {"negatives": 0})],
                          pipelines=[PipelineSpec("wals", "softmax", (10,), scorer_params={"negatives": 0})])
    assert runner.plan_pipelines(spec)[0].scorer == "softmax" and len(spec.models) == 2


def test_planning_refuses_bad_stages_before_any_data():
    with pytest.raises(ModelError, match="did you mean 'negatives'"):
        runner.plan_pipelines(_spec([PipelineSpec("wals", "softmax", (5,), scorer_params={"negativs": 0})]))
    with pytest.raises(ModelError, match="unknown model kind"):
        runner.plan_pipelines(_spec([PipelineSpec("wals", "nope", (5,))]))
    with pytest.raises(EvaluationError, match="--candidates"):
        _spec([PipelineSpec("wals", "softmax", (0,))]).check()
    for args, match in [((["wals"],), "RETRIEVER>SCORER"), ((["wals>x"],), "unknown model kind 'x'"),
                        ((["wals>softmax"], (0,)), r"\[1, 100,000\]"),
                        (([], (200,), {}, {"negatives": 0}), "pass --pipeline")]:
        with pytest.raises(EvaluationError, match=match):
            api.pipeline_specs(*args)
    assert [(p.retriever, p.scorer) for p in api.pipeline_specs(["wals>softmax, popularity>wals", "wals>softmax"])] \
        == [("wals", "softmax"), ("popularity", "wals")]


# ---------------------------------------------------------------------------------------------
# the runner and compare


def test_the_runner_evaluates_a_pipeline_like_any_model_without_retraining(split):
    spec = ExperimentSpec(None, split.config, [ModelSpec("wals", {"factors": 6, "iterations": 3}),
                                               ModelSpec("popularity"), ModelSpec("random")],
                          ks=(5, 10), bootstrap=30, serving_sample=5,
                          pipelines=[PipelineSpec("popularity", "wals", (8, 30))])
    out = runner.run(spec, split=split)
    res = out.results
    assert [m.name for m in res.models] == ["wals", "popularity", "random", "popularity>wals@8", "popularity>wals@30"]
    pipe = out.models["popularity>wals@8"].model
    assert pipe.retriever is out.models["popularity"].model and pipe.scorer is out.models["wals"].model
    m = res.model("popularity>wals@8")
    assert m.stages == {"retriever": "popularity", "scorer": "wals", "candidates": 8}
    assert m.warm.get("candidate_recall", 8).ci is not None
    assert {p.population.kind for p in m.populations} == {"warm", "cold"}
    assert m.serving is not None and m.family == "other"
    k = res.settings.main_k  # paired tests are at the main k (5 of 5, 10), where the verdicts read
    assert k == 5 and res.paired_test(WARM, "recall", 10) is None
    assert res.paired_test(WARM, "recall", k, "popularity>wals@8", "wals").family == "pipelines"
    assert res.paired_test(WARM, "recall", k, "popularity>wals@8", "popularity") is not None
    assert res.paired_test(WARM, "recall", k).a == res.settings.contrast[0]  # default: the contrasted pair
    doc = json.loads(res.to_json())
    jsonschema.validate(doc, schema())
    assert Results.from_dict(doc).model("popularity>wals@30").stages["candidates"] == 30
    # a larger N never lowers the ceiling
    assert res.model("popularity>wals@30").warm.mean("candidate_recall", 30) >= m.warm.mean("candidate_recall", 8)


def test_compare_cli_runs_a_pipeline_with_its_own_scorer(csv, tmp_path):
    out = tmp_path / "rep"
    res = cli.invoke(app, ["compare", str(csv), "--report-dir", str(out), "--wals-param", "iterations=2",
                           "--softmax-param", "epochs=1", "--dim", "6", "--bootstrap", "20", "--serving-sample", "3",
                           "--revealed", "1", "--pipeline", "wals>softmax", "--candidates", "20",
                           "--scorer-param", "negatives=0", "--scorer-param", "epochs=1", *QUICK_COMPARE])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, schema())
    names = [m["name"] for m in doc["models"]]
    assert "softmax(negatives=0,epochs=1)" in names and "wals>softmax(negatives=0,epochs=1)" in names
    assert (out / "runs" / "softmax(negatives=0,epochs=1)").is_dir()  # the stage model is saved like any model
    assert ROW in res.output and "candidate recall" in res.output
    assert "candidate recall (pipeline ceiling)@20" in (out / "report.md").read_text()


# ---------------------------------------------------------------------------------------------
# the verdict row, from hand-built results

K = 20
CAPS = {"item_vectors": True, "candidate_cache": True, "uses_features": False, "embeds_cold_users": True}


def _model(name, kind, family, recall, leak, stages=None):
    values = [MetricValue("recall", K, recall), MetricValue("leakage", K, leak),
              MetricValue("natural_cross_rate", None, 0.05)]
    if stages:
        values.append(MetricValue("candidate_recall", stages["candidates"], 0.8))
    return ModelResult(name, kind, family, CAPS, {}, 0, None, True, None, TrainingCost(1.0, 1, 1.0), None,
                       [PopulationResult(WARM, 100, values)], stages,
                       role="baseline" if family == "baseline" else "pipeline" if stages else "model")


def folding_index(leak, natural, leak_random):
    """(leak − natural) / (leak_random − natural): the index the runner estimates (``uncertainty``)."""
    return (leak - natural) / (leak_random - natural)


def _folding(models, random_leak):
    """Folding indices as the runner computes them, from each model's leakage (natural rate 0.05)."""
    out = []
    for m in models:
        if m.kind == "random":
            continue
        leak = m.warm.mean("leakage", K)
        index = folding_index(leak, 0.05, random_leak)
        out.append(FoldingResult(m.name, WARM, K, index, (index - 0.05, index + 0.05), leak, 0.05, (0.04, 0.06),
                                 random_leak, (random_leak - 0.02, random_leak + 0.02), False))
    return out


def _results(pipe_recall=0.6, pipe_leak=0.08, p=(0.01, 0.01), random_leak=0.7):
    models = [_model("wals", "wals", "mf", 0.5, 0.06), _model("softmax", "softmax", "dnn", 0.45, 0.5),
              _model("random", "random", "baseline", 0.02, random_leak),
              _model("wals>softmax", "pipeline", "other", pipe_recall, pipe_leak,
                     {"retriever": "wals", "scorer": "softmax", "candidates": 100})]
    paired = [PairedTest("wals", "softmax", WARM, "recall", K, 0.05, (0.01, 0.09), 0.01, True)]
    for other, pv in zip(("wals", "softmax"), p, strict=True):
        diff = pipe_recall - next(m for m in models if m.name == other).warm.mean("recall", K)
        paired.append(PairedTest("wals>softmax", other, WARM, "recall", K, diff, (diff - 0.01, diff + 0.01), pv,
                                 pv < 0.05))
    settings = Settings(seed=0, ks=[K], main_k=K, bootstrap=100, confidence_level=0.95, serving_sample=0,
                        user_features=[], contrast=["wals", "softmax"])
    r = Results({"items": 100, "interactions": 1000, "groups": {"natural_cross_group_rate": 0.05}},
                {"fingerprint": "x", "config": {}}, settings, models, paired)
    r.folding = _folding(models, random_leak)
    return r


def _row(results):
    return next(v for v in measured_table(results) if v.axis == ROW)


def test_verdict_agrees_when_the_pipeline_beats_both_and_stays_near_the_retrievers_leakage():
    v = _row(_results())
    assert v.verdict == AGREES, v.evidence
    assert "Folding index" in v.evidence and "candidate recall (its ceiling) 0.800" in v.evidence


def test_verdict_disagrees_when_the_dnn_folding_shows_through_or_the_pipeline_is_worse():
    assert _row(_results(pipe_leak=0.4)).verdict == DISAGREES
    assert _row(_results(pipe_recall=0.4)).verdict == DISAGREES


def test_verdict_cannot_tell_without_a_pipeline_or_significance():
    assert _row(_results(p=(0.3, 0.01))).verdict == CANNOT_TELL
    r = _results()
    r.models = r.models[:3]
    assert "no pipeline" in _row(r).evidence and _row(r).verdict == CANNOT_TELL
    r = _results()
    r.paired = [t for t in r.paired if t.a != "wals>softmax"]
    assert _row(r).verdict == CANNOT_TELL
    r = _results()
    r.dataset["groups"], r.folding = None, []  # no groups: no leakage, no folding index
    assert _row(r).verdict == AGREES and "could not be measured" in _row(r).evidence
