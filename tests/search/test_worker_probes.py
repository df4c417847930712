"""The numeric and stability probes on the workers (`rejection.probes: workers`): the worker body runs them
before training, the controller leaves them out of its chain, and a search reaches the same verdicts as
with the probes in the controller."""

from __future__ import annotations

import pickle

import pytest
import yaml

import evonorm_search as es
from evonorm_search import store as st
from evonorm_search.search import ConfigError, InProcessEvaluator, SearchConfig
from evonorm_search.search.controller import build_checks
from evonorm_search.search.evaluator import EvaluationTask, evaluate_task, run_probes
from evonorm_search.search.rejection import DuplicateIndex, Facts, NumericCheck, StabilityCheck

from .conftest import TINY_SEARCH, run_to_end

# The tiny search with a stability threshold low enough that the ascent rejects some of its layers too.
PROBES = {"quality": {"threshold": 0.3, "steps": 5}, "stability": {"steps": 4, "threshold": 1.0e4}}


def config(probes: str, **overrides) -> SearchConfig:
    data = yaml.safe_load(TINY_SEARCH) | {"rejection": {**PROBES, "probes": probes}} | overrides
    return SearchConfig.from_mapping(data)


def task(layer: str, spec) -> EvaluationTask:
    graph = es.library.get(layer) if layer in es.library.names() else es.parse(layer)
    return EvaluationTask(search_id=1, candidate_id=7, graph=graph.to_dict(), spec=spec)


def test_the_spec_carries_the_probes_only_when_the_workers_run_them():
    on_workers, on_controller = config("workers"), config("controller")
    probes = on_workers.evaluation_spec().probes
    assert probes is not None and probes.numeric and probes.stability.threshold == 1.0e4
    assert (probes.seed, probes.spatial_dims) == (on_workers.seed, on_workers.input_shape()[1])
    assert on_controller.evaluation_spec().probes is None
    assert on_workers.proxy_spec().probes is None  # baselines and `evaluate` are scored, never probed
    off = config(
        "workers", rejection={**PROBES, "probes": "workers", "numeric": False, "stability": {"enabled": False}}
    )
    assert off.evaluation_spec().probes is None  # nothing to run
    stages = [check.stage for check in build_checks(on_workers, DuplicateIndex()).checks]
    assert stages == ["static", "duplicate"]
    stages = [check.stage for check in build_checks(on_controller, DuplicateIndex()).checks]
    assert stages == ["static", "duplicate", "numeric", "stability"]


def test_a_misspelled_site_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"rejection\.probes.*'controller' or 'workers'"):
        config("worker")


def test_the_worker_rejects_at_a_probe_before_any_training():
    spec = config("workers").evaluation_spec()
    numeric = evaluate_task(task("x / v0", spec))
    assert numeric.status is st.CandidateStatus.REJECTED and numeric.records == ()
    assert numeric.rejection.stage == "numeric" and numeric.rejection.reason == "non-finite output on random input"
    assert set(numeric.check_seconds) == {"numeric"} and numeric.check_seconds["numeric"] >= 0
    unstable = evaluate_task(task("exp(exp(x))", spec))
    assert unstable.rejection.stage == "stability" and unstable.records == ()
    assert set(unstable.check_seconds) == {"numeric", "stability"}
    assert pickle.loads(pickle.dumps(unstable)) == unstable  # as it travels back from a Ray worker


def test_a_layer_that_passes_the_probes_trains_and_reports_their_seconds():
    outcome = evaluate_task(task("gn_relu", config("workers").evaluation_spec()))
    assert outcome.status is st.CandidateStatus.EVALUATED
    assert [r.phase for r in outcome.records] == ["quality", "quality", "proxy", "proxy"]
    assert set(outcome.check_seconds) == {"numeric", "stability"}
    assert evaluate_task(task("gn_relu", config("controller").evaluation_spec())).check_seconds == {}


@pytest.mark.parametrize("layer", ["x / v0", "exp(exp(x))", "x * exp(square(x))", "gn_relu", "evonorm_b0", "x * x * x"])
def test_the_worker_reaches_the_controllers_verdict(layer):
    """The probes a worker builds from the spec are the controller's: same inputs, same verdict, same norm."""
    cfg = config("workers")
    graph = task(layer, cfg.evaluation_spec()).graph
    worker = run_probes(es.Graph.from_dict(graph), cfg.evaluation_spec())
    facts, controller, dims = Facts(), None, cfg.input_shape()[1]
    for check in (
        NumericCheck(groups=cfg.groups, eps=cfg.eps, spatial_dims=dims, seed=cfg.seed),
        StabilityCheck(groups=cfg.groups, eps=cfg.eps, spatial_dims=dims, seed=cfg.seed, threshold=1.0e4, steps=4),
    ):
        if controller is None:
            controller = check.check(es.Graph.from_dict(graph), facts)
    assert worker.rejection == controller
    assert worker.facts.gradient_norm == facts.gradient_norm


def _verdicts(store, search_id):
    with store.session(readonly=True) as s:
        candidates = st.list_candidates(s, search_id, limit=1000).items
        return {
            c.birth: (c.dsl, c.status, c.rejection_stage, c.rejection_reason, c.duplicate_of is not None, c.objectives)
            for c in candidates
        }, {c.birth: set(c.check_seconds) for c in candidates}


def test_a_search_reaches_the_same_verdicts_with_the_probes_on_either_side(store):
    """One worker (the slot frees only when an outcome is committed), so both searches propose from the same
    population at every birth: every layer, verdict, reason and score must match."""
    budget = 24
    on_controller, _ = run_to_end(store, config("controller", budget=budget), InProcessEvaluator(capacity=1))
    on_workers, _ = run_to_end(store, config("workers", budget=budget), InProcessEvaluator(capacity=1))
    expected, _ = _verdicts(store, on_controller)
    got, seconds = _verdicts(store, on_workers)
    assert len(got) == budget and got == expected
    probe_stages = {verdict[2] for verdict in got.values()} & {st.RejectionStage.NUMERIC, st.RejectionStage.STABILITY}
    assert probe_stages  # the comparison covered layers the probes rejected
    for birth, (_, status, stage, *_) in got.items():  # the worker's probe seconds reached the store
        if status is st.CandidateStatus.EVALUATED and not got[birth][4]:
            assert {"numeric", "stability"} <= seconds[birth]
        if stage in (st.RejectionStage.NUMERIC, st.RejectionStage.STABILITY):
            assert stage.value in seconds[birth]
